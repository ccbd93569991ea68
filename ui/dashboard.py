"""Dashboard: items/hour, grades, dispositions, defect Pareto, liability by party, top brands and streamers,
sync state, and the drift watch (per-class detection rate and confidence, recent items vs the baseline before
them, with a warning banner); pyqtgraph charts refreshed live (timer and after every write) from the database
via the worker."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtGui import QBrush, QColor, QFontMetricsF
from PyQt6.QtWidgets import (QAbstractItemView, QFrame, QGridLayout, QHBoxLayout, QHeaderView, QLabel,
                             QSizePolicy, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from models.drift import DriftPolicy
from station.domain import Party
from ui.context import StationContext
from ui.i18n import name, tr
from ui.stats import DashboardStats, DriftStats, dashboard_stats, drift_stats
from ui.status import sync_text

REFRESH_MS = 5000
PARETO_PERCENT_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)  # the cumulative line's axis, on the right


def fit_label(text: str, metrics: QFontMetricsF, width: float, max_lines: int = 3) -> str:
    """``text`` wrapped into lines no wider than ``width`` px (at spaces; between characters for text without
    spaces, such as Chinese), at most ``max_lines``, the last one elided when the text does not fit."""
    width = max(width, metrics.horizontalAdvance("W…"))
    # Chinese wraps between any two characters; other text only at spaces (a long word is elided, not split).
    sep = "" if any("\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef" for ch in text) else " "
    tokens = list(text.replace(" ", "")) if not sep else text.split()
    lines: list[str] = []
    line = ""
    for tok in tokens:
        cand = f"{line}{sep}{tok}" if line else tok
        if metrics.horizontalAdvance(cand) <= width or not line:
            line = cand
        else:
            lines.append(line)
            line = tok
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines - 1] + [sep.join(lines[max_lines - 1:]) + "…"]
    elide = Qt.TextElideMode.ElideRight
    return "\n".join(metrics.elidedText(ln, elide, width) if metrics.horizontalAdvance(ln) > width else ln
                     for ln in lines)


PARETO_BARS = 8  # the most frequent kinds, the rest summed in one last "other kinds" bar: labels stay readable


def pareto_bars(counts: tuple[tuple[str, int], ...], bars: int = PARETO_BARS) -> list[tuple[str | None, int]]:
    """Most frequent first; beyond ``bars`` the tail becomes one bar (kind None), so the line still ends at 100 %."""
    if len(counts) <= bars:
        return list(counts)
    return [*counts[:bars - 1], (None, sum(n for _, n in counts[bars - 1:]))]


class CategoryAxis(pg.AxisItem):
    """A bottom axis for text categories one unit apart: each label is fitted (wrapped, then elided) to the
    width of its own slot when the axis is drawn, so labels never overlap one another and the outermost ones
    are not dropped for running past the end of the axis."""

    GAP_PX = 6.0
    MAX_LINES = 2  # a third line did not fit under the small charts

    def __init__(self) -> None:
        super().__init__("bottom")
        self.labels: list[str] = []
        self.fitted: list[str] = []  # what was last drawn, one entry per category (tests read it)

    def set_labels(self, labels: list[str]) -> None:
        self.labels = list(labels)
        self.picture = None
        self.update()

    def slot_px(self) -> float:
        lo, hi = self.range
        return self.geometry().width() / max(hi - lo, 1e-9)

    def generateDrawSpecs(self, p):
        metrics = QFontMetricsF(p.font())
        width = self.slot_px() - self.GAP_PX
        self.fitted = [fit_label(text, metrics, width, self.MAX_LINES) for text in self.labels]
        self._tickLevels = [list(enumerate(self.fitted))]  # what AxisItem.setTicks stores, without a repaint
        # Room for the most lines any label needs (AxisItem drops a label taller than the axis); the taller
        # axis takes effect at the next layout pass, which repaints it.
        lines = max((t.count("\n") + 1 for t in self.fitted), default=1)
        needed = int(lines * metrics.lineSpacing() + 4)  # drawn at full height (AxisItem checks 0.8 of it)
        if needed > self.textHeight:
            self.textHeight = needed
            self._updateHeight()
        return super().generateDrawSpecs(p)


class BarChart(QFrame):
    """A titled bar chart with text categories (their labels translated by the caller). A chart with nothing
    to show says so instead of drawing bare axes; a Pareto chart adds the cumulative share on a % axis."""

    def __init__(self, colour: str = "#3a7bd5", pareto: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel()
        self.title.setObjectName("chartTitle")
        self.axis = CategoryAxis()
        self.plot = pg.PlotWidget(background="w", axisItems={"bottom": self.axis})
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(False, False)
        self.plot.hideButtons()
        self.plot.showGrid(y=True, alpha=0.3)
        self.empty = QLabel()
        self.empty.setObjectName("chartEmpty")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.colour = colour
        self.pareto = pareto
        if pareto:
            self.plot.showAxis("right")
        self.categories: list[str] = []
        self.values: list[float] = []
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.title)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.empty, 1)
        self._show_empty(True)

    @property
    def has_data(self) -> bool:
        return bool(self.categories) and any(v > 0 for v in self.values)

    def _show_empty(self, empty: bool) -> None:
        self.empty.setText(tr("No data yet"))
        self.empty.setVisible(empty)
        self.plot.setVisible(not empty)

    def set_data(self, categories: list[str], values: list[float]) -> None:
        self.categories, self.values = list(categories), [float(v) for v in values]
        self.plot.clear()
        x = np.arange(len(values))
        top = max(self.values + [1.0])
        if len(values):
            self.plot.addItem(pg.BarGraphItem(x=x, height=self.values, width=0.7, brush=self.colour))
            if self.pareto and sum(self.values) > 0:
                # The cumulative share drawn in the bars' units, 100 % at the tallest bar; the right axis
                # reads it in percent.
                cum = np.cumsum(self.values) / sum(self.values) * top
                self.plot.plot(x, cum, pen=pg.mkPen("#d9534f", width=2), symbol="o", symbolSize=6,
                               symbolBrush="#d9534f")
        if self.pareto:
            right = self.plot.getAxis("right")
            right.setTicks([[(f * top, f"{f:.0%}") for f in PARETO_PERCENT_TICKS]])
            right.setTextPen(pg.mkPen("#d9534f"))
            right.setLabel(tr("cumulative share"), color="#d9534f")
        self.axis.set_labels(self.categories)
        self.plot.setXRange(-0.5, max(len(values), 1) - 0.5, padding=0)
        self.plot.setYRange(0, top * 1.1, padding=0)
        self._show_empty(not self.has_data)


class GroupedBarChart(BarChart):
    """BarChart's frame and style with several bars per category (e.g. baseline and recent) and a legend."""

    def __init__(self, colours: tuple[str, ...] = ("#9aa5b1", "#3a7bd5"), parent: QWidget | None = None) -> None:
        super().__init__(colours[-1], parent=parent)
        self.colours = colours
        self.series: list[tuple[str, list[float]]] = []
        self.plot.addLegend(offset=(-10, 5))

    def set_groups(self, categories: list[str], series: list[tuple[str, list[float]]]) -> None:
        """``series``: (legend label, one value per category), drawn side by side in ``colours`` order."""
        self.categories = list(categories)
        self.series = [(label, [float(v) for v in values]) for label, values in series]
        self.values = [v for _, values in self.series for v in values]
        self.plot.clear()  # also empties the legend
        x = np.arange(len(self.categories))
        width = 0.8 / max(len(self.series), 1)
        if len(self.categories):
            for i, ((label, values), colour) in enumerate(zip(self.series, self.colours)):
                offset = (i - (len(self.series) - 1) / 2) * width
                self.plot.addItem(pg.BarGraphItem(x=x + offset, height=values, width=width * 0.9, brush=colour,
                                                  name=label))  # the name puts it in the legend
        self.axis.set_labels(self.categories)
        self.plot.setXRange(-0.5, max(len(self.categories), 1) - 0.5, padding=0)
        self.plot.setYRange(0, max(self.values + [10.0]) * 1.15, padding=0)
        self._show_empty(not self.has_data)


