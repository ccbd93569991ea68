"""Dashboard: items/hour, grades, dispositions, defect Pareto, liability by party, top brands and streamers,
sync state; pyqtgraph charts refreshed live (timer and after every write) from the database via the worker."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from station.domain import Party
from ui.context import StationContext
from ui.i18n import name, tr
from ui.stats import DashboardStats, dashboard_stats
from ui.status import sync_text

REFRESH_MS = 5000


class BarChart(QFrame):
    """A titled bar chart with text categories (their labels translated by the caller)."""

    def __init__(self, colour: str = "#3a7bd5", pareto: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel()
        self.title.setObjectName("chartTitle")
        self.plot = pg.PlotWidget(background="w")
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(False, False)
        self.plot.hideButtons()
        self.plot.showGrid(y=True, alpha=0.3)
        self.colour = colour
        self.pareto = pareto
        self.categories: list[str] = []
        self.values: list[float] = []
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.title)
        lay.addWidget(self.plot)

    def set_data(self, categories: list[str], values: list[float]) -> None:
        self.categories, self.values = list(categories), [float(v) for v in values]
        self.plot.clear()
        x = np.arange(len(values))
        if len(values):
            self.plot.addItem(pg.BarGraphItem(x=x, height=self.values, width=0.7, brush=self.colour))
            if self.pareto and sum(self.values) > 0:
                cum = np.cumsum(self.values) / sum(self.values) * max(self.values)
                self.plot.plot(x, cum, pen=pg.mkPen("#d9534f", width=2), symbol="o", symbolSize=6,
                               symbolBrush="#d9534f")
        self.plot.getAxis("bottom").setTicks([list(zip(x.tolist(), self.categories))])
        self.plot.setXRange(-0.6, max(len(values), 1) - 0.4, padding=0)
        self.plot.setYRange(0, max(self.values + [1.0]) * 1.1, padding=0)


class DashboardPage(QWidget):
    def __init__(self, ctx: StationContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("dashboard")
        self.stats: DashboardStats | None = None
        self._loading = False
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
        grid = QGridLayout()
        order = ("per_hour", "grades", "dispositions", "pareto", "liability", "brands", "streamers")
        positions = ((0, 0, 1, 2), (0, 2, 1, 1), (0, 3, 1, 1), (1, 0, 1, 2), (1, 2, 1, 1), (1, 3, 1, 1), (2, 0, 1, 2))
        for key, pos in zip(order, positions):
            grid.addWidget(self.charts[key], *pos)
        lay = QVBoxLayout(self)
        lay.addLayout(head)
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

    def refresh(self) -> None:
        if self.ctx.station is None or self._loading:
            return
        self._loading = True
        ctx = self.ctx

        def done(stats):
            self._loading = False
            self.stats = stats
            self._render()

        def failed(exc):
            self._loading = False

        self.ctx.jobs.submit(lambda: dashboard_stats(ctx.station.store), done, failed)

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
        c["pareto"].set_data([name("finding", k) for k, _ in s.pareto], [n for _, n in s.pareto])
        c["liability"].set_data([name("party", p.value) for p in Party], [s.liability.get(p.value, 0) for p in Party])
        c["brands"].set_data([b for b, _ in s.top_brands], [n for _, n in s.top_brands])
        c["streamers"].set_data([b for b, _ in s.top_streamers], [n for _, n in s.top_streamers])
