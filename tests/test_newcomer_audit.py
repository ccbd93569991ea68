"""Issue 22, audited item by item on the CLI: what a new user trips over is bad input (exit 2, one line saying
what to do), never a traceback, a file written outside its folder, or a half-written copy left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from station.cli import app


def station(*args: str, data_dir: Path, cwd: Path | None = None):
    return subprocess.run([sys.executable, "-m", "station.cli", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})


def assert_one_line_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def _grey_png(path: Path, value: int = 128) -> Path:
    cv2.imwrite(str(path), np.full((64, 64, 3), value, np.uint8))
    return path


# --------------------------------------------------------------------------- calibrate colour --camera-id


def test_a_camera_id_that_is_a_path_is_refused_and_nothing_is_written(tmp_path):
    from calibration.chart import render_chart_scene

    chart = tmp_path / "chart.png"
    cv2.imwrite(str(chart), render_chart_scene(np.random.default_rng(4), (1.2, 1.0, 0.7), 0.8, 0.05))
    work = tmp_path / "work" / "deep"
    work.mkdir(parents=True)
    data = work / "data"
    proc = station("calibrate", "colour", str(chart), "--save", "--camera-id", "bench/../../x", data_dir=data,
                   cwd=work)
    assert_one_line_error(proc, "camera id 'bench/../../x'", "--camera-id")
    # before the fix: <data_dir>/x.json (outside <data_dir>/calibration) and an empty calibration/colour_bench
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != chart]
    assert written == [], written


def test_profiles_refuse_a_camera_id_that_is_a_path(tmp_path):
    from calibration.profiles import ProfileError, load_profile, profile_path, save_profile

    for bad in ("bench/../../x", "../x", "a\\b", "", "x" * 65):
        with pytest.raises(ProfileError, match="is not a camera id"):
            save_profile(tmp_path, "colour", bad, {"x": 1})
        with pytest.raises(ProfileError):
            load_profile(tmp_path, "colour", bad)
    assert not any(tmp_path.rglob("*"))
    assert profile_path(tmp_path, "colour", "bench-7.b_2") == tmp_path / "calibration" / "colour_bench-7.b_2.json"


def test_the_camera_id_refusal_is_exit_2_in_process_too(tmp_path):
    """Raised in calibration.profiles, below commands that do not catch it: the top-level command group turns
    it into one line and exit 2, also without `station.cli.main` (CliRunner)."""
    from calibration.chart import render_chart_scene

    chart = tmp_path / "chart.png"
    cv2.imwrite(str(chart), render_chart_scene(np.random.default_rng(4), (1.2, 1.0, 0.7), 0.8, 0.05))
    r = CliRunner().invoke(app, ["calibrate", "colour", str(chart), "--save", "--camera-id", "../x",
                                 "--data-dir", str(tmp_path / "data")])
    assert r.exit_code == 2, (r.output, r.exception)
    assert "is not a camera id" in r.output
    assert not (tmp_path / "data" / "x.json").exists() and not (tmp_path / "x.json").exists()
    # the start-up check reports it beside the profiles, as it does an unreadable one
    r = CliRunner().invoke(app, ["calibrate", "check", "--camera-id", "../x", "--data-dir", str(tmp_path / "data")])
    assert r.exit_code == 0 and "is not a camera id" in r.output, r.output


# --------------------------------------------------------------------------- compare --heatmap


@pytest.mark.parametrize("where", ["missing_folder", "folder", "unknown_extension"])
def test_compare_heatmap_that_cannot_be_written_is_exit_2(where, data_dir, tmp_path):
    img = _grey_png(tmp_path / "view.png")
    heat = {"missing_folder": tmp_path / "nonexistent" / "h.png", "folder": tmp_path,
            "unknown_extension": tmp_path / "h.txt"}[where]
    proc = station("compare", str(img), "--sku", "APP-TEE-M", "--heatmap", str(heat), data_dir=data_dir)
    # before the fix: missing_folder made the folder (exit 0), the others were cv2 tracebacks (exit 1)
    assert_one_line_error(proc, "cannot write heat map", ".png path in an existing")
    assert not (tmp_path / "nonexistent").exists() and not (tmp_path / "h.txt").exists()


# --------------------------------------------------------------------------- export --out


def test_export_to_a_folder_is_exit_2_and_leaves_no_tmp(data_dir, tmp_path):
    out = tmp_path / "exports"
    out.mkdir()
    proc = station("export", "--out", str(out), data_dir=data_dir)
    assert_one_line_error(proc, "it is a folder", "--out FILE")
    assert not Path(str(out) + ".tmp").exists()  # before the fix: exports.tmp with every record
    proc = station("export", "--out", str(tmp_path / "no" / "records.jsonl"), data_dir=data_dir)
    assert_one_line_error(proc, "does not exist")


def test_export_failing_at_the_last_step_removes_its_tmp(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "records.jsonl"

    import os

    real_replace = os.replace

    def refuse(src, dst, *a, **kw):
        if Path(dst) == out:  # the export's rename, after the data was written and fsynced
            raise PermissionError(13, "Permission denied", str(dst))
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", refuse)
    r = CliRunner().invoke(app, ["export", "--out", str(out), "--data-dir", str(data_dir)])
    assert r.exit_code == 2, r.output
    assert "cannot write" in r.output and "Permission denied" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no temporary copy of the records left


# --------------------------------------------------------------------------- sync messages


def test_sync_status_shows_a_stored_error_naming_a_section_intact(data_dir):
    from station.records import StationStore

    with StationStore(data_dir / "station.db") as store:
        # what boot stores when sync.url is set and no token is (station/app.py start_sync)
        store.set_state({"last_error": "sync is off: no sync token: set [sync] token, env STATION_SYNC_TOKEN, "
                                       "or pass --token"})
    proc = station("sync", "--status", data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    assert "set [sync] token" in proc.stdout and "set  token" not in proc.stdout, proc.stdout


def test_sync_url_that_is_not_http_is_exit_2(data_dir):
    from station.records import StationStore

    with StationStore(data_dir / "station.db"):
        pass
    proc = station("sync", "--once", "--url", "ftp://platform.example", "--token", "t" * 12, data_dir=data_dir)
    assert_one_line_error(proc, "http:// or https://")


# --------------------------------------------------------------------------- inspect: views and data dir


def test_inspect_refuses_one_photo_under_two_view_names(data_dir, tmp_path):
    front = _grey_png(tmp_path / "front.png")
    side = tmp_path / "side.png"
    os.link(front, side)  # the same file under a second name
    copy = tmp_path / "back.png"
    copy.write_bytes(front.read_bytes())
    for second in (side, copy):
        proc = station("inspect", str(front), str(second), "--sku", "APP-TEE-M", "--reason", "quality_issue",
                       data_dir=data_dir)
        assert_one_line_error(proc, "are the same image", "a photo of each view")
    assert not (data_dir / "station.db").exists()  # refused before anything was recorded


def test_inspect_with_a_data_dir_that_cannot_hold_data_is_exit_2(tmp_path):
    img = _grey_png(tmp_path / "front.png")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = station("inspect", str(img), "--sku", "APP-TEE-M", "--reason", "quality_issue",
                   data_dir=blocker / "data")
    assert_one_line_error(proc, "is a file, not a folder", "--data-dir")
