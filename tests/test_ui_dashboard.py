"""Dashboard numbers come from the database and the charts show them."""

from __future__ import annotations

from station.users import Role, User
from tests.ui_support import WAIT_MS, make_window, seed_flagged


def test_dashboard_charts_show_what_the_database_holds(qtbot, data_dir):
    seed_flagged(data_dir, "ORD-D-1")
    seed_flagged(data_dir, "ORD-D-2", streamer="studio-nine")
    win = make_window(qtbot, data_dir)
    win.ctx.set_user(User("sup", Role.SUPERVISOR))
    win.tabs.setCurrentWidget(win.dashboard)
    qtbot.waitUntil(lambda: win.dashboard.stats is not None and win.dashboard.stats.total_items == 2,
                    timeout=WAIT_MS)
    s, charts = win.dashboard.stats, win.dashboard.charts
    assert s.awaiting_review == 2 and s.overrides == 0
    assert sum(charts["grades"].values) == 2 and charts["grades"].categories == ["A", "B", "C", "D"]
    assert charts["dispositions"].categories == ["Manual review"] and charts["dispositions"].values == [2.0]
    assert sum(charts["per_hour"].values) == 2
    assert abs(sum(charts["liability"].values) - 2.0) < 1e-6  # shares of each return sum to 1
    assert "2 items · 2 awaiting review" in win.dashboard.summary.text()
