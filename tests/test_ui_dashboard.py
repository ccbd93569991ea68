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


# ------------------------------------------------------------------------------------------- issue 22


def _drawn_labels(qtbot, chart):
    """(rect, text) of every category label the chart's bottom axis draws at its current size."""
    from PyQt6.QtGui import QImage, QPainter

    qtbot.addWidget(chart)
    chart.resize(460, 260)
    chart.show()
    qtbot.waitExposed(chart)
    qtbot.wait(20)
    axis = chart.plot.getAxis("bottom")
    img = QImage(10, 10, QImage.Format.Format_ARGB32)
    texts = []
    for _ in range(2):  # as painted: the first pass may ask for a taller axis, the layout gives it
        p = QPainter(img)
        try:
            _, _, texts = axis.generateDrawSpecs(p)
        finally:
            p.end()
        qtbot.wait(50)
    return [(rect, text) for rect, _, text in texts]


def test_pareto_labels_do_not_overlap_and_the_last_bar_keeps_its_label(qtbot):
    from ui.dashboard import BarChart

    names = ["Colour mismatch", "Missing part", "Scratch", "Seal broken", "Dent", "Wrong item (swap)", "Stain",
             "Tear", "Leak", "Wear", "Foreign object", "Unit seen before"]
    chart = BarChart(pareto=True)
    chart.set_data(names, [3, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1])
    drawn = _drawn_labels(qtbot, chart)
    assert len(drawn) == len(names), "a label was dropped"
    rects = [r for r, _ in drawn]
    assert not any(a.intersects(b) for i, a in enumerate(rects) for b in rects[i + 1:]), "labels overlap"
    disp = BarChart()
    disp.set_data(["Manual review", "Restock", "Refurbish", "Scrap", "Open box", "Return to vendor"],
                  [8, 7, 4, 2, 2, 1])
    drawn = _drawn_labels(qtbot, disp)
    assert len(drawn) == 6 and drawn[-1][1].replace("\n", " ").startswith("Return")


def test_the_cumulative_line_has_a_percentage_axis(qtbot):
    from ui.dashboard import BarChart

    chart = BarChart(pareto=True)
    qtbot.addWidget(chart)
    chart.set_data(["Dent", "Scratch", "Tear"], [6, 3, 1])
    right = chart.plot.getAxis("right")
    assert right.isVisible()
    (ticks,) = right._tickLevels
    assert [t for _, t in ticks] == ["0%", "25%", "50%", "75%", "100%"]
    assert dict((t, v) for v, t in ticks)["100%"] == 6.0  # 100 % where the line ends: at the tallest bar
    curve = chart.plot.getPlotItem().listDataItems()[-1]
    assert [round(float(y), 6) for y in curve.yData] == [3.6, 5.4, 6.0]  # 60, 90, 100 % of the tallest bar
    assert not BarChart().plot.getAxis("right").isVisible()  # only the Pareto chart has it


def test_an_empty_chart_says_no_data_yet(qtbot):
    from ui.dashboard import BarChart, GroupedBarChart

    bars, grouped = BarChart(), GroupedBarChart()
    for chart in (bars, grouped):
        qtbot.addWidget(chart)
        chart.show()
    bars.set_data(["A", "B"], [0, 0])
    grouped.set_groups([], [("before", []), ("recent", [])])
    for chart in (bars, grouped):
        assert chart.empty.isVisible() and chart.empty.text() == "No data yet" and not chart.plot.isVisible()
    bars.set_data(["A", "B"], [1, 0])
    assert bars.plot.isVisible() and not bars.empty.isVisible()


def test_the_drift_watch_is_loaded_before_the_dashboard_counts_as_ready(qtbot, data_dir):
    """The README screenshot caught the drift panel at "Loading...": the screenshot waits for this."""
    from ui.screenshots import dashboard_ready

    seed_flagged(data_dir, "ORD-D-3")
    seed_flagged(data_dir, "ORD-D-4")
    win = make_window(qtbot, data_dir)
    win.ctx.set_user(User("sup", Role.SUPERVISOR))
    dash = win.dashboard
    qtbot.waitUntil(lambda: dash.stats is not None and dash.stats.total_items == 2, timeout=WAIT_MS)
    assert dash.drift is None and not dashboard_ready(dash)  # loaded while hidden: numbers only
    assert dash.drift_panel.note.text() == "Loading..."
    win.tabs.setCurrentWidget(dash)
    qtbot.waitUntil(lambda: dashboard_ready(dash), timeout=WAIT_MS)
    assert dash.drift_panel.note.text() != "Loading..."


def test_a_long_pareto_tail_becomes_one_bar_and_long_words_are_not_split():
    from PyQt6.QtGui import QFont, QFontMetricsF

    from ui.dashboard import PARETO_BARS, fit_label, pareto_bars

    counts = tuple((f"k{i}", 20 - i) for i in range(12))
    bars = pareto_bars(counts)
    assert len(bars) == PARETO_BARS and bars[-1] == (None, sum(20 - i for i in range(PARETO_BARS - 1, 12)))
    assert sum(n for _, n in bars) == sum(n for _, n in counts)
    assert pareto_bars(counts[:3]) == list(counts[:3])
    fm = QFontMetricsF(QFont())
    narrow = fm.horizontalAdvance("Cra")
    assert "\n" not in fit_label("Crack", fm, narrow)  # elided, never "Crac\nk"
    assert fit_label("Return to vendor", fm, fm.horizontalAdvance("Return to")) == "Return to\nvendor"
    assert fit_label("封条破损", fm, fm.horizontalAdvance("封条")).count("\n") == 1  # Chinese wraps anywhere
