"""Identity as retrieval plus verification (vision.identity) on the shipped pretrained backbone."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vision.compare import segment_item
from vision.embedding import Backbone, BackboneError, crop_to_mask, default_backbone, to_input
from vision.evaluate import build_evaluation_catalogue, evaluation_skus, render_views
from vision.identity import IdentityIndex, local_features, verify_pair
from vision.real_identity import auroc, tpr_at_fpr


@pytest.fixture(scope="module")
def eval_cat(tmp_path_factory):
    return build_evaluation_catalogue(tmp_path_factory.mktemp("idcat"))


@pytest.fixture(scope="module")
def index(eval_cat):
    idx = IdentityIndex()
    for sku, item in eval_cat.items.items():
        for i in range(len(item.reference_images)):
            img = cv2.imread(str(eval_cat.image_path(item, i)))
            mask, _, _ = segment_item(img)
            idx.add(sku, f"{sku}/{i}", img, mask)
    return idx


def test_embedding_is_unit_length_and_deterministic():
    img = np.random.default_rng(0).integers(0, 255, (300, 200, 3), np.uint8)
    b = default_backbone()
    e1, e2 = b.embed(img), b.embed(img.copy())
    assert e1.shape == (1280,) and abs(float(np.linalg.norm(e1)) - 1.0) < 1e-4
    assert float(e1 @ e2) > 0.9999
    assert float(e1 @ b.embed(np.full_like(img, 30))) < 0.95  # a different picture is a different vector


def test_input_keeps_aspect_and_mask_crops():
    wide = np.zeros((100, 400, 3), np.uint8)
    x = to_input(wide)
    assert x.shape == (3, 224, 224)
    assert np.allclose(x[:, 0, 0], (127 - 127) / 128)  # grey padding above the wide image
    mask = np.zeros((100, 400), np.uint8)
    mask[40:60, 100:200] = 255
    assert crop_to_mask(wide, mask).shape[:2] == (22, 110)  # the box padded by 5 % of its size
    assert crop_to_mask(wide, np.zeros_like(mask)).shape == wide.shape


def test_patch_features_shape():
    feats = default_backbone().patch_features(np.full((224, 224, 3), 90, np.uint8))
    assert feats.shape == (28, 28, 152) and np.isfinite(feats).all()


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(BackboneError, match="not found"):
        Backbone(tmp_path / "none.onnx").embed(np.zeros((32, 32, 3), np.uint8))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(BackboneError, match="unreadable"):
        Backbone(bad).embed(np.zeros((32, 32, 3), np.uint8))


def test_genuine_claim_scores_above_a_swap(index):
    looks = {s.sku: s.look for s in evaluation_skus()}
    img = render_views(looks["HH-KETTLE-1L"], 31, partial_share=0.0)[0]
    mask, _, _ = segment_item(img)
    q = index.query(img, mask)
    genuine = index.judge(q, img, "HH-KETTLE-1L")
    swap = index.judge(q, img, "GAD-EARBUD-X2")
    assert genuine.score > swap.score
    assert "HH-KETTLE-1L" not in genuine.shortlist and genuine.best_other_sku in genuine.shortlist
    assert swap.retrieval_margin < 0 < genuine.retrieval_margin
    assert set(genuine.to_json()) >= {"score", "retrieval_margin", "claimed_inliers", "best_other_sku"}


def test_unknown_claim_has_no_support(index):
    img = np.full((200, 200, 3), 128, np.uint8)
    q = index.query(img)
    j = index.judge(q, img, "NOT-IN-CATALOGUE")
    assert j.claimed_similarity == 0.0 and j.score < 0.9


def test_verification_counts_a_real_homography_and_refuses_noise():
    rng = np.random.default_rng(3)
    base = cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), np.uint8), (3, 3), 0)
    H = np.array([[0.95, 0.05, 8], [-0.04, 0.97, 5], [0, 0, 1]], np.float64)
    moved = cv2.warpPerspective(base, H, (320, 240), borderMode=cv2.BORDER_REFLECT)
    assert verify_pair(local_features(base), local_features(moved)) >= 20
    other = cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), np.uint8), (3, 3), 0)
    assert verify_pair(local_features(base), local_features(other)) == 0


def test_roc_helpers():
    assert auroc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0
    assert auroc(np.array([0.5]), np.array([0.5])) == 0.5
    tpr, thr = tpr_at_fpr(np.array([0.9, 0.8, 0.3]), np.array([0.1, 0.2, 0.85]), 0.02)
    assert tpr == pytest.approx(1 / 3) and thr == 0.9


def test_stored_local_features_read_back_as_computed_and_damage_is_not_trusted(tmp_path):
    from vision.identity import LocalFeatureStore

    from pathlib import Path

    photo = sorted((Path(__file__).parent / "data" / "real" / "label_recognition").glob("*.jpeg"))[0]
    lf = local_features(cv2.imread(str(photo)))  # a real product photo (Apache-2.0, SOURCE.md beside it)
    assert len(lf.descriptors) > 50
    store = LocalFeatureStore(tmp_path / "local")
    store.save("ab" * 32, lf)
    back = store.load("ab" * 32)
    assert np.array_equal(back.descriptors, lf.descriptors) and np.allclose(back.points, lf.points)
    assert verify_pair(lf, back) == verify_pair(lf, lf) > 0
    whole = store.path("ab" * 32).read_bytes()
    store.path("ab" * 32).write_bytes(whole[: len(whole) // 2])  # cut short: a zip without its directory
    assert store.load("ab" * 32) is None
    store.path("ab" * 32).write_bytes(b"not an npz")
    assert store.load("ab" * 32) is None and store.load("cd" * 32) is None
    (tmp_path / "blocked").write_text("a file where the store's folder should be")
    LocalFeatureStore(tmp_path / "blocked").save("ef" * 32, lf)  # a cache that cannot be written is no error


def test_shortlist_is_the_nearest_other_skus_even_behind_many_views_of_one():
    from vision.identity import top_rows

    values = np.random.default_rng(1).standard_normal(5000).astype(np.float32)
    assert np.array_equal(top_rows(values, 7), np.argsort(-values)[:7])
    idx = IdentityIndex(backbone=None)
    rng = np.random.default_rng(2)
    for v in range(60):  # one SKU whose 60 views are all nearer than anything else
        idx.add_embedding("MANY", str(v), np.full(1280, 1.0, np.float32))
    for s in range(30):
        idx.add_embedding(f"S{s:02d}", "0", rng.uniform(0, 0.5, 1280).astype(np.float32))
    sims = idx.matrix @ np.full(1280, 0.5, np.float32)
    got = idx.shortlist(sims, exclude="S00", n=4)
    by_best = sorted({s: max(sims[r] for r in idx.rows(s)) for s in idx.skus if s != "S00"}.items(),
                     key=lambda kv: -kv[1])
    assert [s for s, _ in got] == [s for s, _ in by_best[:4]] and got[0][0] == "MANY"
    assert [s for s, _ in idx.shortlist(sims, exclude="MANY", n=40)] == [s for s, _ in sorted(
        ((s, sims[idx.rows(s)[0]]) for s in idx.skus if s != "MANY"), key=lambda kv: -kv[1])]


def test_catalogue_index_stores_every_views_local_features_once(tmp_path, monkeypatch):
    import vision.identity as identity

    cat = build_evaluation_catalogue(tmp_path / "cat")
    views = sum(len(i.reference_images) for i in cat.items.values())
    calls = []
    real = identity.local_features
    monkeypatch.setattr(identity, "local_features", lambda crop: calls.append(1) or real(crop))
    first, _ = identity.build_catalogue_index(cat, segment=lambda img: segment_item(img)[0])
    assert len(calls) == views
    store = identity.local_store_of(cat.root)
    assert all(store.has(h) for h in first.view_hash)
    again, embedded = identity.build_catalogue_index(cat, segment=lambda img: segment_item(img)[0])
    assert (len(calls), embedded) == (views, 0)  # nothing computed a second time
    # Verification reads them from the store: no crops in memory, no loader, and still verified matches.
    sku = next(iter(cat.items))
    img = cv2.imread(str(cat.image_path(cat.get(sku), 0)))
    q = again.query(img, segment_item(img)[0])
    judged = again.judge(q, img, sku)
    assert judged.claimed_inliers > 0 and len(calls) == views + 1  # only the returned view's own


def test_a_torn_reference_feature_file_is_recomputed_not_raised(tmp_path):
    from pathlib import Path

    from vision.features import CACHE_DIR, FeatureCache, file_hash

    photo = sorted((Path(__file__).parent / "data" / "real" / "label_recognition").glob("*.jpeg"))[0]
    (tmp_path / CACHE_DIR).mkdir()
    whole = tmp_path / "whole.npz"
    np.savez(whole, version=np.int64(1), pad=np.zeros(5000))
    torn = tmp_path / CACHE_DIR / f"{file_hash(photo)[:32]}.npz"
    torn.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # a zip without its directory
    computed = []
    cache = FeatureCache(tmp_path)
    assert cache.get(photo, lambda _p: computed.append(1)) is None  # recomputed (to nothing), not raised
    assert computed == [1] and cache.misses == 1
