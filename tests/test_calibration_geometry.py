"""Camera intrinsics, bench scale and item size on scenes rendered through a known synthetic camera."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from calibration.intrinsics import CalibrationError, Intrinsics, calibrate_intrinsics, find_corners
from calibration.scale import scale_from_aruco, scale_from_checkerboard
from calibration.scenes import (
    SyntheticCamera,
    bench_with_markers,
    camera_rays,
    checkerboard_texture,
    look_at,
    place_on_bench,
    render_plane,
)
from station.domain import Frame
from vision.catalogue import REFERENCE_MM_PER_PX, REFERENCE_SIZE, SAMPLE_SKUS, sample_sku
from vision.compare import outline_size_mm, segment_item, size_error
from vision.synth import SceneStyle, render_item

BOARD, SQUARE = (9, 6), 25.0
# Tilt about x, tilt about y, roll (degrees) of each calibration view; the board is 520 mm away.
POSES = [(0, 0, 0), (25, 0, 5), (-25, 0, -5), (0, 25, 10), (0, -25, -10), (20, 20, 30), (-20, 15, -25), (15, -20, 80)]


def radial(k: np.ndarray, r: float) -> float:
    return 1 + k[0] * r ** 2 + k[1] * r ** 4 + k[4] * r ** 6


@pytest.fixture(scope="module")
def board_views():
    cam = SyntheticCamera.typical((640, 480), f=620.0, k1=-0.22, k2=0.06)
    tex, corners_mm = checkerboard_texture(BOARD, int(SQUARE))
    rays = camera_rays(cam)
    centre = tex.image.shape[1] / 2, tex.image.shape[0] / 2
    views = []
    for i, (tx, ty, rz) in enumerate(POSES):
        r, t = look_at((centre[0] + 10 * i - 30, centre[1]), 520, tx, ty, rz)
        img = render_plane(tex, cam, r, t, noise=1.5, rng=np.random.default_rng(i), rays=rays)
        views.append((f"view{i}.png", img, r, t))
    return cam, corners_mm, views


def test_rendered_board_corners_are_where_project_points_puts_them(board_views):
    cam, corners_mm, views = board_views
    name, img, r, t = views[5]
    obj = np.concatenate([corners_mm, np.zeros((len(corners_mm), 1))], 1)
    expected, _ = cv2.projectPoints(obj, r, t, cam.camera_matrix, cam.dist_coeffs)
    found = find_corners(img, BOARD).reshape(-1, 2)
    expected = expected.reshape(-1, 2)
    if np.linalg.norm(found[0] - expected[0]) > np.linalg.norm(found[0] - expected[-1]):
        found = found[::-1]  # the detector may start from the opposite corner
    assert np.abs(found - expected).max() < 0.25


def test_intrinsics_recovered_within_one_percent(board_views):
    cam, _, views = board_views
    res = calibrate_intrinsics([(n, img) for n, img, _, _ in views], BOARD, SQUARE)
    K, Kt = res.intrinsics.camera_matrix, cam.camera_matrix
    for (i, j) in ((0, 0), (1, 1), (0, 2), (1, 2)):
        assert abs(K[i, j] - Kt[i, j]) / Kt[i, j] < 0.01, (i, j, K[i, j], Kt[i, j])
    d = res.intrinsics.dist_coeffs
    assert d[0] < -0.1  # barrel distortion, as rendered
    # k1..k3 trade off against each other; the radial factor itself is what must come back.
    for r in (0.3, 0.5):
        assert abs(radial(d, r) - radial(cam.dist_coeffs, r)) < 0.01
    assert res.rms_px < 0.2 and all(e is not None and e < 0.3 for _, e in res.per_image)


def test_intrinsics_needs_boards(board_views):
    blank = np.full((480, 640, 3), 200, np.uint8)
    with pytest.raises(CalibrationError, match="found in 1 of 3"):
        calibrate_intrinsics([("a", blank), ("b", blank), ("c", board_views[2][0][1])], BOARD, SQUARE)


def test_cli_intrinsics_saves_profile_and_fails_cleanly(board_views, tmp_path):
    from station.cli import app

    paths = []
    for name, img, _, _ in board_views[2][:5]:
        cv2.imwrite(str(tmp_path / name), img)
        paths.append(str(tmp_path / name))
    data = tmp_path / "data"
    r = CliRunner().invoke(app, ["calibrate", "intrinsics", "--json", "--board", "9x6", "--square-mm", "25",
                                 "--save", "--camera-id", "benchcam", "--data-dir", str(data), *paths])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert abs(out["fx"] - 620) < 6.2 and out["views_used"] == 5 and len(out["per_image"]) == 5
    saved = json.loads((data / "calibration" / "intrinsics_benchcam.json").read_text())
    assert saved["camera_id"] == "benchcam" and saved["created_at"] and saved["data"]["camera_matrix"]
    plain = CliRunner().invoke(app, ["calibrate", "intrinsics", "--board", "9x6", "--square-mm", "25",
                                     "--save", "--camera-id", "benchcam", "--data-dir", str(data), *paths])
    assert plain.exit_code == 0 and f"saved to {data / 'calibration' / 'intrinsics_benchcam.json'}" in plain.stdout
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((480, 640, 3), 200, np.uint8))
    r = CliRunner().invoke(app, ["calibrate", "intrinsics", "--json", str(blank)])
    assert r.exit_code == 2 and "checkerboard was found in 0 of 1" in r.output
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    r = CliRunner().invoke(app, ["calibrate", "intrinsics", str(bad)])
    assert r.exit_code == 2 and "not a readable image" in r.output
    r = CliRunner().invoke(app, ["calibrate", "intrinsics", "--board", "nine", paths[0]])
    assert r.exit_code == 2 and "COLSxROWS" in r.output


# ------------------------------------------------------------------------------------------ scale and size

TEX_MM_PER_PX = 0.3  # the bench texture's resolution (finer than the camera's)
SCENE_MM_PER_PX = 0.5  # the camera's scale on the bench (distance / focal length)
MARKER_MM = 40.0


def product_patch(sku: str, enlarge: float = 1.0):
    """A sample SKU's clean catalogue view (REFERENCE_MM_PER_PX), resampled to the bench texture, and its
    true width and height in mm (as the catalogue measures them, times ``enlarge``)."""
    look = sample_sku(sku).look
    item = render_item(np.random.default_rng([look.print_seed, 0]), look, (), SceneStyle(size=REFERENCE_SIZE),
                       "front", clean_reference=True)
    x, y, w, h = cv2.boundingRect(item.product_mask)
    k = REFERENCE_MM_PER_PX / TEX_MM_PER_PX * enlarge
    crop = cv2.resize(item.image[y:y + h, x:x + w], None, fx=k, fy=k, interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(item.product_mask[y:y + h, x:x + w], (crop.shape[1], crop.shape[0]),
                      interpolation=cv2.INTER_NEAREST)
    return crop, mask, (w * REFERENCE_MM_PER_PX * enlarge, h * REFERENCE_MM_PER_PX * enlarge)


def bench_scene(cam: SyntheticCamera, rays, sku: str, enlarge: float = 1.0):
    """The product lying at (200, 200) mm with two 40 mm ArUco markers beside it, seen from straight above
    at SCENE_MM_PER_PX."""
    tex = bench_with_markers((520, 400), TEX_MM_PER_PX, [(0, 25, 45), (1, 335, 265)], MARKER_MM)
    crop, mask, true_mm = product_patch(sku, enlarge)
    place_on_bench(tex.image, crop, mask, int(200 / TEX_MM_PER_PX) - crop.shape[1] // 2,
                   int(200 / TEX_MM_PER_PX) - crop.shape[0] // 2)
    r, t = look_at((200, 180), SCENE_MM_PER_PX * cam.camera_matrix[0, 0])
    return render_plane(tex, cam, r, t, noise=1.0, rng=np.random.default_rng(3), rays=rays), true_mm


@pytest.fixture(scope="module")
def pinhole():
    cam = SyntheticCamera.typical((800, 600), k1=0.0, k2=0.0)
    return cam, camera_rays(cam)


@pytest.fixture(scope="module")
def barrel():
    cam = SyntheticCamera.typical((800, 600), k1=-0.22, k2=0.06)
    return cam, camera_rays(cam)


@pytest.mark.parametrize("sku", [s.sku for s in SAMPLE_SKUS])
def test_item_dimensions_within_one_percent(pinhole, sku):
    cam, rays = pinhole
    img, true_mm = bench_scene(cam, rays, sku)
    scale = scale_from_aruco(img, MARKER_MM, "4X4_50")
    assert abs(scale.mm_per_px - SCENE_MM_PER_PX) / SCENE_MM_PER_PX < 0.005
    assert [r["id"] for r in scale.references] == [0, 1]
    mask, _, _ = segment_item(img)
    assert size_error(outline_size_mm(mask, scale.mm_per_px), *true_mm) < 0.01


def test_scale_with_lens_distortion_uses_intrinsics(barrel):
    cam, rays = barrel
    img, _ = bench_scene(cam, rays, "HH-KETTLE-1L")
    intr = Intrinsics(cam.camera_matrix, cam.dist_coeffs, cam.size)
    raw = scale_from_aruco(img, MARKER_MM)
    fixed = scale_from_aruco(img, MARKER_MM, intrinsics=intr)
    assert fixed.undistorted and abs(fixed.mm_per_px - SCENE_MM_PER_PX) / SCENE_MM_PER_PX < 0.005
    # The markers lie in the corners, where barrel distortion shrinks them: uncorrected, the scale is off.
    assert abs(raw.mm_per_px - SCENE_MM_PER_PX) / SCENE_MM_PER_PX > 0.03


def test_scale_from_checkerboard(pinhole):
    cam, rays = pinhole
    tex, _ = checkerboard_texture(BOARD, int(SQUARE))
    r, t = look_at((tex.image.shape[1] / 2, tex.image.shape[0] / 2), 0.55 * cam.camera_matrix[0, 0])
    img = render_plane(tex, cam, r, t, rays=rays)
    res = scale_from_checkerboard(img, BOARD, SQUARE)
    assert res.method == "checkerboard" and abs(res.mm_per_px - 0.55) / 0.55 < 0.003
    with pytest.raises(CalibrationError, match="no 7x5 checkerboard"):
        scale_from_checkerboard(img, (7, 5), SQUARE)


def test_scale_profile_drives_size_mismatch_in_the_comparer(pinhole, tmp_path):
    """`station calibrate scale --save` -> make_comparer reads the profile -> size within 1 % for the real
    item, size_mismatch for one 12 % too large."""
    from station.app import load_catalogue, make_comparer
    from station.cli import app
    from station.config import StationConfig, StationSection

    cam, rays = pinhole
    data = tmp_path / "data"
    cfg = StationConfig(station=StationSection(data_dir=data))
    catalogue = load_catalogue(cfg)
    assert make_comparer(cfg, catalogue).mm_per_px is None  # no profile: no size check
    img, _ = bench_scene(cam, rays, "HH-KETTLE-1L")
    frame = tmp_path / "bench.png"
    cv2.imwrite(str(frame), img)
    r = CliRunner().invoke(app, ["calibrate", "scale", "--json", "--aruco-dict", "4X4_50", "--marker-mm", "40",
                                 "--save", "--data-dir", str(data), str(frame)])
    assert r.exit_code == 0, r.output
    assert abs(json.loads(r.stdout)["mm_per_px"] - SCENE_MM_PER_PX) < 0.0025
    cmp = make_comparer(cfg, catalogue)
    assert cmp.mm_per_px == pytest.approx(SCENE_MM_PER_PX, rel=0.005)
    item = catalogue.get("HH-KETTLE-1L")
    ok = cmp.compare(item, [Frame(img, "front", "test", 0.0)])
    assert ok.details["size_mm"]["relative_error"] < 0.01
    assert not [f for f in ok.findings if f.kind == "size_mismatch"]
    big, _ = bench_scene(cam, rays, "HH-KETTLE-1L", enlarge=1.12)
    res = cmp.compare(item, [Frame(big, "front", "test", 0.0)])
    mismatch = [f for f in res.findings if f.kind == "size_mismatch"]
    assert mismatch and 0.10 < mismatch[0].value < 0.14


def test_cli_scale_errors(tmp_path):
    from station.cli import app

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((300, 400, 3), 200, np.uint8))
    r = CliRunner().invoke(app, ["calibrate", "scale", "--json", str(blank)])
    assert r.exit_code == 2 and "no ArUco marker" in r.output
    r = CliRunner().invoke(app, ["calibrate", "scale", "--board", "9x6", str(blank)])
    assert r.exit_code == 2 and "no 9x6 checkerboard" in r.output
    r = CliRunner().invoke(app, ["calibrate", "scale", "--aruco-dict", "9X9_7", str(blank)])
    assert r.exit_code == 2 and "unknown ArUco dictionary" in r.output
    r = CliRunner().invoke(app, ["calibrate", "scale", "--board", "9x6", "--marker-mm", "40", str(blank)])
    assert r.exit_code == 2 and "not both" in r.output
    r = CliRunner().invoke(app, ["calibrate", "scale", str(tmp_path / "missing.png")])
    assert r.exit_code == 2 and "not found" in r.output


def test_intrinsics_from_central_views_fix_k3_and_warn():
    """Views whose board stays near the centre cannot pin k3: it is fixed at 0 with a warning instead of
    overfitting (which bent the edges and put the focal length off by several per cent)."""
    cam = SyntheticCamera.typical((640, 480), f=620.0, k1=-0.22, k2=0.06)
    tex, _ = checkerboard_texture(BOARD, int(SQUARE))
    rays = camera_rays(cam)
    centre = tex.image.shape[1] / 2, tex.image.shape[0] / 2
    views = []
    for i, (tx, ty, rz) in enumerate(POSES[:4]):
        r, t = look_at(centre, 700, tx, ty, rz)  # far away: a small board in the middle of the frame
        views.append((f"v{i}", render_plane(tex, cam, r, t, noise=1.5, rng=np.random.default_rng(i), rays=rays)))
    res = calibrate_intrinsics(views, BOARD, SQUARE)
    assert res.coverage < 0.3 and res.warnings and "k2 and k3 were fixed" in res.warnings[0]
    d = res.intrinsics.dist_coeffs
    assert d[1] == 0.0 and d[4] == 0.0
    assert abs(res.intrinsics.camera_matrix[0, 0] - 620.0) / 620.0 < 0.01
    # Within the part of the image the board covered, the radial factor still comes back.
    for r in (0.1, 0.2):
        assert abs(radial(d, r) - radial(cam.dist_coeffs, r)) < 0.01
    assert res.to_json()["warnings"] == list(res.warnings)


def test_intrinsics_with_wide_views_fit_k3_without_warning(board_views):
    _, _, views = board_views
    res = calibrate_intrinsics([(n, img) for n, img, _, _ in views], BOARD, SQUARE)
    assert res.coverage >= 0.45 and res.warnings == ()
