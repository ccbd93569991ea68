"""missing_part from the memory of good appearance (issue 18, item 2): where the catalogue outline has product,
this view shows bench, and the memory finds the appearance around it unusual. Both cues are needed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from station.domain import Frame
from vision.unseen import RegionKind, lost_outline

BENCH = 200


def _bench_scene(mask: np.ndarray, colour=(60, 110, 170)) -> np.ndarray:
    img = np.full(mask.shape + (3,), BENCH, np.uint8)
    img[mask > 0] = colour
    return img


def _box_mask(h=300, w=300) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.rectangle(m, (70, 60), (230, 250), 255, -1)
    return m


def test_lost_outline_finds_a_removed_chunk_where_the_bench_shows():
    ref = _box_mask()
    q = ref.copy()
    cv2.circle(q, (230, 60), 45, 0, -1)  # a corner gone
    lost = lost_outline(_bench_scene(q), q, [ref])
    assert len(lost) == 1
    blob, share = lost[0]
    gone = (ref > 0) & (q == 0)
    assert (blob & gone).sum() > 0.5 * blob.sum() and 0.02 < share < 0.06
    assert lost_outline(_bench_scene(ref), ref, [ref]) == []


def test_a_part_the_segmentation_dropped_is_not_lost():
    """The outline lacks the corner, but the image shows product there (not bench): present, not missing."""
    ref = _box_mask()
    q = ref.copy()
    cv2.circle(q, (230, 60), 45, 0, -1)
    assert lost_outline(_bench_scene(ref), q, [ref]) == []


def test_a_thin_sliver_is_not_lost():
    ref = _box_mask()
    q = ref.copy()
    q[:, 224:] = 0  # 7 px off one side: what alignment leaves, not a part
    assert lost_outline(_bench_scene(q), q, [ref]) == []


# ----------------------------------------------------------------------------- against a SKU's memory

SKU = "GAD-SPEAKER-M"
STYLE = dict(size=(640, 480), bench_grey=200, perspective=0.03, lighting_jitter=0.5, blur_max=0.6, noise_max=3.0,
             jpeg_min=85)  # the synthetic station camera's


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    from vision.catalogue import SAMPLE_SKUS, build_catalogue
    from vision.compare import CatalogueComparer
    from vision.unseen import UnseenDamage

    cat = build_catalogue(tmp_path_factory.mktemp("cat"), SAMPLE_SKUS)
    unseen = UnseenDamage(cat)
    cmp = CatalogueComparer(cat, difference=False, unseen=unseen, retrieval=False)
    for seed in range(100, 103):  # three accepted genuine returns: the SKU calibrates on its own memory
        cmp.learn_good(SKU, cmp.compare(cat.get(SKU), _frames(seed)), f"seed-{seed}")
    assert unseen.calibration(SKU).source == "sku"
    return cmp


def _frames(seed: int) -> list[Frame]:
    from vision.camera import StagedItem, SyntheticCamera
    from vision.catalogue import SAMPLE_VIEWS

    cam = SyntheticCamera(640, 480, 7)
    cam.stage(StagedItem(SKU, {}, seed))
    return [cam.capture(v) for v in SAMPLE_VIEWS]


def _front_with_missing_part(seed: int) -> tuple[list[Frame], np.ndarray]:
    """The station camera's shot of the front (same scene as SyntheticCamera's) with a chunk of the outline
    cut off (vision.evaluate.paint_missing_part: the bench shows through)."""
    from vision.catalogue import SAMPLE_VIEWS, sample_sku
    from vision.evaluate import paint_missing_part
    from vision.synth import SceneStyle, render_item

    frames = _frames(seed)
    vi = SAMPLE_VIEWS.index("front")
    item = render_item(np.random.default_rng([7, seed, vi]), sample_sku(SKU).look, (), SceneStyle(**STYLE), "front")
    img, gone = paint_missing_part(np.random.default_rng([seed, 77]), item.image, item.product_mask)
    frames[vi] = Frame(img, "front", "painted", 0.0)
    return frames, gone > 0


def test_a_removed_part_is_a_missing_part_on_the_removed_area(station):
    frames, gone = _front_with_missing_part(400)
    res = station.compare(station.catalogue.get(SKU), frames)
    found = [f for f in res.findings if f.kind == "missing_part"]
    assert [f.view for f in found] == ["front"], [f.to_json() for f in res.findings]
    x0, y0, x1, y1 = (int(v) for v in found[0].box_xyxy)
    assert gone[y0:y1 + 1, x0:x1 + 1].sum() > 0.5 * gone.sum()
    assert 0.01 < found[0].value < 0.2 and found[0].score >= 0.5
    assert not [f for f in res.findings if f.kind == "damage" and f.view == "front"]  # one finding, not two
    regions = next(a for a in res.details["anomaly"] if a["view"] == "front")["regions"]
    assert any(r["kind"] == "missing_part" for r in regions)


def test_genuine_items_raise_neither_damage_nor_missing_part(station):
    for seed in (200, 201):
        res = station.compare(station.catalogue.get(SKU), _frames(seed))
        flagged = [f.to_json() for f in res.findings if f.kind in ("damage", "missing_part")]
        assert flagged == []


def test_lost_outline_without_the_memorys_support_stays_silent(station):
    """The same removed chunk, but a memory that finds nothing unusual there: no missing_part."""
    frames, _ = _front_with_missing_part(400)
    q = station.prepare(next(f for f in frames if f.view == "front").image, "front")
    unseen = station.unseen
    assert lost_outline(q.image, q.mask, unseen.outlines(SKU))  # the outline cue is there
    calm = np.zeros((8, 8), np.float32)
    h, w = q.mask.shape
    kept = unseen._with_missing_parts(SKU, q.image, q.mask, calm, (0, 0, w, h), 1.0, [])
    assert kept == []
    loud = np.ones((8, 8), np.float32)
    assert [r.kind for r in unseen._with_missing_parts(SKU, q.image, q.mask, loud, (0, 0, w, h), 1.0, [])] == \
        [RegionKind.MISSING_PART]
