"""Unseen damage: what differs from how a SKU looks when it is good.

Each SKU has a memory of good appearance (PatchCore's approach, as anomalib implements it): the pretrained
backbone's patch features (``vision.anomaly.patch_grid``) of its catalogue views and of the returns of it
that the station accepted as good, thinned to a coreset. A returned view is cut to the product, its
background set to mid grey (so the bench does not count), and every patch is scored by its distance to the
nearest good patch. Regions above the threshold become ``damage`` findings with their box.

Thresholds come from good images only: the leave-one-out scores of the SKU's memory (each image against the
others) where it holds at least ``min_goods`` images, else those of every calibrated SKU of its category,
else none: the map is still computed and shown, but no finding is raised on a memory too small to know what
normal looks like. Each threshold carries where it came from (``Calibration``).

Catalogue reference features are cached beside the catalogue by the image file's sha256; accepted goods are
kept under the station's data dir, a bounded number per SKU, newest first.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import cv2
import numpy as np

from vision.anomaly import patch_grid

PATCH_VERSION = 1  # bump when the features change: old cache files are then ignored
QUANTILE = 0.98
MARGIN = 1.25
MIN_GOODS = 5
MAX_GOODS = 24  # accepted-good views kept per SKU (the catalogue's own views are always kept)
CORESET = 3000  # patches kept per SKU's memory
MIN_REGION_SHARE = 0.008  # a region smaller than this share of the product is noise
# A threshold borrowed from the category's other SKUs that most of this SKU's product exceeds says the threshold
# does not fit this SKU (its print differs from theirs), not that the item is damaged all over: map only.
BORROWED_MAX_SHARE = 0.5
GREY = 127
# Missing part from memory: where the catalogue view's outline (aligned on the outlines) has product and
# this view shows bench, at least MISSING_MIN_DEPTH of the outline's shorter side deep and
# MISSING_MIN_SHARE of it, and the memory finds the appearance around it unusual (patches above
# MISSING_SUPPORT x the threshold within MISSING_REACH_CELLS patch cells). Neither cue alone decides: an
# outline loses area to a pale part the segmentation dropped, a memory flags a dent on the edge.
MISSING_MIN_DEPTH = 0.04
MISSING_MIN_SHARE = 0.01
MISSING_SUPPORT = 0.75
MISSING_REACH_CELLS = 1.5


@dataclass(frozen=True, slots=True)
class Calibration:
    threshold: float | None
    source: str  # "sku", "category" or "none"
    images: int  # good images the scores came from
    detail: str

    def to_json(self) -> dict:
        return {"threshold": None if self.threshold is None else round(self.threshold, 4), "source": self.source,
                "images": self.images, "detail": self.detail}


class RegionKind(StrEnum):
    DAMAGE = "damage"
    MISSING_PART = "missing_part"  # the SKU's outline has product here, this view has bench


@dataclass(frozen=True, slots=True)
class DamageRegion:
    box_xyxy: tuple[int, int, int, int]
    score: float  # the heat map's peak in the region, relative to the threshold (1.0 = at threshold)
    area_share: float  # of the product outline (missing_part: of the catalogue view's outline)
    kind: RegionKind = RegionKind.DAMAGE

    def to_json(self) -> dict:
        return {"box_xyxy": list(self.box_xyxy), "score": round(self.score, 4), "area_share": round(self.area_share, 4),
                "kind": self.kind.value}


@dataclass(frozen=True, slots=True)
class ViewAnomaly:
    view: str
    heatmap: np.ndarray  # (H, W) float32 in [0, 1] (1 = twice the threshold or more), zero outside the product
    peak: float  # raw nearest-neighbour distance at the worst patch
    calibration: Calibration
    regions: tuple[DamageRegion, ...]

    def to_json(self) -> dict:
        return {"view": self.view, "peak": round(self.peak, 4), "calibration": self.calibration.to_json(),
                "regions": [r.to_json() for r in self.regions]}


def product_crop(image: np.ndarray, mask: np.ndarray, pad: float = 0.05) -> tuple[np.ndarray, np.ndarray, tuple]:
    """The product's padded bounding box with everything outside its outline set to mid grey; the crop's
    mask and its (x0, y0, x1, y1) in the image."""
    x, y, w, h = cv2.boundingRect((mask > 0).astype(np.uint8))
    px, py = int(w * pad), int(h * pad)
    x0, y0 = max(0, x - px), max(0, y - py)
    x1, y1 = min(image.shape[1], x + w + px), min(image.shape[0], y + h + py)
    crop, m = image[y0:y1, x0:x1].copy(), mask[y0:y1, x0:x1] > 0
    crop[~m] = GREY
    return crop, m, (x0, y0, x1, y1)


def _nn(feats: np.ndarray, bank: np.ndarray, bank_sq: np.ndarray | None = None) -> np.ndarray:
    """Distance of each row of ``feats`` to its nearest row of ``bank`` (one (n, m) temporary, in place)."""
    d2 = feats @ bank.T
    d2 *= -2.0
    d2 += (bank * bank).sum(1)[None, :] if bank_sq is None else bank_sq[None, :]
    return np.sqrt(np.maximum(d2.min(1) + (feats * feats).sum(1), 0.0))


def coreset(patches: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Greedy k-centre selection (PatchCore's coreset) on a random 64-d projection: the k patches that cover
    the memory best, so rare but normal patches are kept where random thinning would drop them."""
    if len(patches) <= k:
        return patches
    rng = np.random.default_rng(seed)
    proj = patches @ rng.standard_normal((patches.shape[1], 64)).astype(np.float32) / 8.0
    chosen = [int(rng.integers(len(patches)))]
    dist = ((proj - proj[chosen[0]]) ** 2).sum(1)
    for _ in range(k - 1):
        i = int(dist.argmax())
        chosen.append(i)
        dist = np.minimum(dist, ((proj - proj[i]) ** 2).sum(1))
    return patches[np.array(chosen)]


