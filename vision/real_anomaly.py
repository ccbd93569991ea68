"""Unseen damage on real photos: the PatchCore-style memory of good appearance (vision.anomaly) scored on
two public defect sets that no one here made. Evaluation only: neither states a licence, so nothing of them
is committed or shipped.

    python -m vision.real_anomaly --kolektor /work/.mirror/stoy95536+KolektorSDD_Yolov8_Datasets/repo \\
        --cans /work/.mirror/RogelioGarciaAlvarez+ML_Can_Defects/repo [--goods 10]

Pinned subsets:
- KolektorSDD (stoy95536/KolektorSDD_Yolov8_Datasets at KOLEKTOR_COMMIT): `Datasets/images/{train,val}/*.jpg`,
  a defect where `Datasets/labels/.../*.txt` holds a polygon (52 of 399). Memory: the first ``goods`` good
  images of `train` in name order; tested: every other image. Region AUROC over pixels (polygons as truth).
- Tin cans (RogelioGarciaAlvarez/ML_Can_Defects at CANS_COMMIT): `data/sample_can_defects/<severity>/*.jpg`.
  Memory: the first ``goods`` `no_defect` photos in name order; tested: the other `no_defect` photos against
  `major_defect` and `critical_defect` (dents, rust); `minor_defect` reported apart. Image AUROC only (no
  boxes in the set). Each photo is cut to the can by the station's bench segmentation.

The threshold comes from the memory's good images only (leave-one-out, ``MemoryBank.threshold``); the false
alarm rate on the held-out good images and the share of defects caught at that threshold are printed beside
the AUROCs.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

KOLEKTOR_COMMIT = "81e5cf333010730a05f11d1c0357bc0f24ecf502"
CANS_COMMIT = "a990719ec43bf9f27efbe0b810bdde3d202fa7fa"
CAN_WORK_SIDE = 640  # cans are photographed at up to 3472 px; the crop is bounded before scoring


@dataclass(frozen=True, slots=True)
class Sample:
    path: Path
    defective: bool
    group: str  # "train"/"val" for Kolektor, the severity folder for cans
    polygons: tuple[np.ndarray, ...] = ()  # normalised (x, y) vertices, Kolektor only


def _git(mirror: Path, *args: str) -> bytes:
    git_dir = mirror / ".git" if (mirror / ".git").exists() else mirror
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True).stdout


def _materialise(mirror: Path, commit: str, name: str, out: Path) -> Path:
    dest = out / name
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(_git(mirror, "show", f"{commit}:{name}"))
    return dest


def extract_kolektor(mirror: Path, out: Path) -> list[Sample]:
    names = sorted(_git(mirror, "ls-tree", "-r", "--name-only", KOLEKTOR_COMMIT, "Datasets/images").decode().split())
    samples = []
    for n in names:
        if not n.endswith(".jpg"):
            continue
        split = n.split("/")[2]
        label = _materialise(mirror, KOLEKTOR_COMMIT, n.replace("/images/", "/labels/")[:-4] + ".txt", out)
        polys = []
        for line in label.read_text().splitlines():
            v = [float(t) for t in line.split()[1:]]
            if len(v) >= 6:
                polys.append(np.array(v, np.float32).reshape(-1, 2))
        samples.append(Sample(_materialise(mirror, KOLEKTOR_COMMIT, n, out), bool(polys), split, tuple(polys)))
    return samples


def extract_cans(mirror: Path, out: Path) -> list[Sample]:
    names = sorted(_git(mirror, "ls-tree", "-r", "--name-only", CANS_COMMIT, "data/sample_can_defects").decode().split())
    return [Sample(_materialise(mirror, CANS_COMMIT, n, out), n.split("/")[2] != "no_defect", n.split("/")[2])
            for n in names if n.lower().endswith(".jpg")]


def auroc(pos, neg) -> float:
    """Rank AUROC (ties half) without an (n, m) matrix: pixels run into the millions."""
    pos, neg = np.asarray(pos, np.float64).ravel(), np.asarray(neg, np.float64).ravel()
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv), np.float64)
    ranks[order] = np.arange(1, len(allv) + 1)
    _, inv, counts = np.unique(allv, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    ranks = (sums / counts)[inv]  # average rank of ties
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _can_crop(bgr: np.ndarray) -> np.ndarray:
    from vision.compare import segment_item, usable_outline
    from vision.embedding import crop_to_mask

    small = _bounded(bgr)
    mask = usable_outline(segment_item(small)[0])
    return crop_to_mask(small, mask)


class _Memory:
    """The station's memory of good appearance (vision.unseen) for one kind, whole frames as the product."""

    def __init__(self, goods: list[np.ndarray], tile_side: int | None = None) -> None:
        from vision.embedding import default_backbone
        from vision.unseen import SkuMemory

        self.tile_side = tile_side
        self.backbone = default_backbone()
        self.mem = SkuMemory("eval", "eval")
        for g in goods:
            self.mem.add(self._grid(g).reshape(-1, self._c), "good")

    def _grid(self, bgr: np.ndarray) -> np.ndarray:
        from vision.anomaly import patch_grid

        g = patch_grid(self.backbone, bgr, self.tile_side)
        self._c = g.shape[-1]
        return g.astype(np.float32)

    def threshold(self) -> float:
        from vision.unseen import MARGIN, QUANTILE

        return float(np.quantile(self.mem.leave_one_out(), QUANTILE) * MARGIN)

    def distances(self, bgr: np.ndarray) -> np.ndarray:
        """Nearest-good-patch distance per pixel (the patch grid upsampled, as the station's heat map)."""
        from vision.unseen import _nn

        g = self._grid(bgr)
        d = _nn(g.reshape(-1, g.shape[-1]), *self.mem.bank()).reshape(g.shape[:2]).astype(np.float32)
        return cv2.resize(d, (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_LINEAR)


def _score_set(memory: _Memory, tests: list[tuple[np.ndarray, Sample]], region: bool):
    thr = memory.threshold()
    t0 = time.perf_counter()
    img_scores, labels, pix_pos, pix_neg = [], [], [], []
    for img, s in tests:
        heat = memory.distances(img)
        img_scores.append(float(heat.max()))
        labels.append(s.defective)
        if region:
            h, w = img.shape[:2]
            gt = np.zeros((h, w), np.uint8)
            for p in s.polygons:
                cv2.fillPoly(gt, [np.round(p * [w, h]).astype(np.int32)], 1)
            heat = cv2.resize(heat, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
            gt = cv2.resize(gt, (w // 4, h // 4), interpolation=cv2.INTER_NEAREST).astype(bool)
            pix_pos.append(heat[gt])
            pix_neg.append(heat[~gt])
    per_image_ms = (time.perf_counter() - t0) / max(1, len(tests)) * 1000
    scores, labels = np.array(img_scores), np.array(labels)
    out = {
        "memory": len(memory.mem.images), "tested_good": int((~labels).sum()), "tested_defective": int(labels.sum()),
        "image_auroc": round(auroc(scores[labels], scores[~labels]), 4),
        "threshold": round(thr, 4),
        "false_alarms_good": round(float((scores[~labels] > thr).mean()), 4),
        "defects_caught": round(float((scores[labels] > thr).mean()), 4),
        "ms_per_image": round(per_image_ms, 1),
    }
    if region:
        out["region_auroc"] = round(auroc(np.concatenate(pix_pos), np.concatenate(pix_neg)), 4)
    return out, scores, labels


def evaluate_kolektor(mirror: Path, work: Path, goods: int = 10, tile_side: int | None = None) -> dict:
    samples = extract_kolektor(mirror, work / "kolektor")
    memory_s = [s for s in samples if s.group == "train" and not s.defective][:goods]
    tests = [(cv2.imread(str(s.path)), s) for s in samples if s not in memory_s]
    memory = _Memory([cv2.imread(str(s.path)) for s in memory_s], tile_side)
    out, _, _ = _score_set(memory, tests, region=True)
    return out


def evaluate_cans(mirror: Path, work: Path, goods: int = 10, crop: bool = False, tile_side: int | None = None
                  ) -> dict:
    """``crop``: cut each photo to the can by the station's bench segmentation first (it does not find cans on
    this set's dark benches: most "crops" are the whole frame); otherwise the whole frame, bounded to 640 px."""
    samples = extract_cans(mirror, work / "cans")
    good = [s for s in samples if s.group == "no_defect"]
    memory_s = good[:goods]
    load = _can_crop if crop else _bounded
    tests = [(load(cv2.imread(str(s.path))), s) for s in samples if s not in memory_s]
    memory = _Memory([load(cv2.imread(str(s.path))) for s in memory_s], tile_side)
    main = [(i, s) for i, s in tests if s.group in ("no_defect", "major_defect", "critical_defect")]
    out, _, _ = _score_set(memory, main, region=False)
    minor = [(i, s) for i, s in tests if s.group in ("no_defect", "minor_defect")]
    out_minor, _, _ = _score_set(memory, minor, region=False)
    out["minor_image_auroc"] = out_minor["image_auroc"]
    out["minor_caught"] = out_minor["defects_caught"]
    return out


def _bounded(bgr: np.ndarray) -> np.ndarray:
    k = CAN_WORK_SIDE / max(bgr.shape[:2])
    return cv2.resize(bgr, None, fx=k, fy=k, interpolation=cv2.INTER_AREA) if k < 1 else bgr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kolektor", type=Path)
    ap.add_argument("--cans", type=Path)
    ap.add_argument("--goods", type=int, default=10, help="good images in each memory")
    ap.add_argument("--work", type=Path, default=Path("/tmp/real-anomaly"))
    ap.add_argument("--tile-side", type=int, default=None,
                    help="tiles of at most this many source px (default: the station's tiling along the long side)")
    ap.add_argument("--can-crop", action="store_true", help="cut cans out by the bench segmentation first")
    a = ap.parse_args(argv)
    if a.kolektor:
        print("KolektorSDD:", evaluate_kolektor(a.kolektor, a.work, a.goods, a.tile_side), flush=True)
    if a.cans:
        print("tin cans:", evaluate_cans(a.cans, a.work, a.goods, a.can_crop, a.tile_side), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