_SPARK = "▁▂▃▄▅▆▇█"


def sparkline(counts: tuple[int, ...]) -> str:
    """A confidence histogram (0 -> 1, left to right) as block characters; "-" when there are no boxes."""
    top = max(counts, default=0)
    if top == 0:
        return "-"
    # An empty bin is the lowest block (a space would be narrower and shift the columns); others start one up.
    return "".join(_SPARK[0] if n == 0 else _SPARK[1 + min(len(_SPARK) - 2, int(n / top * (len(_SPARK) - 2)))]
                   for n in counts)


class _WrappedNote(QLabel):
    """A word-wrapped label that does not report height-for-width: in the dashboard's grid that made its row
    take the height of the charts above it."""

    def hasHeightForWidth(self) -> bool:
        return False


class DriftPanel(QFrame):
    """Drift watch: detection rate per class (baseline vs recent bars), a confidence summary per class, and a
    note saying which windows are compared. The warning banner is the page's (it belongs at the top)."""

    COLUMNS = ("Class", "Detection rate\nbefore → recent", "Mean confidence\nbefore → recent",
               "Confidence 0 → 1\nbefore | recent")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("driftPanel")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel()
        self.title.setObjectName("chartTitle")
        self.note = _WrappedNote()
        self.note.setWordWrap(True)
        self.note.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.chart = GroupedBarChart()
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setObjectName("driftTable")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        # A table asks for more height than a chart: let it take its row's height, not set it.
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        body = QHBoxLayout()
        body.addWidget(self.chart, 2)
        body.addWidget(self.table, 3)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.title)
        lay.addWidget(self.note)
        lay.addLayout(body, 1)
        self.drift: DriftStats | None = None

    def set_drift(self, drift: DriftStats | None) -> None:
        self.drift = drift
        self.title.setText(tr("Model drift watch"))
        self.chart.title.setText(tr("Detection rate per class (%): before vs recent"))
        self.table.setHorizontalHeaderLabels([tr(c) for c in self.COLUMNS])
        if drift is None:
            self.note.setText(tr("Loading..."))
            self.chart.set_groups([], [])
            self.table.setRowCount(0)
            return
        p = drift.policy
        if drift.enough_data:
            self.note.setText(tr("Last {recent} items vs the {baseline} before them; a class warns when its rate "
                                 "moves more than {rate:.0%} or its mean confidence more than {conf:.2f}",
                                 recent=drift.recent_items, baseline=drift.baseline_items,
                                 rate=p.rate_threshold, conf=p.confidence_threshold))
        else:
            self.note.setText(tr("Not enough items to judge drift yet: {recent} recent and {baseline} before them "
                                 "(at least {need} each)", recent=drift.recent_items, baseline=drift.baseline_items,
                                 need=p.min_items))
        # Classes the detector found in either window, and any that warn; all of them would crowd the axis.
        shown = [c for c in drift.classes if c.warn or c.baseline_rate or c.recent_rate]
        self.chart.set_groups([name("finding", c.kind) for c in shown],
                              [(tr("before"), [100 * c.baseline_rate for c in shown]),
                               (tr("recent"), [100 * c.recent_rate for c in shown])])
        self.table.setRowCount(len(shown))
        for r, c in enumerate(shown):
            cells = (("⚠ " if c.warn else "") + name("finding", c.kind),
                     f"{c.baseline_rate:.0%} → {c.recent_rate:.0%}",
                     f"{_conf(c.baseline_confidence)} → {_conf(c.recent_confidence)}",
                     f"{sparkline(c.baseline_hist)} | {sparkline(c.recent_hist)}")
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if (col == 0 and c.warn) or (col == 1 and c.rate_moved) or (col == 2 and c.confidence_moved):
                    item.setForeground(QBrush(QColor("#b00020")))
                self.table.setItem(r, col, item)