def _save_patches(path: Path, patches: np.ndarray) -> bool:
    """Write ``patches`` (float16) to ``path`` atomically; False when the folder is not writable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, patches.astype(np.float16))
        tmp.replace(path)
        return True
    except OSError:
        return False


def _masked_patches(grid: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The patches of ``grid`` whose cell lies mostly on the product (grey background patches are not memory)."""
    gh, gw = grid.shape[:2]
    cover = cv2.resize(mask.astype(np.float32), (gw, gh), interpolation=cv2.INTER_AREA) > 0.5
    flat = grid.reshape(-1, grid.shape[-1]).astype(np.float32)
    return flat[cover.ravel()] if cover.any() else flat


@dataclass(slots=True)
class SkuMemory:
    """One SKU's good appearance (mutable by design: it grows from the line)."""

    sku: str
    category: str
    images: list[np.ndarray] = field(default_factory=list)  # per good image: (n, C) float32 product patches
    sources: list[str] = field(default_factory=list)  # "catalogue:<file>" or "return:<record>"
    _bank: np.ndarray | None = None
    _bank_sq: np.ndarray | None = None
    _loo: list[float] | None = None
    _loo_images: int = 0

    def add(self, patches: np.ndarray, source: str) -> None:
        self.images.append(patches)
        self.sources.append(source)
        if self._bank is not None:
            # New goods join the coreset as they are; it is thinned again only when it has doubled, so an
            # accepted return costs a concatenation, not a new selection.
            self._bank = np.concatenate([self._bank, patches])
            if len(self._bank) > 2 * CORESET:
                self._bank = coreset(self._bank, CORESET)
            self._bank_sq = (self._bank * self._bank).sum(1)

    def drop(self, index: int) -> None:
        del self.images[index], self.sources[index]
        self._bank, self._loo = None, None

    def bank(self) -> tuple[np.ndarray, np.ndarray]:
        """The coreset and its rows' squared norms."""
        if self._bank is None:
            self._bank = np.ascontiguousarray(coreset(np.concatenate(self.images), CORESET))
            self._bank_sq = (self._bank * self._bank).sum(1)
        return self._bank, self._bank_sq

    def leave_one_out(self) -> list[float]:
        """Each good image's worst patch against a memory of the others (what thresholds come from).
        Recomputed when the memory has grown by a quarter: scores only fall as the memory grows, so older
        ones err towards fewer alarms."""
        n = len(self.images)
        if n < 2:
            return []
        if self._loo is None or n >= max(self._loo_images + 1, int(self._loo_images * 1.25)):
            rng = np.random.default_rng(0)
            scores = []
            for i, p in enumerate(self.images):
                others = np.concatenate([q for j, q in enumerate(self.images) if j != i])
                if len(others) > CORESET:
                    others = others[rng.choice(len(others), CORESET, replace=False)]
                scores.append(float(_nn(p, others).max()))
            self._loo, self._loo_images = scores, n
        return self._loo


