"""Settings (admins): camera, conveyor port, quality thresholds, identity threshold, detector model, language.

The form is validated with the station's own pydantic models (StationConfig) on the worker; every problem
is shown under its field with its path in the file. A valid form is written atomically as TOML to the file
the station was started with (or ``<data_dir>/station.toml``). Backend changes apply at the next start.
Reading and saving call station.users.require(EDIT_SETTINGS): an inspector is refused by station/, whatever
the UI shows.
"""

from __future__ import annotations

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import (QComboBox, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton,
                             QScrollArea, QVBoxLayout, QWidget)

from station.users import Permission, PermissionDenied
from ui import i18n
from ui.context import StationContext
from ui.i18n import LANGUAGES, tr
from ui.settings_store import CAMERA_TYPES, CONVEYOR_TYPES, FIELDS, Problem, read_settings, save_settings
from ui.widgets import data_label

_CAMERA_NAMES = {"synthetic": "Simulated (rendered returns)", "folder": "Image folder (replay)",
                 "opencv": "Camera device or stream (OpenCV)"}
_CONVEYOR_NAMES = {"simulated": "Simulated", "bench": "None: bench totes", "serial": "Serial (station protocol)",
                   "modbus": "Modbus RTU (PLC)"}
_LABELS = {
    "camera.type": "Camera", "camera.source": "Camera source (device index, URL or folder)",
    "camera.width": "Image width (px)", "camera.height": "Image height (px)",
    "conveyor.type": "Conveyor", "conveyor.url": "Conveyor port",
    "quality.min_sharpness": "Minimum sharpness", "quality.min_mean": "Minimum brightness (0-255)",
    "quality.max_mean": "Maximum brightness (0-255)", "quality.max_clipped_share": "Maximum glare share (0-1)",
    "comparer.identity_threshold": "Identity threshold (0-1)", "detector.model": "Detector model (ONNX file)",
}
_GROUPS = (("Camera", ("camera.type", "camera.source", "camera.width", "camera.height")),
           ("Conveyor", ("conveyor.type", "conveyor.url")),
           ("Quality gate", ("quality.min_sharpness", "quality.min_mean", "quality.max_mean",
                             "quality.max_clipped_share")),
           ("Inspection", ("comparer.identity_threshold", "detector.model")))
# File paths that belong to a form field under another name.
_ALIASES = {"camera.path": "camera.source", "camera.pattern": "camera.source", "camera.seed": "camera.type",
            "conveyor": "conveyor.type", "camera": "camera.type", "detector": "detector.model"}


def problem_text(p: Problem) -> str:
    """A validation problem in the current language, with its path in the file."""
    c = p.ctx
    templates = {
        "greater_than_equal": ("must be at least {v}", "ge"), "less_than_equal": ("must be at most {v}", "le"),
        "greater_than": ("must be more than {v}", "gt"), "less_than": ("must be less than {v}", "lt"),
        "string_too_short": ("must not be empty", None), "missing": ("is required", None),
        "float_parsing": ("must be a number", None), "float_type": ("must be a number", None),
        "int_parsing": ("must be a whole number", None), "int_type": ("must be a whole number", None),
        "int_from_float": ("must be a whole number", None), "string_type": ("must be text", None),
        "string_pattern_mismatch": ("has the wrong form (expected {v})", "pattern"),
        "extra_forbidden": ("unknown key (check its spelling and section)", None),
        "union_tag_invalid": ("unknown type; expected one of {v}", "expected_tags"),
        "literal_error": ("must be one of {v}", "expected"),
        "file_not_found": ("file not found: {v}", "path"),
    }
    if p.kind in templates:
        text, key = templates[p.kind]
        v = c.get(key, "") if key else ""
        v = f"{v:g}" if isinstance(v, float) else v
        msg = tr(text, v=v) if key else tr(text)
    else:
        msg = p.message  # a rare pydantic message, shown as pydantic wrote it
    return f"{p.path}: {msg}"


def field_of(path: str) -> str | None:
    keys = {k for k, _ in FIELDS}
    if path in keys:
        return path
    if path in _ALIASES:
        return _ALIASES[path]
    for k in keys:  # e.g. camera.width.<something>
        if path.startswith(k + "."):
            return k
    return None


