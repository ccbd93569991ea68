import cv2
import numpy as np

from vision.anomaly import MemoryBank


def _patches(bgr):
    # Cheap deterministic stand-in for the backbone: 8x8 cell means of each channel.
    return cv2.resize(bgr.astype(np.float32) / 255.0, (bgr.shape[1] // 8, bgr.shape[0] // 8),
                      interpolation=cv2.INTER_AREA)


def test_patchcore_flags_scratch_and_passes_good():
    rng = np.random.default_rng(0)
    base = np.full((96, 96, 3), 120, np.uint8)
    goods = [np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8) for _ in range(4)]
    bank = MemoryBank(_patches)
    for g in goods:
        bank.add_good(g)
    thr = bank.threshold(goods)
    ok = np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)
    assert not bank.score(ok, thr).anomalous
    bad = ok.copy()
    cv2.rectangle(bad, (40, 40), (60, 60), (255, 255, 255), -1)
    res = bank.score(bad, thr)
    assert res.anomalous and res.boxes
    x, y, w, h = max(res.boxes, key=lambda b: b[2] * b[3])
    assert x < 60 and x + w > 40 and y < 60 and y + h > 40
