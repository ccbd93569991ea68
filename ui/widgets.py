"""Small shared widgets: image tiles, data labels, the override dialog."""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
from PyQt6.QtCore import QSize, Qt
from PyQt6.QtGui import QImage, QPainter, QPixmap
from PyQt6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFormLayout, QFrame, QHBoxLayout, QLabel,
                             QLineEdit, QSizePolicy, QVBoxLayout, QWidget)

from station.domain import Disposition, Grade
from station.users import OVERRIDE_REASONS
from ui.i18n import name, tr
from ui.images import to_qimage


def data_label(text: str = "", parent: QWidget | None = None) -> QLabel:
    """A label that shows data (ids, codes), not UI text: the translation test skips it."""
    label = QLabel(text, parent)
    label.setProperty("i18n_data", True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class ElidedLabel(QLabel):
    """One line of state that never widens the window: cut with an ellipsis where the window is narrower than
    the text, the whole text in the tooltip. A status bar sized by its longest line would push the window past
    the screen, and every change of state would move the pages above it."""

    MIN_WIDTH = 120  # px: enough to read the first device's state

    def setText(self, text: str) -> None:  # noqa: N802 (Qt's name)
        super().setText(text)
        self.setToolTip(text)

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return QSize(self.MIN_WIDTH, super().minimumSizeHint().height())

    def paintEvent(self, _event) -> None:  # noqa: N802
        painter = QPainter(self)
        rect = self.contentsRect()
        shown = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, rect.width())
        # The style draws it, so the style sheet's colours (an alarm in red) hold as for a QLabel.
        self.style().drawItemText(painter, rect, int(self.alignment()), self.palette(), self.isEnabled(), shown,
                                  self.foregroundRole())


class ImageTile(QFrame):
    """Title, image, caption. The caption turns red for a retake prompt."""

    def __init__(self, width: int = 300, height: int = 225, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel()
        self.title.setObjectName("tileTitle")
        self.image = QLabel()
        self.image.setFixedSize(width, height)
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setObjectName("tileImage")
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.caption.setFixedWidth(width)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.title)
        lay.addWidget(self.image)
        lay.addWidget(self.caption)
        lay.addStretch(1)  # extra height goes below the caption, never between picture and caption
        # Never shorter than title + picture + caption: a squeezed tile drew its caption over the picture.
        lay.setSizeConstraint(QVBoxLayout.SizeConstraint.SetMinimumSize)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        self.has_image = False

    def set_image(self, image: QImage | None) -> None:
        if image is None or image.isNull():
            self.image.clear()
            self.has_image = False
            return
        pix = QPixmap.fromImage(image).scaled(self.image.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                              Qt.TransformationMode.SmoothTransformation)
        self.image.setPixmap(pix)
        self.has_image = True

    def set_caption(self, text: str, state: str = "") -> None:
        self.caption.setText(text)
        # A wrapped label's minimum height is one line; the layouts above size the tile from minimums, so the
        # caption asks for the height its wrapped lines need at its (narrowest) width.
        width = max(self.caption.minimumWidth(), 1)
        self.caption.setMinimumHeight(self.caption.heightForWidth(width) if text else 0)
        self.caption.setProperty("state", state)  # "", "ok", "bad": styled by the theme
        self.caption.style().unpolish(self.caption)
        self.caption.style().polish(self.caption)


class HeatLegend(QWidget):
    """What the heat map's colours mean: the overlay's colour scale (ui.images.heat_overlay, JET) from "same as
    the reference" to "differs most"."""

    SCALE_SIZE = (220, 12)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("heatLegend")
        self.title = QLabel()
        self.low = QLabel()
        self.high = QLabel()
        self.scale = QLabel()
        self.scale.setObjectName("heatScale")
        self.scale.setFixedSize(*self.SCALE_SIZE)
        self.scale.setPixmap(QPixmap.fromImage(heat_scale_image(*self.SCALE_SIZE)))
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (self.title, self.low, self.scale, self.high):
            lay.addWidget(w)
        lay.addStretch(1)
        self.retranslate()

    def retranslate(self) -> None:
        self.title.setText(tr("Heat map:"))
        self.low.setText(tr("same as the reference"))
        self.high.setText(tr("differs most"))


def heat_scale_image(width: int, height: int) -> QImage:
    """The heat overlay's colour scale, low (left) to high (right), drawn by the same colour map."""
    ramp = np.tile(np.linspace(0, 255, width).astype(np.uint8), (height, 1))
    return to_qimage(cv2.applyColorMap(ramp, cv2.COLORMAP_JET))


