"""Generated evaluation of the catalogue comparer: identity ROC with look-alike SKUs, pixel AUROC of the
reference difference on painted missing parts and unseen damage, and timings. Used by
`station bench vision` and the tests. Everything is seeded: the same arguments give the same numbers.

Look-alikes are SKUs of the same ProductShape as a sample SKU with another print (print_seed) or
another body colour; they join the evaluation catalogue, so a swap for a look-alike must be told apart
from the claimed SKU. The renderer draws no print on toys and car seats and only two garment prints, so
those get colour look-alikes (a print look-alike would be pixel-identical: no method can tell them apart).
"""

from __future__ import annotations

import colorsys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from vision.catalogue import SAMPLE_SKUS, SAMPLE_VIEWS, SampleSku, build_catalogue
from vision.synth import ProductLook, ProductShape, SceneStyle, random_look, render_item

BENCH_GREY = 200
EVAL_SIZE = (640, 480)
_PRINTED = (ProductShape.CARTON, ProductShape.BOTTLE, ProductShape.GADGET)


def _garment_pattern(seed: int) -> bool:
    return bool(np.random.default_rng(seed).random() < 0.5)


def _rotate_hue(bgr: tuple[int, int, int], degrees: float, sat_boost: float = 0.0) -> tuple[int, int, int]:
    b, g, r = (c / 255.0 for c in bgr)
    h, l, s = colorsys.rgb_to_hls(r, g, b)
    if s < 0.15:  # near-grey: a hue turn does nothing visible, so tint it instead
        s = 0.45
    r, g, b = colorsys.hls_to_rgb((h + degrees / 360.0) % 1.0, l, min(1.0, s + sat_boost))
    return (int(round(b * 255)), int(round(g * 255)), int(round(r * 255)))


def lookalike_skus() -> tuple[SampleSku, ...]:
    """For each sample SKU: a print look-alike (printed shapes, and garments with the other print) and a
    colour look-alike (body colour turned 60° in hue), same shape and aspect."""
    out = []
    for s in SAMPLE_SKUS:
        look = s.look
        if look.shape in _PRINTED or look.shape == ProductShape.GARMENT:
            seed = look.print_seed + 1000
            if look.shape == ProductShape.GARMENT:
                while _garment_pattern(seed) == _garment_pattern(look.print_seed):
                    seed += 1
            out.append(replace(s, sku=f"{s.sku}-LP", name=f"{s.name} (other print)",
                               look=replace(look, print_seed=seed)))
        out.append(replace(s, sku=f"{s.sku}-LC", name=f"{s.name} (other colour)",
                           look=replace(look, body_bgr=_rotate_hue(look.body_bgr, 60.0))))
    return tuple(out)


def evaluation_skus() -> tuple[SampleSku, ...]:
    return SAMPLE_SKUS + lookalike_skus()


def build_evaluation_catalogue(root: Path):
    return build_catalogue(root, evaluation_skus())


def family(sku: str) -> str:
    return sku.removesuffix("-LP").removesuffix("-LC")


def eval_style(hard: bool = True) -> SceneStyle:
    """Station bench shots, with more viewpoint and lighting variation than the simulated camera."""
    if hard:
        return SceneStyle(size=EVAL_SIZE, bench_grey=BENCH_GREY, perspective=0.06, lighting_jitter=1.0,
                          blur_max=1.0, noise_max=4.0, jpeg_min=75)
    return SceneStyle(size=EVAL_SIZE, bench_grey=BENCH_GREY, perspective=0.03, lighting_jitter=0.5,
                      blur_max=0.6, noise_max=3.0, jpeg_min=85)


