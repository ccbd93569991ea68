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