class UnseenDamage:
    """Per-SKU memories of good appearance and the damage regions of returned views against them."""

    def __init__(self, catalogue, backbone=None, goods_dir: Path | None = None, min_goods: int = MIN_GOODS,
                 max_goods: int = MAX_GOODS) -> None:
        self.catalogue = catalogue
        self._backbone = backbone
        self.goods_dir = Path(goods_dir) if goods_dir is not None else None
        self.min_goods = min_goods
        self.max_goods = max_goods
        self._memories: dict[str, SkuMemory] = {}
        self._outlines: dict[str, list[np.ndarray]] = {}  # SKU -> its catalogue views' product outlines
        self._recent: dict[bytes, np.ndarray] = {}  # crop digest -> grid of the views just scored

    def _grid_of(self, crop: np.ndarray) -> np.ndarray:
        """``grid`` with the last few results kept: an accepted return is learnt from the views just scored,
        without running the backbone on them again."""
        key = hashlib.blake2b(crop.tobytes(), digest_size=16).digest() + bytes(str(crop.shape), "ascii")
        g = self._recent.get(key)
        if g is None:
            g = self.grid(crop)
            self._recent[key] = g
            while len(self._recent) > 8:
                self._recent.pop(next(iter(self._recent)))
        return g

    @property
    def backbone(self):
        if self._backbone is None:
            from vision.embedding import default_backbone

            self._backbone = default_backbone()
        return self._backbone

    # -- features
    def grid(self, crop: np.ndarray) -> np.ndarray:
        return patch_grid(self.backbone, crop)

    def _cache_path(self, digest: str) -> Path:
        return Path(self.catalogue.root) / ".features" / "patches" / f"{digest}-v{PATCH_VERSION}.npy"

    def _reference_patches(self, path: Path) -> np.ndarray | None:
        from vision.compare import segment_item, usable_outline

        data = path.read_bytes()
        cached = self._cache_path(hashlib.sha256(data).hexdigest())
        if cached.exists():
            try:
                return np.load(cached).astype(np.float32)
            except (OSError, ValueError):
                pass  # a damaged cache file is recomputed
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            return None
        mask = usable_outline(segment_item(img)[0])
        if mask is None:
            return None
        crop, m, _ = product_crop(img, mask)
        patches = _masked_patches(self.grid(crop), m)
        _save_patches(cached, patches)  # a read-only catalogue: recomputed next start
        return patches

    def memory(self, sku: str) -> SkuMemory:
        mem = self._memories.get(sku)
        if mem is None:
            item = self.catalogue.get(sku)
            mem = SkuMemory(sku, str(item.category))
            for i in range(len(item.reference_images)):
                path = Path(self.catalogue.image_path(item, i))
                p = self._reference_patches(path) if path.is_file() else None
                if p is not None and len(p):
                    mem.add(p, f"catalogue:{item.reference_images[i]}")
            for p, source in self._stored_goods(sku):
                mem.add(p, source)
            self._memories[sku] = mem
        return mem

    # -- goods from the line
    def _sku_dir(self, sku: str) -> Path | None:
        if self.goods_dir is None:
            return None
        return self.goods_dir / hashlib.sha256(sku.encode()).hexdigest()[:16]

    def _stored_goods(self, sku: str) -> list[tuple[np.ndarray, str]]:
        d = self._sku_dir(sku)
        if d is None or not d.is_dir():
            return []
        out = []
        for f in sorted(d.glob(f"*-v{PATCH_VERSION}.npy"), key=lambda f: f.stat().st_mtime)[-self.max_goods:]:
            try:
                out.append((np.load(f).astype(np.float32), f"return:{f.name.split('-')[0]}"))
            except (OSError, ValueError):
                continue
        return out

    def learn_good(self, sku: str, views: list[tuple[np.ndarray, np.ndarray]], source: str) -> int:
        """Add an accepted-good return's views (image, product mask) to the SKU's memory; returns how many
        views were added. The oldest goods beyond ``max_goods`` are dropped (catalogue views never are)."""
        mem = self.memory(sku)
        d = self._sku_dir(sku)
        stored = d is not None
        for image, mask in views:
            crop, m, _ = product_crop(image, mask)
            patches = _masked_patches(self._grid_of(crop), m)
            mem.add(patches, f"return:{source}")
            if stored:
                digest = hashlib.sha256(patches.tobytes()).hexdigest()[:16]
                stored = _save_patches(d / f"{digest}-v{PATCH_VERSION}.npy", patches)  # else: this session only
        if stored:
            try:
                (d / "sku.json").write_text(json.dumps({"sku": sku}))
            except OSError:
                pass
        goods = [i for i, s in enumerate(mem.sources) if s.startswith("return:")]
        for i in reversed(goods[:-self.max_goods] if len(goods) > self.max_goods else []):
            mem.drop(i)
        if d is not None and d.is_dir():
            files = sorted(d.glob(f"*-v{PATCH_VERSION}.npy"), key=lambda f: f.stat().st_mtime)
            for f in files[:-self.max_goods]:
                f.unlink(missing_ok=True)
        return len(views)

    # -- thresholds
    def calibration(self, sku: str) -> Calibration:
        mem = self.memory(sku)
        if len(mem.images) >= self.min_goods:
            loo = mem.leave_one_out()
            return Calibration(float(np.quantile(loo, QUANTILE) * MARGIN), "sku", len(loo),
                               f"leave-one-out q{QUANTILE:g} x {MARGIN:g} over {len(loo)} good images of {sku}")
        pooled: list[float] = []
        skus = []
        for other, m in self._memories.items():
            if other != sku and m.category == mem.category and len(m.images) >= self.min_goods:
                pooled += m.leave_one_out()
                skus.append(other)
        if pooled:
            return Calibration(float(np.quantile(pooled, QUANTILE) * MARGIN), "category", len(pooled),
                               f"leave-one-out q{QUANTILE:g} x {MARGIN:g} over {len(pooled)} good images of "
                               f"{len(skus)} {mem.category} SKU(s)")
        return Calibration(None, "none", len(mem.images),
                           f"{len(mem.images)} good image(s) of {sku}, {self.min_goods} needed (and no calibrated "
                           f"SKU of {mem.category}): map only, no damage finding")

    # -- scoring
    def score_view(self, sku: str, image: np.ndarray, mask: np.ndarray, view: str = "") -> ViewAnomaly | None:
        mem = self.memory(sku)
        if not mem.images:
            return None
        crop, m, (x0, y0, x1, y1) = product_crop(image, mask)
        grid = self._grid_of(crop)
        gh, gw = grid.shape[:2]
        d = _nn(grid.reshape(-1, grid.shape[-1]).astype(np.float32), *mem.bank()).reshape(gh, gw)
        cover = cv2.resize(m.astype(np.float32), (gw, gh), interpolation=cv2.INTER_AREA) > 0.5
        d = np.where(cover, d, 0.0).astype(np.float32)
        peak = float(d.max())
        cal = self.calibration(sku)
        heat = np.zeros(image.shape[:2], np.float32)
        up = cv2.resize(d, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        up[~m] = 0.0
        scale = cal.threshold if cal.threshold else max(peak, 1e-6)
        heat[y0:y1, x0:x1] = np.clip(up / (2.0 * scale), 0.0, 1.0)
        regions: list[DamageRegion] = []
        if cal.threshold is not None and cal.source == "category" and peak > cal.threshold:
            share_above = float((d > cal.threshold).sum()) / max(1, int(cover.sum()))
            if share_above > BORROWED_MAX_SHARE:
                cal = Calibration(None, cal.source, cal.images,
                                  f"{cal.detail}; {share_above:.0%} of the product is above the category's threshold: "
                                  f"it does not fit this SKU, map only until it has goods of its own")
        if cal.threshold is not None and peak > cal.threshold:
            above = (d > cal.threshold).astype(np.uint8)
            n, labels, stats, _ = cv2.connectedComponentsWithStats(above)
            cells = max(1, int(cover.sum()))
            sx, sy = (x1 - x0) / gw, (y1 - y0) / gh
            for i in range(1, n):
                share = stats[i, cv2.CC_STAT_AREA] / cells
                if share < MIN_REGION_SHARE:
                    continue
                cx, cy, cw, ch = stats[i, :4]
                box = (int(x0 + cx * sx), int(y0 + cy * sy), int(x0 + (cx + cw) * sx), int(y0 + (cy + ch) * sy))
                regions.append(DamageRegion(box, float(d[labels == i].max() / cal.threshold), float(share)))
        if cal.threshold is not None and peak > MISSING_SUPPORT * cal.threshold:
            regions = self._with_missing_parts(sku, image, mask, d, (x0, y0, x1, y1), cal.threshold, regions)
        return ViewAnomaly(view, heat, peak, cal, tuple(sorted(regions, key=lambda r: -r.score)))

    # -- missing parts
    def outlines(self, sku: str) -> list[np.ndarray]:
        """The product outlines of the SKU's catalogue views (segmented once, kept for the session)."""
        out = self._outlines.get(sku)
        if out is None:
            from vision.compare import segment_item, usable_outline

            out = []
            item = self.catalogue.get(sku)
            for i in range(len(item.reference_images)):
                img = cv2.imread(str(self.catalogue.image_path(item, i)), cv2.IMREAD_COLOR)
                mask = None if img is None else usable_outline(segment_item(img)[0])
                if mask is not None:
                    out.append(mask)
            self._outlines[sku] = out
        return out

    def _with_missing_parts(self, sku: str, image: np.ndarray, mask: np.ndarray, d: np.ndarray,
                            crop_box: tuple[int, int, int, int], threshold: float,
                            regions: list[DamageRegion]) -> list[DamageRegion]:
        """``regions`` with the outline's lost parts that the memory supports as ``missing_part`` regions; a
        damage region on the same spot is the same evidence and is dropped."""
        x0, y0, x1, y1 = crop_box
        gh, gw = d.shape
        support = np.zeros(image.shape[:2], np.uint8)
        support[y0:y1, x0:x1] = cv2.resize((d > MISSING_SUPPORT * threshold).astype(np.uint8), (x1 - x0, y1 - y0),
                                           interpolation=cv2.INTER_NEAREST)
        strength = np.zeros(image.shape[:2], np.float32)
        strength[y0:y1, x0:x1] = cv2.resize(d, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        reach = max(3, int(MISSING_REACH_CELLS * max((x1 - x0) / gw, (y1 - y0) / gh)))
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
        missing: list[DamageRegion] = []
        for blob, share in lost_outline(image, mask, self.outlines(sku)):
            near = (cv2.dilate(blob.astype(np.uint8), disc) > 0) & (support > 0)
            if not near.any():
                continue  # the memory sees nothing unusual there: a part the segmentation dropped, not missing
            bx, by, bw, bh = cv2.boundingRect(blob.astype(np.uint8))
            missing.append(DamageRegion((bx, by, bx + bw, by + bh), float(strength[near].max() / threshold), share,
                                        RegionKind.MISSING_PART))
        if not missing:
            return regions

        def overlaps(a, b) -> bool:
            return a[0] <= b[2] + reach and b[0] <= a[2] + reach and a[1] <= b[3] + reach and b[1] <= a[3] + reach

        kept = [r for r in regions if not any(overlaps(r.box_xyxy, m.box_xyxy) for m in missing)]
        return kept + missing


def lost_outline(image: np.ndarray, mask: np.ndarray, ref_masks: list[np.ndarray]) -> list[tuple[np.ndarray, float]]:
    """Where the catalogue outline best matching this view's (aligned on the outlines: boxes, then ECC) has
    product and this view shows bench: (blob in the view's pixels, its share of the catalogue outline) for
    each blob reaching MISSING_MIN_DEPTH of the outline's shorter side into it, covering MISSING_MIN_SHARE
    of it, where the view shows bench or its shadow for the most part (else the part is there and only its
    segmentation dropped it)."""
    from vision.align import box_homography
    from vision.difference import _bench_like, _ecc_outline, _outline_iou

    if not ref_masks or not mask.any():
        return []
    h, w = mask.shape
    # The catalogue view whose outline fits best on the boxes alone, then one affine ECC on the outlines
    # (kept when it fits better): one refinement, not one per view and start (that cost ~300 ms).
    fits = [(_outline_iou(mask, r, box_homography(mask, r), 0.25), -i) for i, r in enumerate(ref_masks)]
    ref = ref_masks[-max(fits)[1]]
    H = box_homography(mask, ref)
    He = _ecc_outline(mask, ref, H, 0.5, 30)
    if He is not None and _outline_iou(mask, ref, He, 0.5) > _outline_iou(mask, ref, H, 0.5):
        H = He
    ref_w = cv2.warpPerspective(ref, np.linalg.inv(H), (w, h), flags=cv2.INTER_NEAREST) > 0
    lost = ref_w & ~(cv2.dilate(mask, np.ones((9, 9), np.uint8)) > 0)
    lost = cv2.morphologyEx(lost.astype(np.uint8), cv2.MORPH_OPEN, np.ones((7, 7), np.uint8))
    if not lost.any():
        return []
    depth = cv2.distanceTransform(ref_w.astype(np.uint8), cv2.DIST_L2, 5)
    _, _, rw, rh = cv2.boundingRect(ref_w.astype(np.uint8))
    area = max(1.0, float(ref_w.sum()))
    bench = _bench_like(image)
    n, labels = cv2.connectedComponents(lost)
    out = []
    for i in range(1, n):
        blob = labels == i
        share = float(blob.sum()) / area
        if share < MISSING_MIN_SHARE or depth[blob].max() < MISSING_MIN_DEPTH * min(rw, rh):
            continue
        if bench[blob].mean() < 0.5:
            continue
        out.append((blob, share))
    return out
