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


def _seed_detections(data_dir, start: int, n: int, scratch_rate: float) -> None:
    """``n`` model decisions written through the store: a scratch box on ``scratch_rate`` of the items and a dent
    box on every fifth, at steady confidences."""
    from station.domain import (Decision, Disposition, Finding, FindingSource, Grade, ReturnReason,
                                ReturnRequest)
    from station.records import StationStore, record_from_parts

    records = []
    for i in range(start, start + n):
        findings = []
        if (i % 10) < scratch_rate * 10:
            findings.append(Finding("scratch", 0.8, FindingSource.DETECTOR, "front", (10, 10, 40, 40)))
        if i % 5 == 0:
            findings.append(Finding("dent", 0.7, FindingSource.DETECTOR, "side", (50, 50, 90, 90)))
        request = ReturnRequest(f"ORD-DR-{i:04d}", "BTL-FEED-240", ReturnReason.NO_REASON_7DAY)
        decision = Decision(Grade.B, Disposition.OPEN_BOX, (), False, ())
        records.append(record_from_parts(request, findings, decision, 2, [], "m1", "st-test", {}))
    with StationStore(data_dir / "station.db").open() as store:
        store.append_many(records)


def test_drift_panel_warns_only_for_the_class_that_moved(qtbot, data_dir):
    from station.config import ModelsConfig, StationConfig, StationSection

    _seed_detections(data_dir, 0, 90, scratch_rate=0.1)
    cfg = StationConfig(station=StationSection(data_dir=data_dir),
                        models=ModelsConfig(drift_window=30, drift_baseline=60, drift_rate_threshold=0.1))
    win = make_window(qtbot, data_dir, config=cfg)
    win.ctx.set_user(User("sup", Role.SUPERVISOR))
    win.tabs.setCurrentWidget(win.dashboard)
    dash = win.dashboard
    qtbot.waitUntil(lambda: dash.drift is not None and dash.drift.recent_items == 30, timeout=WAIT_MS)
    assert dash.drift.baseline_items == 60 and dash.drift.enough_data and dash.drift.drifted == ()
    assert not dash.drift_banner.isVisible() and dash.drift_banner.text() == ""
    chart = dash.drift_panel.chart
    assert chart.categories == ["Scratch", "Dent"]  # only the classes the detector found
    assert [label for label, _ in chart.series] == ["before", "recent"]
    assert chart.series[0][1] == [10.0, 20.0] and chart.series[1][1] == [10.0, 20.0]
    table = dash.drift_panel.table
    assert table.rowCount() == 2 and table.item(0, 2).text() == "0.80 → 0.80"

    _seed_detections(data_dir, 90, 30, scratch_rate=0.5)  # the recent window: scratches jump 10% -> 50%
    dash.refresh()
    qtbot.waitUntil(lambda: dash.drift.drifted != (), timeout=WAIT_MS)
    assert [c.kind for c in dash.drift.drifted] == ["scratch"]  # dent stays at 20%
    assert dash.drift_banner.isVisible()
    assert "Scratch (rate 10% → 50%)" in dash.drift_banner.text() and "Dent" not in dash.drift_banner.text()
    assert chart.series[1][1] == [50.0, 20.0]
    assert table.item(0, 0).text() == "⚠ Scratch" and not table.item(1, 0).text().startswith("⚠")
    assert table.item(0, 1).text() == "10% → 50%"

    from tests.test_ui_i18n import untranslated
    from ui import i18n

    try:
        win.set_language("zh_CN")
        assert untranslated(dash) == []
        assert dash.drift_banner.text().startswith("模型漂移：划痕（检出率 10% → 50%）")
    finally:
        i18n.set_language("en")