class SettingsPage(QWidget):
    message = pyqtSignal(str)
    language_chosen = pyqtSignal(str)

    def __init__(self, ctx: StationContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("settings")
        self.path = None
        self.problems: tuple[Problem, ...] = ()
        self.saved = False
        self.loaded = False
        self.denied = ""  # station.users' refusal, shown as the page's only content
        self._busy = False
        self._build()
        self.retranslate()

    def _build(self) -> None:
        self.title = QLabel()
        self.title.setObjectName("sectionTitle")
        self.file_label = QLabel()
        self.file_path = data_label()
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setObjectName("note")
        self.denied_label = QLabel()
        self.denied_label.setProperty("state", "bad")
        self.denied_label.setWordWrap(True)
        self.general = QLabel()  # problems that belong to no field
        self.general.setProperty("state", "bad")
        self.general.setWordWrap(True)
        self.inputs: dict[str, QWidget] = {}
        self.labels: dict[str, QLabel] = {}
        self.field_problems: dict[str, QLabel] = {}
        self.camera_type = QComboBox()
        for t in CAMERA_TYPES:
            self.camera_type.addItem("", t)
        self.camera_type.currentIndexChanged.connect(lambda _: self._type_changed())
        self.conveyor_type = QComboBox()
        for t in CONVEYOR_TYPES:
            self.conveyor_type.addItem("", t)
        self.conveyor_type.currentIndexChanged.connect(lambda _: self._type_changed())
        self.inputs["camera.type"] = self.camera_type
        self.inputs["conveyor.type"] = self.conveyor_type
        for key, _ in FIELDS:
            if key not in self.inputs:
                edit = QLineEdit()
                edit.setObjectName(key.replace(".", "_"))
                edit.setProperty("i18n_data", True)  # values (numbers, ports, paths) are data
                self.inputs[key] = edit
        self.groups: list[tuple[QGroupBox, str]] = []
        form = QVBoxLayout()
        for title, keys in _GROUPS:
            box = QGroupBox()
            grid = QGridLayout(box)
            for r, key in enumerate(keys):
                label, problem = QLabel(), QLabel()
                problem.setObjectName("fieldProblem")
                problem.setProperty("state", "bad")
                problem.setWordWrap(True)
                problem.setVisible(False)
                self.labels[key], self.field_problems[key] = label, problem
                grid.addWidget(label, 2 * r, 0)
                grid.addWidget(self.inputs[key], 2 * r, 1)
                grid.addWidget(problem, 2 * r + 1, 1)
            grid.setColumnStretch(1, 1)
            self.groups.append((box, title))
            form.addWidget(box)
        lang_box = QGroupBox()
        lang_row = QHBoxLayout(lang_box)
        self.language_label = QLabel()
        self.language = QComboBox()
        for code, label in LANGUAGES.items():
            self.language.addItem(label, code)
        self.language.setProperty("i18n_data", True)  # language names are shown in their own language
        lang_row.addWidget(self.language_label)
        lang_row.addWidget(self.language, 1)
        self.groups.append((lang_box, "Language"))
        form.addWidget(lang_box)

        self.save_button = QPushButton()
        self.save_button.clicked.connect(self.save)
        self.reload_button = QPushButton()
        self.reload_button.clicked.connect(self.load)
        self.result = QLabel()
        self.result.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.reload_button)
        buttons.addWidget(self.result, 1)

        inner = QWidget()
        lay = QVBoxLayout(inner)
        lay.addWidget(self.title)
        row = QHBoxLayout()
        row.addWidget(self.file_label)
        row.addWidget(self.file_path, 1)
        lay.addLayout(row)
        lay.addWidget(self.note)
        lay.addWidget(self.general)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addStretch(1)
        self.form_widget = inner
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.addWidget(self.denied_label)
        outer.addWidget(scroll, 1)
        self.scroll = scroll
        self._show_form(False)

    # ----------------------------------------------------------------------------------------- view
    def retranslate(self) -> None:
        self.title.setText(tr("Station settings"))
        self.file_label.setText(tr("Saved to:"))
        self.note.setText(tr("Camera, conveyor, detector and threshold changes apply when the station is "
                             "restarted with this file. The language applies at once."))
        for box, title in self.groups:
            box.setTitle(tr(title))
        for key, label in self.labels.items():
            label.setText(tr(_LABELS[key]))
        for combo, names in ((self.camera_type, _CAMERA_NAMES), (self.conveyor_type, _CONVEYOR_NAMES)):
            for i in range(combo.count()):
                combo.setItemText(i, tr(names[combo.itemData(i)]))
        self.language_label.setText(tr("Language"))
        self.language.blockSignals(True)
        self.language.setCurrentIndex(max(0, self.language.findData(i18n.language())))
        self.language.blockSignals(False)
        self.save_button.setText(tr("Validate and save"))
        self.reload_button.setText(tr("Reload from file"))
        self.denied_label.setText(tr("Only an administrator may change the station settings.")
                                  if self.denied else "")
        self._render_problems()

    def _show_form(self, show: bool) -> None:
        self.scroll.setVisible(show)
        self.denied_label.setVisible(not show)

    def _type_changed(self) -> None:
        cam, conv = self.camera_type.currentData(), self.conveyor_type.currentData()
        self.inputs["camera.source"].setEnabled(cam in ("folder", "opencv"))
        for key in ("camera.width", "camera.height"):
            self.inputs[key].setEnabled(cam in ("synthetic", "opencv"))
        self.inputs["conveyor.url"].setEnabled(conv in ("serial", "modbus"))

    def _render_problems(self) -> None:
        by_field: dict[str, list[str]] = {}
        general = []
        for p in self.problems:
            key = field_of(p.path)
            (by_field.setdefault(key, []) if key else general).append(problem_text(p))
        for key, label in self.field_problems.items():
            texts = by_field.get(key, [])
            label.setText("\n".join(texts))
            label.setVisible(bool(texts))
        self.general.setText("\n".join(general))
        self.general.setVisible(bool(general))
        if self.saved:
            self.result.setText(tr("Saved. Restart the station to apply camera, conveyor, detector and threshold "
                                   "changes."))
        elif self.problems:
            self.result.setText(tr("Not saved: {n} problem(s), shown next to their fields.", n=len(self.problems)))
        else:
            self.result.setText("")

    def values(self) -> dict[str, str]:
        out = {}
        for key, w in self.inputs.items():
            out[key] = w.currentData() if isinstance(w, QComboBox) else w.text()
        return out

    def set_value(self, key: str, text: str) -> None:
        w = self.inputs[key]
        if isinstance(w, QComboBox):
            w.setCurrentIndex(max(0, w.findData(text)))
        else:
            w.setText(text)

    def _fill(self, values: dict[str, str]) -> None:
        for key, text in values.items():
            if key in self.inputs:
                self.set_value(key, text)
        self._type_changed()

    # ----------------------------------------------------------------------------------------- work
    def load(self) -> None:
        """Read the file on the worker (station.users refuses anyone without EDIT_SETTINGS)."""
        if self.ctx.station is None or self._busy:
            return
        self._busy = True
        ctx, user = self.ctx, self.ctx.user

        def done(result):
            self._busy = False
            self.denied, self.loaded, self.saved, self.problems = "", True, False, result.problems
            self.path = result.path
            self.file_path.setText(str(result.path))
            self._fill(result.values)
            self._show_form(True)
            self.retranslate()

        def failed(exc):
            self._busy = False
            self.loaded = False
            if isinstance(exc, PermissionDenied):
                self.denied = str(exc)
                self._show_form(False)
            self.retranslate()
            self.message.emit(str(exc))

        self.ctx.jobs.submit(lambda: read_settings(user, ctx.config, ctx.config_path), done, failed)

    def save(self) -> None:
        if self.ctx.station is None or self._busy:
            return
        self._busy = True
        ctx, user, values = self.ctx, self.ctx.user, self.values()
        lang = self.language.currentData()
        if lang != i18n.language():
            self.language_chosen.emit(lang)  # applies at once; persisted with the UI preferences

        def done(result):
            self._busy = False
            self.saved, self.problems = result.saved, result.problems
            self.path = result.path
            self.file_path.setText(str(result.path))
            if result.saved:
                self._fill(result.values)
                self.message.emit(tr("Settings saved to {path}", path=str(result.path)))
            self.retranslate()

        def failed(exc):
            self._busy = False
            self.saved = False
            self.message.emit(str(exc))

        self.ctx.jobs.submit(lambda: save_settings(user, ctx.config, ctx.config_path, values), done, failed)

    def user_changed(self, user) -> None:
        self.loaded, self.saved, self.problems, self.denied = False, False, (), ""
        self._show_form(False)
        if user is not None and user.can(Permission.EDIT_SETTINGS):
            self.load()
        self.retranslate()