class OverrideDialog(QDialog):
    """Reason code, new grade and disposition, comment. Tab between fields, Enter to save, Esc to cancel.

    An override is a permanent record, so it must change the grade or the disposition and say why: what is
    still missing is shown from the moment the dialog opens (not only after Save), and a refused or failed
    Save keeps every field as typed. With ``save`` the dialog stays open until the write succeeded:
    ``save(values, done, failed)`` runs the write (off the UI thread) and calls ``done()`` or ``failed(message)``.
    ``flagged``: the item waits for a supervisor; keeping its proposal is an approval, not an override."""

    def __init__(self, grade: str, disposition: str, parent: QWidget | None = None,
                 save: Callable[[tuple[str, str, Grade, Disposition], Callable[[], None], Callable[[str], None]],
                                None] | None = None, flagged: bool = False) -> None:
        super().__init__(parent)
        self.setObjectName("overrideDialog")
        self.original_grade = grade
        self.original_disposition = disposition
        self.flagged = flagged
        self._save = save
        self.saving = False
        self._failure = ""  # why the last Save failed (the store refused it); cleared by the next edit
        self.reason = QComboBox()
        for code in OVERRIDE_REASONS:
            self.reason.addItem(name("override", code), code)
        self.grade = QComboBox()
        for g in Grade:
            self.grade.addItem(g.value, g.value)
        self.grade.setCurrentIndex(max(0, self.grade.findData(grade)))
        self.disposition = QComboBox()
        for d in Disposition:
            if d != Disposition.MANUAL_REVIEW:
                self.disposition.addItem(name("disposition", d.value), d.value)
        self.disposition.setCurrentIndex(max(0, self.disposition.findData(disposition)))
        self.comment = QLineEdit()
        self.comment.setObjectName("overrideComment")
        self.form = QFormLayout()
        self.labels = [QLabel(), QLabel(), QLabel(), QLabel()]
        for label, field in zip(self.labels, (self.reason, self.grade, self.disposition, self.comment)):
            self.form.addRow(label, field)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(self.form)
        # What the override still needs (live), or why Save was refused: in the dialog, so typed fields stay.
        self.error = QLabel()
        self.error.setObjectName("overrideError")
        self.error.setWordWrap(True)
        lay.addWidget(self.error)
        lay.addWidget(self.buttons)
        for combo in (self.reason, self.grade, self.disposition):
            combo.currentIndexChanged.connect(self._edited)
        self.comment.textChanged.connect(self._edited)
        self.reason.setFocus()
        self.retranslate()

    def retranslate(self) -> None:
        self.setWindowTitle(tr("Override the decision"))
        for label, text in zip(self.labels, ("Reason", "Grade", "Disposition", "Comment")):
            label.setText(tr(text))
        self.comment.setPlaceholderText(tr("Why (required)"))
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText(tr("Save override"))
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setText(tr("Cancel"))
        self._render_problem()

    def changes_something(self) -> bool:
        return (self.grade.currentData() != self.original_grade
                or self.disposition.currentData() != self.original_disposition)

    def problems(self) -> list[str]:
        """What keeps this override from being saved, in the current language; empty when it can be."""
        out = []
        if not self.changes_something():
            out.append(tr("Choose a different grade or disposition: keeping the proposal is an approval")
                       if self.flagged else tr("Choose a different grade or disposition: this one changes nothing"))
        if not self.comment.text().strip():
            out.append(tr("Write a comment that says why"))
        return out

    def _edited(self, *_args) -> None:
        self._failure = ""
        self._render_problem()

    def _render_problem(self) -> None:
        lines = self.problems()
        if self._failure:
            lines = [tr("Not saved: {error}", error=self._failure), *lines]
        self.error.setText("\n".join(lines))
        self.error.setVisible(bool(lines))

    def accept(self) -> None:
        if self.saving:
            return
        if self.problems():
            # F8, Down, Enter reaches here in three keys: nothing is written, the fields keep what was typed.
            self._render_problem()
            (self.grade if not self.changes_something() else self.comment).setFocus()
            return
        if self._save is None:
            super().accept()
            return
        self._set_saving(True)
        self._save(self.values(), self._saved, self._save_failed)

    def reject(self) -> None:
        if not self.saving:  # a write in flight finishes first: its answer needs this dialog
            super().reject()

    def _set_saving(self, saving: bool) -> None:
        self.saving = saving
        for w in (self.reason, self.grade, self.disposition, self.comment, self.buttons):
            w.setEnabled(not saving)

    def _saved(self) -> None:
        self._set_saving(False)
        super().accept()

    def _save_failed(self, message: str) -> None:
        self._set_saving(False)
        self._failure = message
        self._render_problem()
        self.comment.setFocus()

    def values(self) -> tuple[str, str, Grade, Disposition]:
        return (self.reason.currentData(), self.comment.text(), Grade(self.grade.currentData()),
                Disposition(self.disposition.currentData()))
