"""Empty-bench background plates (calibration/background.py) on real photos: real packaging (committed
Label-Recognition photos, Apache-2.0) composited onto a busy printed bench (another of those photos, hue
turned and darker: a printed surface with text, barcodes and logos up to every edge), where the border
method has no plain bench to find and the plate finds the product."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from calibration.background import (BackgroundPlates, PlateError, load_background, load_plates, plate_from_frames,
                                    save_plates, segment_with_plate)
from vision.compare import outline_failure, segment_item

REAL = Path(__file__).parent / "data" / "real" / "label_recognition"
SOURCE_QUAD = np.float32([[170, 20], [600, 20], [600, 500], [170, 500]])  # a label panel of the product photo
PLACEMENTS = ([[380, 90], [700, 130], [660, 520], [340, 480]], [[200, 150], [500, 120], [540, 480], [230, 520]],
              [[450, 60], [780, 80], [770, 420], [440, 400]])


def _jpeg(img: np.ndarray, quality: int = 90) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)


def printed_bench() -> np.ndarray:
    """A real photo as a printed bench: turned upside down, hue shifted, a little darker."""
    hsv = cv2.cvtColor(cv2.flip(cv2.imread(str(REAL / "tests__dataset__image14.jpeg")), -1), cv2.COLOR_BGR2HSV)
    hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + 60) % 180).astype(np.uint8)
    hsv[..., 2] = (hsv[..., 2] * 0.75).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def shot(rng: np.random.Generator, bench: np.ndarray, product: np.ndarray | None = None,
         quad=None, gain: float = 1.0) -> np.ndarray:
    """One camera frame: the bench (with the product and its soft cast shadow), lamp flicker, sensor noise, JPEG."""
    f = bench.astype(np.float32)
    if product is not None:
        poly = np.int32(quad)
        inside = np.zeros(bench.shape[:2], np.uint8)
        cv2.fillPoly(inside, [poly], 255)
        shadow = np.zeros_like(inside)
        cv2.fillPoly(shadow, [poly + np.int32([14, 10])], 255)
        f *= (1 - 0.3 * cv2.GaussianBlur(shadow, (21, 21), 0).astype(np.float32) / 255)[..., None]
        f[inside > 0] = product[inside > 0]
    f = f * gain * rng.uniform(0.985, 1.015) + rng.normal(0, 2.0, f.shape)
    return _jpeg(np.clip(f, 0, 255).astype(np.uint8))


def placed(photo: str, quad, size) -> tuple[np.ndarray, np.ndarray]:
    """The product photo's label panel warped onto ``quad`` of a frame of ``size``, and its true mask."""
    src = cv2.imread(str(REAL / photo))
    warp = cv2.warpPerspective(src, cv2.getPerspectiveTransform(SOURCE_QUAD, np.float32(quad)), size)
    truth = np.zeros((size[1], size[0]), np.uint8)
    cv2.fillPoly(truth, [np.int32(quad)], 255)
    return warp, truth


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="module")
def bench_and_plate():
    rng = np.random.default_rng(0)
    bench = printed_bench()
    return bench, plate_from_frames([shot(rng, bench) for _ in range(7)], "front")


@pytest.mark.parametrize("photo", ["tests__dataset__image108.jpeg", "tests__dataset__image15.jpeg"])
@pytest.mark.parametrize("quad", PLACEMENTS)
def test_plate_finds_real_product_on_busy_bench_where_border_fails(bench_and_plate, photo, quad):
    bench, plate = bench_and_plate
    rng = np.random.default_rng(1)
    size = (bench.shape[1], bench.shape[0])
    product, truth = placed(photo, quad, size)
    frame = shot(rng, bench, product, quad)
    seg = segment_with_plate(frame, plate)
    assert seg.reason is None and outline_failure(seg.mask) is None
    assert iou(seg.mask, truth) >= 0.9
    border, _, _ = segment_item(frame)
    # The border method takes the busy print for the product: no outline at all, or a wrong one.
    assert outline_failure(border) is not None or iou(border, truth) < 0.5


def test_plate_falls_back_on_size_lighting_and_moved_camera(bench_and_plate):
    bench, plate = bench_and_plate
    rng = np.random.default_rng(2)
    size = (bench.shape[1], bench.shape[0])
    product, _ = placed("tests__dataset__image108.jpeg", PLACEMENTS[0], size)
    smaller = cv2.resize(shot(rng, bench, product, PLACEMENTS[0]), (640, 480))
    assert "640x480" in segment_with_plate(smaller, plate).reason
    dim = shot(rng, bench, product, PLACEMENTS[0], gain=0.7)
    assert "lighting drifted" in segment_with_plate(dim, plate).reason
    moved = np.roll(shot(rng, bench, product, PLACEMENTS[0]), 40, axis=1)  # the camera turned on its mount
    assert segment_with_plate(moved, plate).mask is None
    # A small drift of the lamp is taken out, not a reason to give up.
    slight = shot(rng, bench, product, PLACEMENTS[0], gain=1.06)
    assert segment_with_plate(slight, plate).mask is not None


