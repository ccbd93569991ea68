"""Settings: validated with the station's own models, problems shown at their field with their path, saved
atomically as TOML that load_config accepts; only an admin may read or change them (station.users)."""

from __future__ import annotations

import tomllib

import pytest
from PyQt6.QtCore import Qt

from station.config import StationConfig, StationSection, load_config
from station.users import PermissionDenied, Role, User
from tests.ui_support import WAIT_MS, make_window
from ui import i18n
from ui.settings_store import read_settings, read_ui_language, save_settings, to_toml


def _start(qtbot, data_dir, tmp_path, user):
    path = tmp_path / "station.toml"
    path.write_text(f'[station]\nid = "bench-7"\ndata_dir = "{data_dir}"\n\n[sync]\nbatch_size = 50\n',
                    encoding="utf-8")
    win = make_window(qtbot, data_dir, config=load_config(path), config_path=path)
    win.ctx.set_user(user)
    return win, path


def _save(qtbot, page):
    qtbot.mouseClick(page.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not page._busy, timeout=WAIT_MS)


def test_settings_show_each_problem_at_its_field_then_save_a_valid_file(qtbot, data_dir, tmp_path):
    win, path = _start(qtbot, data_dir, tmp_path, User("boss", Role.ADMIN))
    page = win.settings
    assert win.tabs.isTabEnabled(win.tabs.indexOf(page))
    win.tabs.setCurrentWidget(page)
    qtbot.waitUntil(lambda: page.loaded, timeout=WAIT_MS)
    assert page.file_path.text() == str(path)
    assert page.values()["quality.max_mean"] == "225.0" and page.values()["camera.type"] == "synthetic"
    original = path.read_text(encoding="utf-8")

    page.set_value("quality.max_mean", "300")
    page.set_value("quality.min_sharpness", "sharp")
    page.set_value("conveyor.type", "serial")  # needs a port: left empty
    _save(qtbot, page)
    assert not page.saved
    problems = page.field_problems
    assert problems["quality.max_mean"].isVisible()
    assert problems["quality.max_mean"].text() == "quality.max_mean: must be at most 255"
    assert problems["quality.min_sharpness"].text() == "quality.min_sharpness: must be a number"
    assert problems["conveyor.url"].text() == "conveyor.url: must not be empty"
    assert not problems["quality.min_mean"].isVisible()
    assert "3 problem(s)" in page.result.text()
    assert path.read_text(encoding="utf-8") == original  # nothing written

    page.set_value("quality.max_mean", "210")
    page.set_value("quality.min_sharpness", "12.5")
    page.set_value("conveyor.url", "/dev/ttyUSB3")
    page.set_value("comparer.identity_threshold", "0.85")
    _save(qtbot, page)
    assert page.saved and not any(label.isVisible() for label in problems.values())
    assert "Restart the station" in page.result.text()
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert data["quality"]["max_mean"] == 210.0 and data["quality"]["min_sharpness"] == 12.5
    assert data["conveyor"] == {"type": "serial", "url": "/dev/ttyUSB3"}
    assert data["comparer"]["identity_threshold"] == 0.85
    assert data["sync"] == {"batch_size": 50} and data["station"]["id"] == "bench-7"  # the rest is kept
    cfg = load_config(path)
    assert cfg.quality.max_mean == 210.0 and cfg.conveyor.type == "serial" and cfg.conveyor.url == "/dev/ttyUSB3"
    assert cfg.comparer.identity_threshold == 0.85 and cfg.station.data_dir == data_dir
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left no temporary file
    assert win.ctx.config.conveyor.type == "simulated"  # the running station is unchanged until a restart

    page.language.setCurrentIndex(page.language.findData("zh_CN"))  # the language applies at once and is kept
    try:
        _save(qtbot, page)
        assert i18n.language() == "zh_CN" and win.tabs.tabText(0) == "质检台"
        assert read_ui_language(data_dir) == "zh_CN"
    finally:
        i18n.set_language("en")


def test_an_inspector_cannot_open_or_change_settings(qtbot, data_dir, tmp_path):
    inspector = User("ines", Role.INSPECTOR)
    win, path = _start(qtbot, data_dir, tmp_path, inspector)
    page = win.settings
    assert not win.tabs.isTabEnabled(win.tabs.indexOf(page))
    original = path.read_text(encoding="utf-8")
    page.load()  # even if the page is reached, station.users refuses to read the file
    qtbot.waitUntil(lambda: not page._busy, timeout=WAIT_MS)
    assert not page.loaded and "may not" in page.denied and not page.scroll.isVisibleTo(page)
    assert "Only an administrator" in page.denied_label.text()
    cfg = win.ctx.config
    with pytest.raises(PermissionDenied):
        read_settings(inspector, cfg, path)
    with pytest.raises(PermissionDenied):
        save_settings(inspector, cfg, path, {"quality.max_mean": "200"})
    with pytest.raises(PermissionDenied):
        save_settings(User("sue", Role.SUPERVISOR), cfg, path, {"quality.max_mean": "200"})
    assert path.read_text(encoding="utf-8") == original


def test_without_a_config_file_settings_go_to_the_data_dir(data_dir):
    cfg = StationConfig(station=StationSection(data_dir=data_dir))
    admin = User("boss", Role.ADMIN)
    shown = read_settings(admin, cfg, None)
    assert shown.path == data_dir / "station.toml" and not shown.path.exists()
    values = dict(shown.values, **{"camera.type": "opencv", "camera.source": "2", "camera.width": "1280"})
    result = save_settings(admin, cfg, None, values)
    assert result.saved and result.problems == ()
    cfg2 = load_config(data_dir / "station.toml")
    assert cfg2.camera.type == "opencv" and cfg2.camera.source == 2 and cfg2.camera.width == 1280
    assert cfg2.station.data_dir == data_dir  # the same records as the running station
    bad = save_settings(admin, cfg, None, dict(values, **{"detector.model": "nowhere/model.onnx"}))
    assert not bad.saved and [p.path for p in bad.problems] == ["detector.model"]


def test_toml_writer_round_trips_config_data():
    data = {"station": {"id": "st-1", "views": ["front", "side"]}, "note": 'say "hi"\n\t中文',
            "lanes": {"restock": 1, "manual_review": 0}, "a": {"b": {"c": 1.5, "d": True, "e": 1e-5}},
            "weird key": {"x.y": -3}}
    assert tomllib.loads(to_toml(data)) == data
