"""Local and global features of one product view, and the on-disk cache of catalogue reference features.

A view's features are: ORB keypoints and descriptors on the segmented product (local, for geometric
verification), a hue-saturation histogram and a small Lab layout thumbnail (global, from compare.py's
first version), and the product's dominant CIELAB colour. Reference features are computed once per
catalogue image and stored beside the catalogue in ``.features/<sha256 of the image file>.npz``: a
changed image has another hash, so a stale entry is never used (and never needs deleting).
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

FEATURE_VERSION = 7  # bump when extraction changes: old cache files are then ignored
ORB_FEATURES = 500
CACHE_DIR = ".features"
# What np.load raises on a missing, truncated or foreign .npz (a cut zip is BadZipFile, not an OSError).
UNREADABLE_NPZ = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


@dataclass(frozen=True, slots=True)
class ViewFeatures:
    points: np.ndarray  # (N, 2) float32 keypoint positions in image pixels
    descriptors: np.ndarray  # (N, 32) uint8 ORB descriptors
    histogram: np.ndarray  # global colour distribution
    thumbnail: np.ndarray  # (24, 24, 3) Lab layout
    lab: np.ndarray  # (3,) dominant CIELAB D50
    box_xywh: tuple[int, int, int, int]  # product bounding box
    size_wh: tuple[int, int]  # image width, height

    def to_npz(self) -> dict[str, np.ndarray]:
        return {"points": self.points, "descriptors": self.descriptors, "histogram": self.histogram,
                "thumbnail": self.thumbnail, "lab": self.lab, "box": np.array(self.box_xywh),
                "size": np.array(self.size_wh), "version": np.array(FEATURE_VERSION)}

    @classmethod
    def from_npz(cls, data) -> "ViewFeatures":
        return cls(data["points"], data["descriptors"], data["histogram"], data["thumbnail"], data["lab"],
                   tuple(int(v) for v in data["box"]), tuple(int(v) for v in data["size"]))


def _orb() -> cv2.ORB:
    return cv2.ORB_create(nfeatures=ORB_FEATURES, scaleFactor=1.2, nlevels=6, edgeThreshold=15,
                          patchSize=21, fastThreshold=10)


def local_features(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ORB on the contrast-normalised grey product (the mask dilated so the outline counts too)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    x, y, w, h = cv2.boundingRect(mask)
    pad = 12
    x0, y0 = max(0, x - pad), max(0, y - pad)
    x1, y1 = min(grey.shape[1], x + w + pad), min(grey.shape[0], y + h + pad)
    crop = cv2.normalize(grey[y0:y1, x0:x1], None, 0, 255, cv2.NORM_MINMAX)
    m = cv2.dilate(mask[y0:y1, x0:x1], np.ones((7, 7), np.uint8))
    kps, desc = _orb().detectAndCompute(crop, m)
    if desc is None or not kps:
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    pts = np.array([k.pt for k in kps], np.float32) + np.float32([x0, y0])
    return pts, desc


def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class FeatureCache:
    """Reference features on disk beside the catalogue, keyed by the image file's SHA-256.

    Nothing is read or written until ``get`` is called. A cache folder that cannot be written (read-only
    catalogue) only costs speed: features are then computed in memory each time the process starts.
    """

    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / CACHE_DIR
        self.hits = 0
        self.misses = 0

    def get(self, image_path: Path, compute) -> ViewFeatures | None:
        digest = file_hash(image_path)
        entry = self.dir / f"{digest[:32]}.npz"
        if entry.is_file():
            try:
                with np.load(entry) as data:
                    if int(data["version"]) == FEATURE_VERSION:
                        self.hits += 1
                        return ViewFeatures.from_npz(data)
            except UNREADABLE_NPZ:
                pass  # a torn or foreign file: recompute and overwrite
        self.misses += 1
        feats = compute(image_path)
        if feats is None:
            return None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = entry.with_suffix(".tmp.npz")
            np.savez(tmp, **feats.to_npz())
            tmp.replace(entry)
        except OSError:
            pass
        return feats