def partial_view(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray,
                 share: tuple[float, float] = (0.2, 0.35)) -> tuple[np.ndarray, np.ndarray]:
    """Slide the item so a share of it leaves the frame (the bench fills in): a partial view."""
    x, y, w, h = cv2.boundingRect(mask)
    H, W = mask.shape
    cut = rng.uniform(*share)
    if rng.random() < 0.5:
        dx = (W - x) - int(w * (1 - cut)) if rng.random() < 0.5 else -(x + int(w * cut))
        dy = 0
    else:
        dx = 0
        dy = (H - y) - int(h * (1 - cut)) if rng.random() < 0.5 else -(y + int(h * cut))
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    img = cv2.warpAffine(image, m, (W, H), borderMode=cv2.BORDER_CONSTANT, borderValue=(BENCH_GREY,) * 3)
    noise = rng.normal(0, 2.0, img.shape[:2]).astype(np.float32)
    filled = cv2.warpAffine(np.ones(mask.shape, np.uint8), m, (W, H)) == 0
    img[filled] = np.clip(img[filled].astype(np.float32) + noise[filled, None], 0, 255).astype(np.uint8)
    return img, cv2.warpAffine(mask, m, (W, H), flags=cv2.INTER_NEAREST)


def render_views(look: ProductLook, seed: int, partial_share: float = 0.25, hard: bool = True) -> list[np.ndarray]:
    """The three station views of one physical item; some views are partial."""
    out = []
    for v, view in enumerate(SAMPLE_VIEWS):
        rng = np.random.default_rng([seed, v, 77])
        item = render_item(rng, look, (), eval_style(hard), view)
        img = item.image
        if rng.random() < partial_share:
            img, _ = partial_view(rng, img, item.product_mask)
        out.append(img)
    return out


@dataclass(frozen=True, slots=True)
class IdentityTrial:
    true_sku: str | None  # None: an item in no catalogue
    claimed: str
    score: float
    positive: bool  # the item is the claimed SKU


def roc(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), a point per distinct score, from the strictest threshold down."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(bool)
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[distinct]
    fp = np.cumsum(~y)[distinct]
    P, N = max(1, y.sum()), max(1, (~y).sum())
    return np.r_[0.0, fp / N], np.r_[0.0, tp / P], np.r_[np.inf, s[distinct]]


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC by ranks (ties count half), exact for any number of pixels."""
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels, bool).ravel()
    P, N = int(labels.sum()), int((~labels).sum())
    if P == 0 or N == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    s = scores[order]
    # average ranks over ties
    bounds = np.r_[0, np.nonzero(np.diff(s))[0] + 1, len(s)]
    avg = (bounds[:-1] + bounds[1:] - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, np.diff(bounds))
    return float((ranks[labels].sum() - P * (P + 1) / 2) / (P * N))


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, max_fpr: float) -> tuple[float, float]:
    """Best TPR with FPR <= max_fpr, and the threshold (score >= threshold is a match) that gives it."""
    fpr, tpr, thr = roc(scores, labels)
    ok = np.nonzero(fpr <= max_fpr + 1e-12)[0]
    i = ok[np.argmax(tpr[ok])]
    return float(tpr[i]), float(thr[i])


def out_of_catalogue_looks(n: int, seed: int = 4242) -> list[ProductLook]:
    rng = np.random.default_rng(seed)
    shapes = [s.look.shape for s in SAMPLE_SKUS]
    return [random_look(rng, shapes[i % len(shapes)]) for i in range(n)]


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, (time.perf_counter() - t) * 1000.0


def paint_missing_part(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut a chunk off the product's outline (a lost cap, handle, corner): bench shows through."""
    x, y, w, h = cv2.boundingRect(mask)
    ys, xs = np.nonzero(cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)))
    i = int(rng.integers(0, len(xs)))
    r = int(min(w, h) * rng.uniform(0.15, 0.25))
    blob = np.zeros_like(mask)
    cv2.ellipse(blob, (int(xs[i]), int(ys[i])), (r, int(r * rng.uniform(0.6, 1.2))), float(rng.uniform(0, 180)),
                0, 360, 255, -1)
    gone = (blob > 0) & (mask > 0)
    out = image.copy()
    bench = np.median(np.concatenate([image[:8].reshape(-1, 3), image[-8:].reshape(-1, 3)]), axis=0)
    noise = rng.normal(0, 2.0, (int(gone.sum()), 3))
    out[gone] = np.clip(bench + noise, 0, 255).astype(np.uint8)
    return out, gone.astype(np.uint8) * 255


