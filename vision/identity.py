"""Identity as retrieval plus verification.

Retrieval: every catalogue view has a pretrained global embedding (vision.embedding); a returned view is
ranked against all of them by cosine similarity (one matrix product, so 30,000 views cost a few ms).
Verification: local features (SIFT) of the returned view against the claimed SKU's best view and against
the best view of each other shortlisted SKU, kept by a RANSAC homography. The identity score asks two
things, as an inspector would: does the claimed SKU look at least as much like it as any other SKU does
(retrieval margin), and do its print and details line up with the claimed SKU's better than with the
look-alike's (verified-match margin)? Colour is not part of it: it is a finding of its own.
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from vision.embedding import Backbone, crop_to_mask, default_backbone
from vision.features import UNREADABLE_NPZ

SHORTLIST = 4  # other SKUs verified with local features beside the claimed one
VERIFY_SIDE = 320  # px, long side of the crop local features run on (small crops are upscaled)
MIN_INLIERS = 8  # a homography with fewer verified matches is no evidence
# Score = 0.9 + RETRIEVAL_WEIGHT * retrieval margin + LOCAL_WEIGHT * local margin - OFFSET, clipped to [0, 1]:
# at the default threshold 0.9 the claimed SKU must be the best match by the two cues together.
RETRIEVAL_WEIGHT = 1.0
LOCAL_WEIGHT = 0.25
SIMILARITY_FLOOR = 0.35  # cosine with the claimed SKU's best view; genuine Grozi returns: 1st percentile 0.43
OFFSET = -0.047  # calibrated on Grozi-120 products 1-60 (python -m vision.real_identity): FPR <= 0.02 there


@dataclass(frozen=True, slots=True)
class LocalFeatures:
    points: np.ndarray  # (N, 2) float32, in the crop's resized frame
    descriptors: np.ndarray  # (N, 128) float32


@dataclass(frozen=True, slots=True)
class IdentityQuery:
    embedding: np.ndarray
    similarities: np.ndarray  # cosine with every indexed view
    crop: np.ndarray


@dataclass(frozen=True, slots=True)
class IdentityJudgement:
    score: float  # the station's identity score in [0, 1]; accepted when >= the threshold (0.9)
    retrieval_margin: float  # cosine(claimed) - cosine(best other SKU)
    claimed_similarity: float
    best_other_sku: str | None
    best_other_similarity: float
    claimed_inliers: int
    best_other_inliers: int
    shortlist: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"score": round(self.score, 4), "retrieval_margin": round(self.retrieval_margin, 4),
                "claimed_similarity": round(self.claimed_similarity, 4), "best_other_sku": self.best_other_sku,
                "best_other_similarity": round(self.best_other_similarity, 4),
                "claimed_inliers": self.claimed_inliers, "best_other_inliers": self.best_other_inliers,
                "shortlist": list(self.shortlist)}


_SIFT = None


def local_features(crop: np.ndarray) -> LocalFeatures:
    global _SIFT
    if _SIFT is None:
        _SIFT = cv2.SIFT_create(nfeatures=800)
    h, w = crop.shape[:2]
    scale = VERIFY_SIDE / max(h, w, 1)
    img = cv2.resize(crop, (max(1, round(w * scale)), max(1, round(h * scale))),
                     interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
    kps, desc = _SIFT.detectAndCompute(grey, None)
    if desc is None or not kps:
        return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))
    return LocalFeatures(np.float32([k.pt for k in kps]), desc.astype(np.float32))


class LocalFeatureStore:
    """Reference views' local features on disk, one file per image sha256 (``<root>/<hh>/<hash>.npz``): computed
    once, at catalogue import or at a view's first verification, never inside every query. Descriptors are
    kept as uint8 (SIFT's are integers 0..255, so nothing is lost): about 50 KB per view."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, image_hash: str) -> Path:
        return self.root / image_hash[:2] / f"{image_hash}.npz"

    def has(self, image_hash: str) -> bool:
        return self.path(image_hash).is_file()

    def load(self, image_hash: str) -> LocalFeatures | None:
        path = self.path(image_hash)
        try:
            with np.load(path, allow_pickle=False) as data:
                pts, desc = data["points"], data["descriptors"]
        except UNREADABLE_NPZ:
            return None  # missing or damaged: recomputed, never trusted
        if pts.ndim != 2 or pts.shape[1:] != (2,) or desc.shape != (len(pts), 128):
            return None
        return LocalFeatures(pts.astype(np.float32), desc.astype(np.float32))

    def save(self, image_hash: str, lf: LocalFeatures) -> None:
        path = self.path(image_hash)
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, points=lf.points.astype(np.float32),
                         descriptors=np.clip(np.rint(lf.descriptors), 0, 255).astype(np.uint8))
            os.replace(tmp, path)
        except OSError:
            if tmp is not None:  # a full disk costs the cache, not the inspection
                Path(tmp).unlink(missing_ok=True)


_FLANN = None


