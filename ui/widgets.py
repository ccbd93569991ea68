"""Small shared widgets: image tiles, data labels, the override dialog."""

from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QImage, QPixmap
from PyQt6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFormLayout, QFrame, QLabel, QLineEdit,
                             QVBoxLayout, QWidget)

from station.domain import Disposition, Grade
from station.users import OVERRIDE_REASONS
from ui.i18n import name, tr


def data_label(text: str = "", parent: QWidget | None = None) -> QLabel:
    """A label that shows data (ids, codes), not UI text: the translation test skips it."""
    label = QLabel(text, parent)
    label.setProperty("i18n_data", True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


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
        self.caption.setProperty("state", state)  # "", "ok", "bad": styled by the theme
        self.caption.style().unpolish(self.caption)
        self.caption.style().polish(self.caption)


class OverrideDialog(QDialog):
    """Reason code, new grade and disposition, comment. Tab between fields, Enter to confirm, Esc to cancel."""

    def __init__(self, grade: str, disposition: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("overrideDialog")
        self.original_grade = grade
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
        self.form = QFormLayout()
        self.labels = [QLabel(), QLabel(), QLabel(), QLabel()]
        for label, field in zip(self.labels, (self.reason, self.grade, self.disposition, self.comment)):
            self.form.addRow(label, field)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(self.form)
        # Why Save was refused, shown in the dialog so the typed fields stay as they are.
        self.error = QLabel()
        self.error.setObjectName("overrideError")
        self.error.setWordWrap(True)
        self.error.hide()
        lay.addWidget(self.error)
        lay.addWidget(self.buttons)
        self.reason.setFocus()
        self.retranslate()

    def retranslate(self) -> None:
        self.setWindowTitle(tr("Override the decision"))
        for label, text in zip(self.labels, ("Reason", "Grade", "Disposition", "Comment")):
            label.setText(tr(text))
        self.comment.setPlaceholderText(tr("Why (required for Other)"))
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText(tr("Save override"))
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setText(tr("Cancel"))

    def accept(self) -> None:
        # "Wrong grade" with the same grade and no comment changes nothing, yet the record is permanent:
        # refuse it here (F8, Down, Enter reaches this in three keys) and say what would make it meaningful.
        if (self.reason.currentData() == "wrong_grade" and self.grade.currentData() == self.original_grade
                and not self.comment.text().strip()):
            self.error.setText(tr("Wrong grade needs a different grade or a comment"))
            self.error.show()
            self.grade.setFocus()
            return
        super().accept()

    def values(self) -> tuple[str, str, Grade, Disposition]:
        return (self.reason.currentData(), self.comment.text(), Grade(self.grade.currentData()),
                Disposition(self.disposition.currentData()))
