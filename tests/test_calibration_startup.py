"""Start-up calibration check: stale profiles and bench lighting drift, as a function, at boot and in the CLI."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
from typer.testing import CliRunner

from calibration.profiles import save_profile
from calibration.startup import bench_reading, startup_check

DAY = 86400.0


def bench_frame(bgr=(200, 200, 200), seed=0) -> np.ndarray:
    """An empty bench with a little noise and a dark item in the middle (the check ignores the item)."""
    rng = np.random.default_rng(seed)
    img = np.clip(np.float32(bgr) + rng.normal(0, 2.0, (240, 320, 3)), 0, 255).astype(np.uint8)
    cv2.rectangle(img, (100, 60), (220, 180), (40, 60, 90), -1)
    return img


def test_bench_reading_is_the_border():
    assert np.allclose(bench_reading(bench_frame((190, 200, 210))), (190, 200, 210), atol=1.0)


def test_stale_and_fresh_profiles(tmp_path):
    t0 = 1_700_000_000.0
    save_profile(tmp_path, "scale", "cam0", {"mm_per_px": 0.5}, now=t0)
    save_profile(tmp_path, "intrinsics", "cam0", {}, now=t0 - 45 * DAY)
    check = startup_check(tmp_path, "cam0", max_age_days=30, now=t0 + 2 * DAY)
    assert len(check.warnings) == 1 and "intrinsics profile for camera cam0 is 47 days old" in check.warnings[0]
    assert check.profiles["scale"] == {"present": True, "created_at": check.profiles["scale"]["created_at"],
                                       "age_days": 2.0, "stale": False}
    assert check.profiles["colour"]["present"] is False and check.lighting is None
    assert startup_check(tmp_path, "cam0", max_age_days=60, now=t0 + 2 * DAY).warnings == ()
    assert startup_check(tmp_path, "other-cam", now=t0).warnings == ()  # nothing stored: uncalibrated, no warning


def test_lighting_drift_against_the_colour_profile(tmp_path):
    save_profile(tmp_path, "colour", "cam0", {"bench_bgr": [200.0, 200.0, 200.0]})
    same = startup_check(tmp_path, "cam0", frame=bench_frame((202, 199, 201)))
    assert same.warnings == () and abs(same.lighting["level_change"]) < 0.02
    darker = startup_check(tmp_path, "cam0", frame=bench_frame((160, 160, 160)))
    assert len(darker.warnings) == 1 and "vs 200 at colour calibration (-20%" in darker.warnings[0]
    warm = startup_check(tmp_path, "cam0", frame=bench_frame((185, 200, 225)))  # tungsten-ish: red up, blue down
    assert any("white balance drifted" in w for w in warm.warnings)
    assert not any("grey level" in w for w in warm.warnings)
    assert warm.lighting["white_balance_change"]["r_over_g"] > 0.1
    tolerant = startup_check(tmp_path, "cam0", frame=bench_frame((160, 160, 160)), level_tolerance=0.25)
    assert tolerant.warnings == ()


def test_unreadable_profile_warns_and_does_not_raise(tmp_path):
    (tmp_path / "calibration").mkdir()
    (tmp_path / "calibration" / "scale_cam0.json").write_text("{not json")
    check = startup_check(tmp_path, "cam0")
    assert len(check.warnings) == 1 and "unreadable" in check.warnings[0]


def test_boot_check_and_comparer_survive_broken_profiles(tmp_path):
    from station.app import calibration_warnings, make_comparer, load_catalogue
    from station.config import CalibrationConfig, StationConfig, StationSection

    cfg = StationConfig(station=StationSection(data_dir=tmp_path), calibration=CalibrationConfig(max_profile_age_days=7))
    save_profile(tmp_path, "scale", "cam0", {"mm_per_px": 0.5}, now=time.time() - 10 * DAY)
    warnings = calibration_warnings(cfg)  # no camera: profiles only
    assert len(warnings) == 1 and "scale profile for camera cam0 is 10 days old (limit 7)" in warnings[0]
    (tmp_path / "calibration" / "scale_cam0.json").write_text('{"data": {}}')
    assert make_comparer(cfg, load_catalogue(cfg)).mm_per_px is None  # broken scale: no size check, no crash
    assert any("no valid date" in w for w in calibration_warnings(cfg))


def test_cli_check(tmp_path):
    from station.cli import app

    data = tmp_path / "data"
    save_profile(data, "colour", "cam0", {"bench_bgr": [200.0, 200.0, 200.0]}, now=time.time() - 40 * DAY)
    frame = tmp_path / "check.png"
    cv2.imwrite(str(frame), bench_frame((150, 150, 150)))
    r = CliRunner().invoke(app, ["calibrate", "check", "--json", "--data-dir", str(data), str(frame)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["camera_id"] == "cam0" and out["profiles"]["colour"]["stale"] is True
    assert any("40 days old" in w for w in out["warnings"]) and any("grey level" in w for w in out["warnings"])
    r = CliRunner().invoke(app, ["calibrate", "check", "--json", "--max-age-days", "60", "--data-dir", str(data)])
    assert r.exit_code == 0 and json.loads(r.stdout)["warnings"] == []
    r = CliRunner().invoke(app, ["calibrate", "check", "--data-dir", str(data), str(tmp_path / "nope.png")])
    assert r.exit_code == 2 and "not found" in r.output


def test_colour_profile_stores_the_bench(tmp_path):
    from calibration.chart import render_chart_scene
    from station.cli import app

    p = tmp_path / "chart.png"
    img = render_chart_scene(np.random.default_rng(4), (1.0, 1.0, 1.0), 0.8, 0.0)
    cv2.imwrite(str(p), img)
    r = CliRunner().invoke(app, ["calibrate", "colour", "--json", "--save", "--data-dir", str(tmp_path), str(p)])
    assert r.exit_code == 0, r.output
    saved = json.loads((tmp_path / "calibration" / "colour_cam0.json").read_text())
    assert np.allclose(saved["data"]["bench_bgr"], bench_reading(img), atol=0.01)
    assert startup_check(tmp_path, "cam0", frame=img).warnings == ()