def verify_pair(a: LocalFeatures, b: LocalFeatures, ratio: float = 0.8) -> int:
    """Ratio-tested SIFT matches kept by a RANSAC homography (0 when none holds)."""
    global _FLANN
    if len(a.descriptors) < MIN_INLIERS or len(b.descriptors) < MIN_INLIERS:
        return 0
    if _FLANN is None:
        _FLANN = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4}, {"checks": 32})
    pairs = _FLANN.knnMatch(a.descriptors, b.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    if len(good) < MIN_INLIERS:
        return 0
    src = a.points[[m.queryIdx for m in good]]
    dst = b.points[[m.trainIdx for m in good]]
    H, inl = cv2.findHomography(src, dst, cv2.RANSAC, 6.0, maxIters=500, confidence=0.995)
    if H is None or inl is None:
        return 0
    n = int(inl.sum())
    return n if n >= MIN_INLIERS else 0


LOCAL_CACHE_VIEWS = 4096  # reference views' local features kept in memory (~0.3 MB each as float32)


def top_rows(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values, largest first: a partition, not a sort of the whole index."""
    k = min(k, len(values))
    if k <= 0:
        return np.zeros(0, np.int64)
    part = np.argpartition(-values, k - 1)[:k] if k < len(values) else np.arange(len(values))
    return part[np.argsort(-values[part], kind="stable")]


@dataclass(slots=True)
class IdentityIndex:
    """Every catalogue view's embedding (rows of one matrix) and its local features: from ``local_store`` (by the
    view's image hash) where the catalogue has one, computed on first use otherwise."""

    backbone: Backbone = field(default_factory=default_backbone)
    skus: list[str] = field(default_factory=list)  # distinct SKUs, insertion order
    view_sku: list[str] = field(default_factory=list)
    view_key: list[str] = field(default_factory=list)
    view_hash: list[str | None] = field(default_factory=list)
    local_store: LocalFeatureStore | None = None
    _matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 1280), np.float32))
    _pending: list[np.ndarray] = field(default_factory=list)
    _crops: dict[int, np.ndarray] = field(default_factory=dict)
    _local: OrderedDict = field(default_factory=OrderedDict)  # row -> LocalFeatures, least recent first
    _sku_rows: dict[str, list[int]] = field(default_factory=dict)

    def add(self, sku: str, key: str, image: np.ndarray, mask: np.ndarray | None = None,
            embedding: np.ndarray | None = None) -> None:
        """One catalogue view; ``embedding`` when already known (a persisted index)."""
        crop = crop_to_mask(image, mask) if image is not None else None
        emb = embedding if embedding is not None else self.backbone.embed(crop)
        self.add_embedding(sku, key, emb)
        if crop is not None:
            self._crops[len(self.view_sku) - 1] = crop

    def add_embedding(self, sku: str, key: str, embedding: np.ndarray, image_hash: str | None = None) -> None:
        row = len(self.view_sku)
        if sku not in self._sku_rows:
            self.skus.append(sku)
            self._sku_rows[sku] = []
        self._sku_rows[sku].append(row)
        self.view_sku.append(sku)
        self.view_key.append(key)
        self.view_hash.append(image_hash)
        self._pending.append(np.asarray(embedding, np.float32))

    @property
    def matrix(self) -> np.ndarray:
        if self._pending:
            self._matrix = np.concatenate([self._matrix, np.stack(self._pending)])
            self._pending = []
        return self._matrix

    def __len__(self) -> int:
        return len(self.view_sku)

    def rows(self, sku: str) -> list[int]:
        return self._sku_rows.get(sku, [])

    def query(self, image: np.ndarray, mask: np.ndarray | None = None) -> IdentityQuery:
        crop = crop_to_mask(image, mask)
        return self.search(self.backbone.embed(crop), crop)

    def search(self, embedding: np.ndarray, crop: np.ndarray) -> IdentityQuery:
        """The returned view's cosine with every indexed view (``query`` once the crop is embedded)."""
        return IdentityQuery(embedding, self.matrix @ embedding, crop)

    def per_sku(self, sims: np.ndarray) -> dict[str, float]:
        return {s: float(sims[rows].max()) for s, rows in self._sku_rows.items()}

    def sku_similarity(self) -> dict[str, dict[str, float]]:
        m = self.matrix
        full = m @ m.T
        return {s: self.per_sku(full[rows].max(axis=0)) for s, rows in self._sku_rows.items()}

    def set_local(self, row: int, lf: LocalFeatures) -> None:
        self._local[row] = lf
        self._local.move_to_end(row)
        while len(self._local) > LOCAL_CACHE_VIEWS:
            self._local.popitem(last=False)

    def _local_of(self, row: int, crop_loader=None) -> LocalFeatures | None:
        lf = self._local.get(row)
        if lf is not None:
            self._local.move_to_end(row)
            return lf
        image_hash = self.view_hash[row]
        if self.local_store is not None and image_hash is not None:
            lf = self.local_store.load(image_hash)
        if lf is None:
            crop = self._crops.get(row)
            if crop is None and crop_loader is not None:
                crop = crop_loader(self.view_sku[row], self.view_key[row])
            if crop is None:
                return None
            lf = local_features(crop)
            if self.local_store is not None and image_hash is not None:
                self.local_store.save(image_hash, lf)
        self.set_local(row, lf)
        return lf

    def shortlist(self, sims: np.ndarray, exclude: str | None, n: int = SHORTLIST) -> list[tuple[str, int]]:
        """The ``n`` SKUs (other than ``exclude``) whose best view is nearest, each with that view's row."""
        masked = sims
        rows = self.rows(exclude) if exclude is not None else []
        if rows:
            masked = sims.copy()
            masked[rows] = -np.inf
        found: dict[str, int] = {}
        k = 8 * n + 8
        while True:
            for row in top_rows(masked, k):
                if not np.isfinite(masked[row]):
                    return list(found.items())  # only the excluded SKU's rows are left
                found.setdefault(self.view_sku[row], int(row))
                if len(found) == n:
                    return list(found.items())
            if k >= len(masked):
                return list(found.items())
            k *= 4  # SKUs with many views filled the first rows: look further

    def judge(self, q: IdentityQuery, image: np.ndarray | None, claimed: str, crop_loader=None,
              query_local: LocalFeatures | None = None) -> IdentityJudgement:
        """How well the returned view supports the claim ``claimed`` against every other indexed SKU."""
        sims = q.similarities
        claimed_rows = self.rows(claimed)
        claimed_sim = float(sims[claimed_rows].max()) if claimed_rows else 0.0
        best_row_of = dict(self.shortlist(sims, claimed))
        shortlist = list(best_row_of)
        best_other = shortlist[0] if shortlist else None
        best_other_sim = float(sims[best_row_of[best_other]]) if best_other else -1.0
        margin = claimed_sim - best_other_sim if best_other else claimed_sim
        ql = query_local if query_local is not None else local_features(q.crop)
        n_claim = 0
        for row in sorted(claimed_rows, key=lambda r: -sims[r])[:3]:
            lf = self._local_of(row, crop_loader)
            if lf is not None:
                n_claim = max(n_claim, verify_pair(ql, lf))
        n_other = 0
        for s in shortlist:
            lf = self._local_of(best_row_of[s], crop_loader)
            if lf is not None:
                n_other = max(n_other, verify_pair(ql, lf))
        local = (n_claim - n_other) / (n_claim + n_other + 10.0)
        raw = RETRIEVAL_WEIGHT * margin + LOCAL_WEIGHT * local - OFFSET
        # Open set: an item in no catalogue can be nearer the claimed SKU than any other and still look
        # like none of them; the claimed SKU must also match in absolute terms.
        raw = min(raw, claimed_sim - SIMILARITY_FLOOR)
        score = float(np.clip(0.9 + raw, 0.0, 1.0))
        return IdentityJudgement(score, float(margin), claimed_sim, best_other, best_other_sim, n_claim, n_other,
                                 tuple(shortlist))