def _conf(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def drift_banner_text(drift: DriftStats | None) -> str:
    """The warning over the dashboard; "" when nothing drifted."""
    if drift is None or not drift.drifted:
        return ""
    parts = []
    for c in drift.drifted:
        moved = []
        if c.rate_moved:
            moved.append(tr("rate {before:.0%} → {recent:.0%}", before=c.baseline_rate, recent=c.recent_rate))
        if c.confidence_moved:
            moved.append(tr("confidence {before:.2f} → {recent:.2f}", before=c.baseline_confidence,
                            recent=c.recent_confidence))
        parts.append(tr("{kind} ({changes})", kind=name("finding", c.kind), changes=", ".join(moved)))
    return tr("Model drift: {classes}. Check the camera and the lighting first, then the model",
              classes="; ".join(parts))


class DashboardPage(QWidget):
    def __init__(self, ctx: StationContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("dashboard")
        self.stats: DashboardStats | None = None
        self.drift: DriftStats | None = None
        self._loading = False
        self._again = False
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.summary = QLabel()
        self.summary.setObjectName("summary")
        self.sync = QLabel()
        self.charts = {
            "per_hour": BarChart("#3a7bd5"), "grades": BarChart("#5cb85c"), "dispositions": BarChart("#5bc0de"),
            "pareto": BarChart("#f0ad4e", pareto=True), "liability": BarChart("#9b59b6"),
            "brands": BarChart("#e67e22"), "streamers": BarChart("#e74c3c"),
        }
        head = QHBoxLayout()
        head.addWidget(self.summary, 1)
        head.addWidget(self.sync)
        self.drift_banner = QLabel()
        self.drift_banner.setObjectName("driftBanner")
        self.drift_banner.setWordWrap(True)
        self.drift_banner.setVisible(False)
        self.drift_panel = DriftPanel()
        grid = QGridLayout()
        order = ("per_hour", "grades", "dispositions", "pareto", "liability", "brands", "streamers")
        positions = ((0, 0, 1, 2), (0, 2, 1, 1), (0, 3, 1, 1), (1, 0, 1, 2), (1, 2, 1, 1), (1, 3, 1, 1), (2, 0, 1, 1))
        for key, pos in zip(order, positions):
            grid.addWidget(self.charts[key], *pos)
        grid.addWidget(self.drift_panel, 2, 1, 1, 3)
        lay = QVBoxLayout(self)
        lay.addLayout(head)
        lay.addWidget(self.drift_banner)
        lay.addLayout(grid, 1)
        self.retranslate()

    def start(self) -> None:
        self.timer.start()
        self.refresh()

    def retranslate(self) -> None:
        titles = {"per_hour": "Items per hour", "grades": "Grades", "dispositions": "Dispositions",
                  "pareto": "Defect Pareto (findings, cumulative line)", "liability": "Liability by party (returns)",
                  "brands": "Top brands by brand-attributed returns",
                  "streamers": "Top streamers by streamer-attributed returns"}
        for key, text in titles.items():
            self.charts[key].title.setText(tr(text))
        self._render()
        self._render_drift()

    def refresh(self) -> None:
        if self.ctx.station is not None and self._loading and self.isVisible():
            self._again = True  # the tab was just shown during a refresh made while hidden (without drift)
        if self.ctx.station is None or self._loading:
            return
        self._loading = True
        ctx = self.ctx
        m = ctx.config.models
        policy = DriftPolicy(m.drift_window, m.drift_baseline, m.drift_rate_threshold, m.drift_confidence_threshold)
        # Drift reads up to window + baseline rows (~15 ms of worker time at the defaults): only while someone
        # looks at it; showing the tab refreshes at once.
        with_drift = self.isVisible()

        def work():
            store = ctx.station.store
            return dashboard_stats(store), (drift_stats(store, policy) if with_drift else None)

        def done(result):
            self._loading = False
            self.stats, drift = result
            self._render()
            if drift is not None:
                self.drift = drift
                self._render_drift()
            self._refresh_again()

        def failed(exc):
            self._loading = False
            self._refresh_again()

        self.ctx.jobs.submit(work, done, failed)

    def _refresh_again(self) -> None:
        if self._again:
            self._again = False
            self.refresh()

    def _render_drift(self) -> None:
        banner = drift_banner_text(self.drift)
        self.drift_banner.setText(banner)
        self.drift_banner.setVisible(bool(banner))
        self.drift_panel.set_drift(self.drift)

    def _render(self) -> None:
        s = self.stats
        if s is None:
            self.summary.setText(tr("Loading..."))
            self.sync.setText("")
            return
        self.summary.setText(tr("{total} items · {review} awaiting review · {overrides} overrides",
                                total=s.total_items, review=s.awaiting_review, overrides=s.overrides))
        self.sync.setText(sync_text(self.ctx.config.sync.url is not None, s.sync))
        c = self.charts
        c["per_hour"].set_data([h for h, _ in s.per_hour], [n for _, n in s.per_hour])
        c["grades"].set_data(list(s.grades), list(s.grades.values()))
        c["dispositions"].set_data([name("disposition", d) for d in s.dispositions], list(s.dispositions.values()))
        pareto = pareto_bars(s.pareto)
        c["pareto"].set_data([tr("Other kinds") if k is None else name("finding", k) for k, _ in pareto],
                             [n for _, n in pareto])
        c["liability"].set_data([name("party", p.value) for p in Party], [s.liability.get(p.value, 0) for p in Party])
        c["brands"].set_data([b for b, _ in s.top_brands], [n for _, n in s.top_brands])
        c["streamers"].set_data([b for b, _ in s.top_streamers], [n for _, n in s.top_streamers])