def test_plate_refused_when_something_moved_during_capture():
    rng = np.random.default_rng(3)
    bench = printed_bench()
    frames = [shot(rng, bench) for _ in range(5)]
    frames[2] = frames[2].copy()
    cv2.rectangle(frames[2], (300, 200), (500, 400), (20, 200, 240), -1)  # a hand in one frame
    with pytest.raises(PlateError, match="changed while"):
        plate_from_frames(frames, "front")
    with pytest.raises(PlateError, match="at least 3"):
        plate_from_frames(frames[:2], "front")


def test_plates_stored_checked_and_altered_ones_refused(tmp_path, bench_and_plate):
    _, plate = bench_and_plate
    save_plates(tmp_path, "cam0", [plate])
    loaded = load_plates(tmp_path, "cam0")["front"]
    assert np.array_equal(loaded.median_bgr, plate.median_bgr)
    assert np.abs(loaded.spread - plate.spread).max() <= 0.006
    spread_png = tmp_path / "calibration" / "background_cam0_front_spread.png"
    spread_png.write_bytes(spread_png.read_bytes() + b"x")
    plates, why = load_background(tmp_path, "cam0")
    assert plates is None and "altered" in why
    assert load_background(tmp_path, "cam1") == (None, None)


def test_view_without_its_own_plate_uses_the_matching_one(bench_and_plate):
    bench, plate = bench_and_plate
    rng = np.random.default_rng(4)
    size = (bench.shape[1], bench.shape[0])
    product, truth = placed("tests__dataset__image15.jpeg", PLACEMENTS[1], size)
    frame = shot(rng, bench, product, PLACEMENTS[1])
    seg = BackgroundPlates({"front": plate}).segment(frame, "cli")
    assert seg.view == "front" and iou(seg.mask, truth) >= 0.9
    assert "no background plate" in BackgroundPlates({"front": plate}).segment(frame[:400], "cli").reason


def test_cli_calibrate_background_then_compare_uses_the_plate(tmp_path):
    from station.cli import app

    rng = np.random.default_rng(5)
    bench = printed_bench()
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(5):
        cv2.imwrite(str(frames / f"empty_{i:02d}.png"), shot(rng, bench))
    cfg = tmp_path / "station.toml"
    cfg.write_text(f'[station]\ndata_dir = "{tmp_path / "data"}"\nviews = ["front"]\n\n'
                   f'[camera]\ntype = "folder"\npath = "{frames}"\npattern = "*.png"\nloop = false\n', encoding="utf-8")
    r = CliRunner().invoke(app, ["calibrate", "background", "--json", "--frames", "5", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["views"][0]["view"] == "front" and out["views"][0]["frames"] == 5
    assert Path(out["saved_to"]).is_file()
    # More frames than the folder holds: bad input, said in one line, and the stored plate is kept.
    r = CliRunner().invoke(app, ["calibrate", "background", "--frames", "6", "--config", str(cfg)])
    assert r.exit_code == 2 and "exhausted" in r.output and "Traceback" not in r.output
    assert load_plates(tmp_path / "data", "cam0")["front"].frames == 5

    size = (bench.shape[1], bench.shape[0])
    product, _ = placed("tests__dataset__image108.jpeg", PLACEMENTS[0], size)
    item = tmp_path / "item.png"
    cv2.imwrite(str(item), shot(rng, bench, product, PLACEMENTS[0]))
    r = CliRunner().invoke(app, ["compare", "--json", "--sku", "APP-TEE-M", "--view", "front", "--config", str(cfg),
                                 str(item)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["segmentation"] == {"method": "plate"}
    dim = tmp_path / "dim.png"
    cv2.imwrite(str(dim), shot(rng, bench, product, PLACEMENTS[0], gain=0.6))
    r = CliRunner().invoke(app, ["compare", "--json", "--sku", "APP-TEE-M", "--config", str(cfg), str(dim)])
    assert r.exit_code == 0, r.output
    seg = json.loads(r.stdout)["segmentation"]
    assert seg["method"] == "border" and "lighting drifted" in seg["plate_unused"]


def test_cli_calibrate_background_refuses_synthetic_camera(tmp_path):
    from station.cli import app

    r = CliRunner().invoke(app, ["calibrate", "background", "--data-dir", str(tmp_path)])
    assert r.exit_code == 2 and "synthetic camera" in r.output and "Traceback" not in r.output
