"""The desktop app: login, inspector bench, supervisor queue, dashboard; zh_CN / en at runtime.

``run_gui`` is what ``station gui`` calls (through a dynamic import: station/ never imports ui/).
"""

from __future__ import annotations

import sys
from pathlib import Path

from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtGui import QKeySequence, QShortcut
from PyQt6.QtWidgets import (QApplication, QComboBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QMainWindow,
                             QProgressBar, QPushButton, QStackedWidget, QStatusBar, QTabWidget, QVBoxLayout, QWidget)

from station.config import StationConfig
from station.users import AuthError, Permission
from ui import i18n
from ui.bench import BenchPage
from ui.calibration import CalibrationPage
from ui.context import StationContext
from ui.dashboard import DashboardPage
from ui.i18n import LANGUAGES, name, tr
from ui.queue import QueuePage
from ui.settings import SettingsPage
from ui.settings_store import read_ui_language, save_ui_language
from ui.status import StationStatus, alarm, hardware_text, read_station_status, sync_text
from ui.theme import STYLE
from ui.widgets import ElidedLabel

STATUS_MS = 2000  # hardware and sync state, read on the worker


class LoginPage(QWidget):
    def __init__(self, ctx: StationContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("login")
        self.title = QLabel()
        self.title.setObjectName("title")
        self.loading = QProgressBar()
        self.loading.setRange(0, 0)  # busy: loading catalogue and model on the worker
        self.loading_label = QLabel()
        self.user = QComboBox()
        self.user.setEditable(True)
        self.user.setProperty("i18n_data", True)
        self.pin = QLineEdit()
        self.pin.setObjectName("pin")
        self.pin.setEchoMode(QLineEdit.EchoMode.Password)
        self.pin.returnPressed.connect(self.login)
        self.button = QPushButton()
        self.button.clicked.connect(self.login)
        self.error = QLabel()
        self.error.setObjectName("loginError")
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.setProperty("i18n_data", True)  # lists user names (data); the sentence goes through tr()
        self.form = QFormLayout()
        self.user_label, self.pin_label = QLabel(), QLabel()
        self.form.addRow(self.user_label, self.user)
        self.form.addRow(self.pin_label, self.pin)
        box = QVBoxLayout()
        box.addWidget(self.title)
        box.addWidget(self.loading_label)
        box.addWidget(self.loading)
        box.addLayout(self.form)
        box.addWidget(self.button)
        box.addWidget(self.error)
        box.addWidget(self.hint)
        box.addStretch(1)
        outer = QHBoxLayout(self)
        outer.addStretch(1)
        outer.addLayout(box, 2)
        outer.addStretch(1)
        self._error_fn = None
        self.set_ready(False)
        self.retranslate()

    def set_ready(self, ready: bool) -> None:
        self.loading.setVisible(not ready)
        self.loading_label.setVisible(not ready)
        for w in (self.user, self.pin, self.button):
            w.setEnabled(ready)
        if ready and self.ctx.users is not None:
            users = self.ctx.users.users()
            self.user.clear()
            for u in users:
                self.user.addItem(u.username)
            self.pin.setFocus()
        self.retranslate()

    def retranslate(self) -> None:
        self.title.setText(tr("Returns inspection station"))
        self.loading_label.setText(tr("Loading catalogue, rules and model..."))
        self.user_label.setText(tr("User"))
        self.pin_label.setText(tr("PIN"))
        self.pin.setPlaceholderText(tr("PIN, then Enter"))
        self.button.setText(tr("Log in"))
        self.error.setText(self._error_fn() if self._error_fn else "")
        demo = self.ctx.demo_users
        self.hint.setText(tr("First start: demo users were created: {users}. Change their PINs before real use.",
                             users=", ".join(f"{u} ({name('role', r.value)}) {p}" for u, r, p in demo))
                          if demo else "")

    def login(self) -> None:
        if self.ctx.users is None:
            return
        username, pin, users = self.user.currentText().strip(), self.pin.text(), self.ctx.users
        self.pin.clear()

        def failed(exc):
            from station.users import AccountLocked

            # A locked account says so and until when; other failures never tell a name from a PIN.
            self._error_fn = (lambda: tr("Unknown user or wrong PIN")) if (
                isinstance(exc, AuthError) and not isinstance(exc, AccountLocked)) else (lambda e=str(exc): e)
            self.retranslate()

        def done(user):
            self._error_fn = None
            self.retranslate()
            self.ctx.set_user(user)

        self.ctx.jobs.submit(lambda: users.authenticate(username, pin), done, failed)


class MainWindow(QMainWindow):
    def __init__(self, ctx: StationContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.title = QLabel()
        self.title.setObjectName("title")
        self.user_label = QLabel()
        self.user_label.setProperty("i18n_data", True)  # the user name is data; its role text goes through tr()
        self.language = QComboBox()
        for code, label in LANGUAGES.items():
            self.language.addItem(label, code)
        self.language.setProperty("i18n_data", True)  # language names are shown in their own language
        self.language.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.language.currentIndexChanged.connect(lambda _: self.set_language(self.language.currentData()))
        self.logout_button = QPushButton()
        self.logout_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.logout_button.clicked.connect(lambda: ctx.set_user(None))
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.user_label)
        top.addWidget(self.language)
        top.addWidget(self.logout_button)

        self.login = LoginPage(ctx)
        self.bench = BenchPage(ctx)
        self.queue = QueuePage(ctx)
        self.dashboard = DashboardPage(ctx)
        self.calibration = CalibrationPage(ctx)
        self.settings = SettingsPage(ctx)
        self.tabs = QTabWidget()
        self.tabs.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.tabs.addTab(self.bench, "")
        self.tabs.addTab(self.queue, "")
        self.tabs.addTab(self.dashboard, "")
        self.tabs.addTab(self.calibration, "")
        self.tabs.addTab(self.settings, "")
        self.tabs.currentChanged.connect(self._tab_changed)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.login)
        self.stack.addWidget(self.tabs)
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.addLayout(top)
        lay.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        self.status = QStatusBar()
        self.setStatusBar(self.status)
        self.hw = ElidedLabel()
        self.hw.setObjectName("hardwareStatus")
        self.sync = ElidedLabel()
        self.sync.setObjectName("syncStatus")
        self.busy = QLabel()
        self.progress = QProgressBar()
        self.progress.setObjectName("progress")
        self.progress.setMaximumWidth(220)
        self.progress.setVisible(False)
        self.progress_label = QLabel()
        self.progress_label.setVisible(False)
        self.status.addPermanentWidget(self.progress_label)
        self.status.addPermanentWidget(self.progress)
        self.status.addPermanentWidget(self.busy)
        self.status.addPermanentWidget(self.hw, 3)
        self.status.addPermanentWidget(QLabel("·"))  # hardware and sync read as one line otherwise
        self.status.addPermanentWidget(self.sync, 2)
        for page in (self.bench, self.queue, self.calibration, self.settings):
            page.message.connect(lambda text: self.status.showMessage(text, 8000))
        self.settings.language_chosen.connect(self._language_chosen)
        ctx.jobs.error.connect(lambda exc: self.status.showMessage(str(exc), 8000))
        ctx.jobs.busy_changed.connect(self._busy)
        ctx.jobs.progress.connect(self._progress)
        self.station_status: StationStatus | None = None
        self._status_loading = False
        self._progress_what = ""
        self.status_timer = QTimer(self)
        self.status_timer.setInterval(STATUS_MS)
        self.status_timer.timeout.connect(self.refresh_status)
        ctx.station_ready.connect(self._ready)
        ctx.boot_failed.connect(self._boot_failed)
        ctx.user_changed.connect(self._user_changed)
        ctx.records_changed.connect(self._records_changed)
        for i, key in enumerate(("Ctrl+1", "Ctrl+2", "Ctrl+3", "Ctrl+4", "Ctrl+5")):
            QShortcut(QKeySequence(key), self, activated=lambda i=i: self._go(i))
        self._busy_now = False
        self._boot_error = ""
        self.retranslate()

    # ----------------------------------------------------------------------------------------- state
    def _go(self, index: int) -> None:
        if self.tabs.isTabEnabled(index) and self.stack.currentWidget() is self.tabs:
            self.tabs.setCurrentIndex(index)

    def _ready(self) -> None:
        self.login.set_ready(True)
        self.dashboard.start()
        self.status_timer.start()
        self.refresh_status()
        self.retranslate()

    def refresh_status(self) -> None:
        """Hardware and sync state, read on the worker; the UI thread only sets the labels."""
        if self.ctx.station is None or self._status_loading:
            return
        self._status_loading = True
        station = self.ctx.station

        def done(st):
            self._status_loading = False
            self.station_status = st
            self._render_status()

        def failed(exc):
            self._status_loading = False
            self.status.showMessage(str(exc), 8000)

        self.ctx.jobs.submit(lambda: read_station_status(station), done, failed)

    def _render_status(self) -> None:
        st = self.station_status
        self.hw.setText(hardware_text(st))
        self.hw.setProperty("state", "bad" if alarm(st) else "")
        self.hw.style().unpolish(self.hw)
        self.hw.style().polish(self.hw)
        self.sync.setText(sync_text(self.ctx.config.sync.url is not None, st.sync if st else None))

    def _progress(self, what: str, done: int, total: int) -> None:
        finished = total <= 0 or done >= total
        self._progress_what = "" if finished else what
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(min(done, max(total, 1)))
        self.progress.setVisible(not finished)
        self.progress_label.setVisible(not finished)
        self.progress_label.setText(tr(what) if what else "")

    def _language_chosen(self, lang: str) -> None:
        self.set_language(lang)
        data_dir = self.ctx.config.station.data_dir
        self.ctx.jobs.submit(lambda: save_ui_language(data_dir, lang), None,
                             lambda exc: self.status.showMessage(str(exc), 8000))

    def _boot_failed(self, message: str) -> None:
        self._boot_error = message
        self.login.loading.setVisible(False)
        self.login._error_fn = lambda: tr("The station could not start: {error}", error=message)
        self.login.retranslate()

    def _user_changed(self, user) -> None:
        if user is None:
            self.bench.cancel_item()
            self.stack.setCurrentWidget(self.login)
            self.login.pin.setFocus()
        else:
            self.tabs.setTabEnabled(1, user.can(Permission.REVIEW_QUEUE))
            self.tabs.setTabEnabled(2, user.can(Permission.DASHBOARD))
            self.tabs.setTabEnabled(3, user.can(Permission.CALIBRATE))
            self.tabs.setTabEnabled(4, user.can(Permission.EDIT_SETTINGS))
            self.stack.setCurrentWidget(self.tabs)
            self.tabs.setCurrentIndex(0)
            self.bench.scan.setFocus()
            if user.can(Permission.REVIEW_QUEUE):
                self.queue.refresh()
        self.settings.user_changed(user)
        self.retranslate()

    def _tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is self.queue:
            self.queue.refresh()
        elif self.tabs.widget(index) is self.dashboard:
            self.dashboard.refresh()
        elif self.tabs.widget(index) is self.bench:
            self.bench.scan.setFocus()
        elif self.tabs.widget(index) is self.settings and not self.settings.loaded:
            self.settings.load()

    def _records_changed(self) -> None:
        self.dashboard.refresh()
        if self.tabs.currentWidget() is self.queue:
            self.queue.refresh()

    def _busy(self, busy: bool) -> None:
        self._busy_now = busy
        self.busy.setText(tr("Working...") if busy else "")

    def set_language(self, lang: str) -> None:
        i18n.set_language(lang)
        self.language.blockSignals(True)
        self.language.setCurrentIndex(self.language.findData(lang))
        self.language.blockSignals(False)
        self.retranslate()

    def retranslate(self) -> None:
        cfg = self.ctx.config
        self.setWindowTitle(tr("Returns inspection station"))
        self.title.setText(tr("Returns inspection · {station}", station=cfg.station.id))
        user = self.ctx.user
        self.user_label.setText(tr("{user} ({role})", user=user.username, role=name("role", user.role.value))
                                if user else tr("Not logged in"))
        self.logout_button.setText(tr("Log out"))
        self.logout_button.setVisible(user is not None)
        self.tabs.setTabText(0, tr("Bench"))
        self.tabs.setTabText(1, tr("Review queue"))
        self.tabs.setTabText(2, tr("Dashboard"))
        self.tabs.setTabToolTip(1, tr("Supervisors only"))
        self.tabs.setTabText(3, tr("Calibration"))
        self.tabs.setTabToolTip(3, tr("Supervisors and administrators"))
        self.tabs.setTabText(4, tr("Settings"))
        self.tabs.setTabToolTip(4, tr("Administrators only"))
        self._render_status()
        self.progress_label.setText(tr(self._progress_what) if self._progress_what else "")
        self.busy.setText(tr("Working...") if self._busy_now else "")
        for page in (self.login, self.bench, self.queue, self.dashboard, self.calibration, self.settings):
            page.retranslate()

    def closeEvent(self, event) -> None:
        self.dashboard.timer.stop()
        self.status_timer.stop()
        self.ctx.shutdown()
        super().closeEvent(event)


