"""Calibration wizard: the colour step on a rendered chart image fits a correction, lists ΔE per patch and
saves a profile (calibration/profiles.py); the quality step runs the pipeline's gate; only supervisors and
admins may save (station.users)."""

from __future__ import annotations

import json

import cv2
import numpy as np
from PyQt6.QtCore import Qt

from calibration.chart import render_chart_scene
from calibration.profiles import load_profile, profile_path
from station.users import Role, User
from tests.ui_support import WAIT_MS, make_window


def _chart_file(tmp_path):
    img = render_chart_scene(np.random.default_rng(3), illuminant_gain_rgb=(1.2, 1.0, 0.75), exposure=0.85)
    path = tmp_path / "chart.png"
    assert cv2.imwrite(str(path), img)
    return path


def test_colour_step_on_a_chart_image_saves_a_profile(qtbot, data_dir, tmp_path):
    win = make_window(qtbot, data_dir)
    win.ctx.set_user(User("sue", Role.SUPERVISOR))
    page = win.calibration
    assert win.tabs.isTabEnabled(win.tabs.indexOf(page))
    win.tabs.setCurrentWidget(page)
    assert not page.save_button.isEnabled()
    page.camera_id.setText("bench7")
    page.load_chart_file(_chart_file(tmp_path))  # what "Open an image file..." does with the chosen file
    qtbot.waitUntil(lambda: page.colour is not None, timeout=WAIT_MS)
    r = page.colour
    assert r.source == "file" and len(r.before) == len(r.after) == 24
    assert np.mean(r.after) < np.mean(r.before) / 2 and np.mean(r.after) < 3  # the correction corrects
    assert page.patches.rowCount() == 24 and page.patches.item(0, 0).text() == "1"
    assert page.patches.item(18, 2).text() == f"{r.after[18]:.2f}"
    assert "before" in page.colour_summary.text() and page.save_button.isEnabled()

    qtbot.mouseClick(page.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.saved_path is not None, timeout=WAIT_MS)
    path = profile_path(data_dir, "colour", "bench7")
    assert page.saved_path == path and path.is_file()
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["kind"] == "colour" and doc["camera_id"] == "bench7" and doc["created_at"]
    data = load_profile(data_dir, "colour", "bench7")["data"]
    assert len(data["patches"]) == 24 and data["source"] == "file"
    assert abs(data["mean_delta_e00_after"] - float(np.mean(r.after))) < 0.01
    assert data["patches"][0]["delta_e00_before"] == round(r.before[0], 3)
    assert len(data["correction"]["coefficients"]) == 3  # a 3x3 matrix

    # The quality step: the pipeline's gate on a bench frame, and the profile just saved.
    qtbot.mouseClick(page.capture_quality_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.quality is not None, timeout=WAIT_MS)
    q = page.quality
    assert q.ok and page.verdict.text() == "Quality gate: OK"
    assert abs(q.bench_grey - 200) < 15  # the simulated bench is a calibrated grey 200
    # The chart file's bench (stored with the profile) was darker and warmer than this bench: both drifts show.
    assert data["bench_bgr"] and np.mean(data["bench_bgr"]) < 170
    details = page.quality_details.text()
    assert q.level_drift and q.balance_drift and "Lighting drift" in details and "White balance drift" in details
    assert f"Colour profile: {doc['created_at'][:10]}, 0 days old" in details
    assert "Scale profile: none stored" in details


def test_simulated_camera_renders_a_chart_and_an_inspector_cannot_save(qtbot, data_dir):
    win = make_window(qtbot, data_dir)
    win.ctx.set_user(User("ines", Role.INSPECTOR))
    page = win.calibration
    assert not win.tabs.isTabEnabled(win.tabs.indexOf(page))
    page.capture_chart()  # the tab is disabled, but even if the page is reached: reading a chart changes nothing
    qtbot.waitUntil(lambda: page.colour is not None, timeout=WAIT_MS)
    assert page.colour.source == "simulated" and np.mean(page.colour.after) < np.mean(page.colour.before)
    assert "bench_bgr" not in page.colour.profile  # a rendered chart has no real bench to compare with later
    page.save_profile()  # station.users refuses the save
    qtbot.waitUntil(lambda: "may not" in win.statusBar().currentMessage(), timeout=WAIT_MS)
    assert page.saved_path is None and not profile_path(data_dir, "colour", "cam0").exists()


def test_geometry_steps_save_scale_and_intrinsics_profiles(qtbot, data_dir, tmp_path):
    from calibration.scenes import (SyntheticCamera, bench_with_markers, camera_rays, checkerboard_texture, look_at,
                                    render_plane)

    cam = SyntheticCamera.typical((640, 480), k1=0.0, k2=0.0)  # f = 620 px
    rays = camera_rays(cam)
    tex, _ = checkerboard_texture((9, 6), 25)
    cx, cy = tex.image.shape[1] / 2, tex.image.shape[0] / 2
    views = []
    for i, (tx, ty, rz) in enumerate([(0, 0, 0), (25, 0, 5), (-25, 0, -5), (0, 25, 10)]):
        r, t = look_at((cx + 10 * i - 30, cy), 520, tx, ty, rz)
        views.append(tmp_path / f"board{i}.png")
        cv2.imwrite(str(views[-1]), render_plane(tex, cam, r, t, noise=1.5, rng=np.random.default_rng(i), rays=rays))
    bench = bench_with_markers((520, 400), 0.5, [(0, 25, 45), (1, 335, 265)], 40.0)
    r, t = look_at((200, 180), 0.7 * cam.camera_matrix[0, 0])  # seen from straight above at 0.7 mm per pixel
    bench_png = tmp_path / "bench.png"
    cv2.imwrite(str(bench_png), render_plane(bench, cam, r, t, noise=1.0, rng=np.random.default_rng(3), rays=rays))

    win = make_window(qtbot, data_dir)
    win.ctx.set_user(User("boss", Role.ADMIN))
    page = win.calibration
    win.tabs.setCurrentWidget(page)
    assert not page.save_scale_button.isEnabled() and page.scale_result.text() == "Scale: not measured"
    page.load_scale_file(bench_png)  # no intrinsics profile yet: the marker corners are used as seen
    qtbot.waitUntil(lambda: "scale" in page.geometry, timeout=WAIT_MS)
    scale = page.geometry["scale"].profile
    assert not scale["undistorted"] and abs(scale["mm_per_px"] - 0.7) / 0.7 < 0.01
    assert "from 2 marker(s)" in page.scale_result.text()
    qtbot.mouseClick(page.save_scale_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "scale" in page.geometry_saved, timeout=WAIT_MS)
    saved = load_profile(data_dir, "scale", "cam0")
    assert saved["kind"] == "scale" and saved["data"]["mm_per_px"] == scale["mm_per_px"]
    assert "saved" in page.scale_result.text()

    page.load_intrinsics_files(views)
    qtbot.waitUntil(lambda: "intrinsics" in page.geometry, timeout=WAIT_MS)
    intr = page.geometry["intrinsics"].profile
    assert intr["views_used"] == 4 and abs(intr["fx"] - 620) < 6 and "from 4 of 4 views" in page.intrinsics_result.text()
    qtbot.mouseClick(page.save_intrinsics_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "intrinsics" in page.geometry_saved, timeout=WAIT_MS)
    assert load_profile(data_dir, "intrinsics", "cam0")["data"]["views_used"] == 4