def paint_unseen_damage(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Damage no detector class covers: a marker scribble, a sticker, or a scorch mark."""
    x, y, w, h = cv2.boundingRect(cv2.erode(mask, np.ones((25, 25), np.uint8)))
    if w < 10 or h < 10:
        x, y, w, h = cv2.boundingRect(mask)
    cx, cy = int(x + w * rng.uniform(0.2, 0.8)), int(y + h * rng.uniform(0.2, 0.8))
    m = np.zeros(mask.shape, np.uint8)
    out = image.copy()
    kind = int(rng.integers(0, 3))
    s = int(min(w, h) * rng.uniform(0.12, 0.2))
    if kind == 0:
        pts = np.stack([cx + np.cumsum(rng.normal(0, s / 3, 8)), cy + np.cumsum(rng.normal(0, s / 3, 8))], 1)
        cv2.polylines(m, [pts.astype(np.int32)], False, 255, 4)
        colour = (int(rng.integers(0, 80)), int(rng.integers(0, 80)), int(rng.integers(120, 255)))
        out[m > 0] = colour
    elif kind == 1:
        cv2.rectangle(m, (cx - s, cy - s // 2), (cx + s, cy + s // 2), 255, -1)
        out[m > 0] = tuple(int(c) for c in rng.integers(150, 256, 3))
        cv2.line(out, (cx - s + 4, cy), (cx + s - 4, cy), (40, 40, 40), 2)
    else:
        cv2.circle(m, (cx, cy), s, 255, -1)
        alpha = cv2.GaussianBlur(m.astype(np.float32) / 255.0, (0, 0), s / 3)
        f = out.astype(np.float32) * (1 - 0.75 * alpha[..., None]) + np.float32([20, 30, 45]) * 0.75 * alpha[..., None]
        out = np.clip(f, 0, 255).astype(np.uint8)
        m = ((alpha > 0.25) * 255).astype(np.uint8)
    m &= mask
    return out, m


def run_benchmark(tmp: Path, items_per_sku: int = 3, out_of_catalogue: int = 12, defect_views: int = 24,
                  max_fpr: float = 0.02) -> dict:
    """Identity ROC (genuine vs swaps: look-alikes, other catalogue SKUs, out-of-catalogue items),
    difference AUROC and per-view timings. The comparer is the station's default one."""
    from vision.compare import CatalogueComparer, combined_identity, identity_score

    cat = build_evaluation_catalogue(tmp / "catalogue")
    cmp = CatalogueComparer(cat, shortlist=len(cat.items))  # full evidence once; claims re-scored below
    t = time.perf_counter()
    cmp.warm()
    warm_ms = (time.perf_counter() - t) * 1000
    skus = evaluation_skus()
    rng = np.random.default_rng(11)
    trials: list[IdentityTrial] = []
    prep_ms, ident_ms = [], []
    jobs = [(s.sku, s.look, 1000 + 10 * i + k) for i, s in enumerate(skus) for k in range(items_per_sku)]
    jobs += [(None, look, 9000 + j) for j, look in enumerate(out_of_catalogue_looks(out_of_catalogue))]
    fast = CatalogueComparer(cat)  # the station's shortlist, for the timing of one decision
    fast._refs, fast._ref_images = cmp._refs, cmp._ref_images
    fast._index = cmp.retrieval_index() if cmp.retrieval else None
    for true, look, seed in jobs:
        imgs = render_views(look, seed)
        views = []
        for img in imgs:
            v, ms = timed(cmp.prepare, img)
            prep_ms.append(ms)
            if v is not None:
                views.append(v)
        if not views:
            continue
        ev = {s: cmp.evidence(views, s) for s in cat.items}
        queries = cmp.retrieval_queries(views) if cmp.retrieval else None
        if true is None:
            claims = list(rng.choice(sorted(cat.items), 3, replace=False))
        else:
            siblings = [s for s in cat.items if s != true and family(s) == family(true)]
            others = [s for s in cat.items if family(s) != family(true)]
            claims = [true] + siblings + list(rng.choice(others, 2, replace=False))
        for c in claims:
            js = cmp.retrieval_judgements(views, str(c), queries) if queries is not None else []
            retrieval = float(np.mean([j.score for j in js])) if js else None
            trials.append(IdentityTrial(true, str(c), combined_identity(identity_score(ev, str(c)), retrieval),
                                        c == true))
        if true is not None:
            _, ms = timed(fast.identity, views, true)
            ident_ms.append(ms / len(views))
    scores = np.array([t.score for t in trials])
    labels = np.array([t.positive for t in trials])
    fpr, tpr, thr = roc(scores, labels)
    best_tpr, best_thr = tpr_at_fpr(scores, labels, max_fpr)
    at = scores >= cmp.identity_threshold
    by_kind: dict[str, list[float]] = {}
    for t_ in trials:
        if not t_.positive:
            kind = ("out_of_catalogue" if t_.true_sku is None else
                    "lookalike" if family(t_.true_sku) == family(t_.claimed) else "other_sku")
            by_kind.setdefault(kind, []).append(t_.score >= cmp.identity_threshold)
    # ---- difference
    diff_ms, all_s, all_y, prod_s, prod_y = [], [], [], [], []
    n_views = 0
    for k in range(defect_views):
        s = SAMPLE_SKUS[k % len(SAMPLE_SKUS)]
        r = np.random.default_rng([k, 5151])
        item = render_item(r, s.look, (), eval_style(False), "front")
        if k % 2 == 0:
            img, gt = paint_missing_part(r, item.image, item.product_mask)
        else:
            img, gt = paint_unseen_damage(r, item.image, item.product_mask)
        if not gt.any():
            continue
        q = cmp.prepare(img)
        if q is None:
            continue
        t = time.perf_counter()
        res = cmp.difference_for(q, s.sku)
        diff_ms.append((time.perf_counter() - t) * 1000)
        heat = res.heatmap if res is not None else np.zeros(gt.shape, np.float32)
        region = cv2.dilate(((item.product_mask > 0) | (gt > 0)).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        step = 4  # every 4th pixel in each direction: exact enough, 16x less sorting
        all_s.append(heat[::step, ::step].ravel())
        all_y.append((gt[::step, ::step] > 0).ravel())
        prod_s.append(heat[::step, ::step][region[::step, ::step]])
        prod_y.append((gt[::step, ::step] > 0)[region[::step, ::step]])
        n_views += 1
    keep = np.unique(np.r_[0, np.linspace(0, len(fpr) - 1, 40).astype(int)])
    return {
        "identity": {
            "positives": int(labels.sum()), "negatives": int((~labels).sum()), "max_fpr": max_fpr,
            "tpr_at_fpr_0.02": round(best_tpr, 4), "threshold_for_that": round(best_thr, 4),
            "auroc": round(auroc(scores, labels), 4), "threshold": cmp.identity_threshold,
            "at_threshold": {"tpr": round(float(at[labels].mean()), 4), "fpr": round(float(at[~labels].mean()), 4)},
            "false_accept_by_kind": {k: round(float(np.mean(v)), 4) for k, v in by_kind.items()},
            "roc": [[round(float(fpr[i]), 4), round(float(tpr[i]), 4), None if not np.isfinite(thr[i]) else
                     round(float(thr[i]), 4)] for i in keep],
        },
        "difference": {
            "views": n_views,
            "pixel_auroc": round(auroc(np.concatenate(all_s), np.concatenate(all_y)), 4) if n_views else None,
            "pixel_auroc_product": round(auroc(np.concatenate(prod_s), np.concatenate(prod_y)), 4) if n_views else None,
        },
        "timings_ms": {
            "prepare_per_view": round(float(np.median(prep_ms)), 2),
            "identity_per_view": round(float(np.median(ident_ms)), 2) if ident_ms else None,
            "difference_per_view": round(float(np.median(diff_ms)), 2) if diff_ms else None,
            "decision_per_item_3_views": round(3 * float(np.median(prep_ms)) + 3 * float(np.median(ident_ms or [0]))
                                               + 3 * float(np.median(diff_ms or [0])), 2),
            "reference_features_first_load": round(warm_ms, 1),
        },
        "catalogue_skus": len(cat.items),
    }


def false_missing_parts(catalogue_root: Path, seeds: range | tuple[int, ...] = range(4), camera_seed: int = 7,
                        size: tuple[int, int] = (640, 480)) -> dict:
    """Genuine, undamaged items of the sample catalogue through the station's synthetic camera (views front,
    side, top), compared with reference differences on: how many items get a false ``missing_part``.
    Seeds 0-3 are the set the difference filters were tuned on; use others (e.g. range(4, 12)) as held out."""
    from vision.camera import StagedItem, SyntheticCamera
    from vision.compare import CatalogueComparer

    cat = build_catalogue(catalogue_root, SAMPLE_SKUS)
    cmp = CatalogueComparer(cat, difference=True)
    cam = SyntheticCamera(size[0], size[1], camera_seed)
    flagged = []
    for s in SAMPLE_SKUS:
        for seed in seeds:
            cam.stage(StagedItem(s.sku, {}, seed))
            res = cmp.compare(cat.get(s.sku), [cam.capture(v) for v in SAMPLE_VIEWS])
            found = [f for f in res.findings if f.kind == "missing_part"]
            if found:
                flagged.append({"sku": s.sku, "seed": seed, "views": sorted({f.view for f in found}),
                                "area_shares": [round(float(f.value), 4) for f in found]})
    return {"items": len(SAMPLE_SKUS) * len(seeds), "false_missing_part": len(flagged), "flagged": flagged}


def bench_identity_scale(sizes: tuple[int, ...] = (100, 10_000), views_per_sku: int = 3, queries: int = 30,
                seed: int = 5) -> list[dict]:
    """Identity time per returned view against catalogues of ``sizes`` SKUs, side by side.

    The first 100 SKUs are rendered products with real embeddings and real local features in an on-disk
    LocalFeatureStore (as `station catalogue import` leaves them); the rest of each index is filled with random
    unit vectors whose views point at those products' stored features, so retrieval searches the full matrix
    and verification loads and matches real local features: what is timed is the cost at that size, not
    accuracy. Identity is timed from the product mask on (the comparer segments each view once, for every
    check); segmentation is reported beside it."""
    import hashlib
    import tempfile
    import time

    from vision.compare import segment_item
    from vision.embedding import crop_to_mask, default_backbone
    from vision.identity import IdentityIndex, LocalFeatureStore, local_features

    def product_mask(img):
        return segment_item(img)[0]

    rng = np.random.default_rng(seed)
    looks = [s.look for s in evaluation_skus()]
    base_embs, base_hashes = [], []
    backbone = default_backbone()
    n_base = min(100, min(sizes))
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalFeatureStore(Path(tmp))
        for k in range(n_base):
            views = render_views(looks[k % len(looks)], 100 + k, partial_share=0.0)[:views_per_sku]
            for img in views:
                crop = crop_to_mask(img, product_mask(img))
                base_embs.append(backbone.embed(crop))
                h = hashlib.sha256(np.ascontiguousarray(crop).tobytes()).hexdigest()
                store.save(h, local_features(crop))
                base_hashes.append(h)
        query_imgs = [render_views(looks[k % len(looks)], 7000 + k, partial_share=0.0)[0] for k in range(queries)]
        seg_times, masks = [], []
        for img in query_imgs:
            t = time.perf_counter()
            masks.append(product_mask(img))
            seg_times.append((time.perf_counter() - t) * 1000)
        for size in sizes:
            index = IdentityIndex(backbone, local_store=store)
            for i in range(size * views_per_sku):
                sku = f"SKU{i // views_per_sku:06d}"
                if i < len(base_embs):
                    emb = base_embs[i]
                else:
                    emb = rng.standard_normal(1280).astype(np.float32)
                    emb /= np.linalg.norm(emb)
                index.add_embedding(sku, str(i), emb, image_hash=base_hashes[i % len(base_hashes)])
            index.matrix  # noqa: B018 - stack before timing
            times, stages = [], {"embed": [], "search": [], "query_local": [], "verify": []}
            for k, (img, mask) in enumerate(zip(query_imgs, masks)):
                claimed = f"SKU{k % n_base:06d}"
                t0 = time.perf_counter()
                crop = crop_to_mask(img, mask)
                emb = backbone.embed(crop)
                t1 = time.perf_counter()
                q = index.search(emb, crop)
                t2 = time.perf_counter()
                ql = local_features(crop)
                t3 = time.perf_counter()
                index.judge(q, img, claimed, query_local=ql)
                t4 = time.perf_counter()
                times.append((t4 - t0) * 1000)
                for name, a, b in (("embed", t0, t1), ("search", t1, t2), ("query_local", t2, t3),
                                   ("verify", t3, t4)):
                    stages[name].append((b - a) * 1000)
            out.append({"skus": size, "views": size * views_per_sku, "p50_ms": round(float(np.median(times)), 1),
                        "p95_ms": round(float(np.percentile(times, 95)), 1),
                        "stages_p50_ms": {k: round(float(np.median(v)), 1) for k, v in stages.items()},
                        "segmentation_p50_ms": round(float(np.median(seg_times)), 1),
                        "index_mb": round(index.matrix.nbytes / 2**20, 1)})
    return out


def unseen_damage_synthetic(catalogue_root: Path, learn: int = 3, genuine: int = 6,
                            defects: tuple[str, ...] = ("crack", "dent", "stain", "tear", "scratch", "wear"),
                            camera_seed: int = 7, size: tuple[int, int] = (640, 480)) -> dict:
    """The station's unseen-damage check (vision.unseen) on generated items of the sample catalogue: each SKU's
    memory is its three catalogue views plus ``learn`` accepted genuine items (seeds 100+); then ``genuine``
    fresh genuine items (seeds 200+, never learnt) count false ``damage`` findings, and one item per defect
    kind, painted on the front view (seeds 300+), counts the defects found there. Generated images only: the
    real-photo figures come from vision.real_anomaly."""
    from vision.camera import StagedItem, SyntheticCamera
    from vision.compare import CatalogueComparer
    from vision.unseen import UnseenDamage

    cat = build_catalogue(catalogue_root, SAMPLE_SKUS)
    unseen = UnseenDamage(cat)
    cmp = CatalogueComparer(cat, difference=False, unseen=unseen)
    cam = SyntheticCamera(size[0], size[1], camera_seed)

    def compare(sku, found, seed):
        cam.stage(StagedItem(sku, found, seed))
        return cmp.compare(cat.get(sku), [cam.capture(v) for v in SAMPLE_VIEWS])

    false, caught, per_kind, times, sources = [], 0, {d: 0 for d in defects}, [], {}
    for s in SAMPLE_SKUS:
        for seed in range(100, 100 + learn):
            cmp.learn_good(s.sku, compare(s.sku, {}, seed), f"seed-{seed}")
        sources[s.sku] = unseen.calibration(s.sku).source
        for seed in range(200, 200 + genuine):
            t = time.perf_counter()
            res = compare(s.sku, {}, seed)
            times.append((time.perf_counter() - t) * 1000)
            views = sorted({f.view for f in res.findings if f.kind == "damage"})
            if views:
                false.append({"sku": s.sku, "seed": seed, "views": views})
        for seed, kind in enumerate(defects, start=300):
            res = compare(s.sku, {"front": (kind,)}, seed)
            if any(f.kind == "damage" and f.view == "front" for f in res.findings):
                caught += 1
                per_kind[kind] += 1
    n_genuine, n_defects = len(SAMPLE_SKUS) * genuine, len(SAMPLE_SKUS) * len(defects)
    return {"skus": len(SAMPLE_SKUS), "learnt_items_per_sku": learn, "calibration": sources,
            "genuine_items": n_genuine, "false_damage_items": len(false), "false_damage_rate": round(len(false) / n_genuine, 4),
            "defect_items": n_defects, "defects_found": caught, "found_rate": round(caught / n_defects, 4),
            "found_per_kind": per_kind, "false": false,
            "compare_ms_p50": round(float(np.median(times)), 1)}
