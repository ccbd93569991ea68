"""`station gui` with no display: exit 2 with a clear message instead of Qt's xcb abort (issue 22)."""

from typer.testing import CliRunner

from station.cli import app


def test_gui_without_display_exits_2_with_clear_message(monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = CliRunner().invoke(app, ["gui"])
    assert result.exit_code == 2
    assert "no display" in result.output.lower()