INDEX_FILE = "identity-index.npz"  # in the catalogue's feature cache folder (vision.features.CACHE_DIR)
LOCAL_DIR = "local"  # reference views' local features (LocalFeatureStore), beside INDEX_FILE


def local_store_of(catalogue_root: Path) -> LocalFeatureStore:
    from vision.features import CACHE_DIR

    return LocalFeatureStore(Path(catalogue_root) / CACHE_DIR / LOCAL_DIR)


def build_catalogue_index(catalogue, backbone: Backbone | None = None, segment=None, progress=None
                          ) -> tuple[IdentityIndex, int]:
    """Every view of ``catalogue`` in one index, embeddings reused from the persisted index by the image
    file's sha256 (so importing 100 more SKUs embeds only theirs), and every view's local features in the
    catalogue's LocalFeatureStore (verification then reads them instead of computing them per query).
    Returns (index, views embedded now). ``segment``: image -> product mask (the comparer's segmentation);
    ``progress``: called once per view."""
    from vision.features import CACHE_DIR, file_hash

    backbone = backbone or default_backbone()
    store = Path(catalogue.root) / CACHE_DIR / INDEX_FILE
    known: dict[str, np.ndarray] = {}
    if store.is_file():
        try:
            with np.load(store, allow_pickle=False) as data:
                known = dict(zip((str(h) for h in data["hashes"]), data["embeddings"]))
        except UNREADABLE_NPZ:
            known = {}  # a damaged cache is rebuilt, never trusted
    local = local_store_of(catalogue.root)
    index = IdentityIndex(backbone, local_store=local)
    hashes, embedded = [], 0
    for sku, item in catalogue.items.items():
        for i in range(len(item.reference_images)):
            path = catalogue.image_path(item, i)
            h = file_hash(path)
            emb = known.get(h)
            if emb is None or not local.has(h):
                img = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if img is None:
                    continue
                mask = segment(img) if segment is not None else None
                if emb is None:
                    emb = backbone.embed(img, mask)
                    embedded += 1
                local.save(h, local_features(crop_to_mask(img, mask)))
            index.add_embedding(sku, f"{i}", emb, image_hash=h)
            hashes.append(h)
            if progress is not None:
                progress()
    if embedded or len(known) != len(hashes):
        store.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=store.parent, suffix=".npz")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, hashes=np.array(hashes), embeddings=index.matrix)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, store)
    return index, embedded