def make_app(argv: list[str] | None = None) -> QApplication:
    # The worker thread shares the GIL with the UI thread: ask it to hand the GIL over every 1 ms (default
    # 5 ms) so pure-Python stretches of inspection never hold the event loop up.
    sys.setswitchinterval(0.001)
    app = QApplication.instance() or QApplication(argv or sys.argv[:1])
    app.setStyleSheet(STYLE)
    return app


def build_window(config: StationConfig, language: str = "en", config_path: Path | None = None) -> MainWindow:
    """Create the window and start booting the station on the worker (returns at once). ``config_path`` is
    the TOML the station was started with: the settings page saves there (else ``<data_dir>/station.toml``)."""
    i18n.set_language(language)
    ctx = StationContext(config, config_path=config_path)
    win = MainWindow(ctx)
    win.set_language(language)
    ctx.boot()
    return win


def run_gui(config: StationConfig, language: str | None = "en", screenshots: Path | None = None,
            config_path: Path | None = None) -> int:
    """``language=None``: the one chosen in settings (``<data_dir>/ui.toml``), else English."""
    app = make_app()
    if screenshots is not None:
        from ui.screenshots import take_screenshots

        return take_screenshots(app, config, Path(screenshots))
    if language is None:
        language = read_ui_language(config.station.data_dir) or "en"
        if language not in LANGUAGES:
            language = "en"
    win = build_window(config, language, config_path)
    win.resize(1600, 1000)
    win.show()
    return app.exec()
