"""Box correction (issue 9): the detector's boxes on each stored view, editable by mouse and keyboard.

Scene coordinates are the stored image's pixel coordinates (the image sits at the origin unscaled; the view
zooms to fit), so a box's rectangle is directly its ``box_xyxy``. The dialog only collects the corrected set
and a reason; the queue writes it through ``station.users.correct_boxes`` on the worker (an override record).

Mouse: drag a box to move it, drag a corner of the selected box to resize it, drag on empty image area (or
press N, then drag anywhere) to add one. Keyboard: Tab / Shift+Tab select the next / previous box, arrows
nudge it (Shift: 10 px), Ctrl+arrows resize it (its lower-right corner), Delete removes it, N adds by drag.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from PyQt6.QtCore import QPointF, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QBrush, QColor, QImage, QKeyEvent, QPainter, QPainterPath, QPen, QPixmap
from PyQt6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFormLayout, QGraphicsItem,
                             QGraphicsPixmapItem, QGraphicsRectItem, QGraphicsScene, QGraphicsSceneMouseEvent,
                             QGraphicsSimpleTextItem, QGraphicsView, QHBoxLayout, QLabel, QLineEdit, QPushButton,
                             QStyleOptionGraphicsItem, QTabWidget, QVBoxLayout, QWidget)

from station.users import BOX_REASONS
from ui.i18n import name, tr
from ui.images import finding_colour

MIN_SIDE = 4.0  # px: a smaller drag is a click, not a box
HANDLE_PX = 9.0  # screen pixels around a corner that grab it for resizing
NUDGE, NUDGE_FAST = 1.0, 10.0


def _colour(cls: str) -> QColor:
    b, g, r = finding_colour(cls)
    return QColor(r, g, b)


class BoxItem(QGraphicsRectItem):
    """One box: its rectangle is local (0, 0, w, h) and its position the top-left corner in image pixels."""

    def __init__(self, cls: str, xyxy: Sequence[float]) -> None:
        x1, y1, x2, y2 = (float(v) for v in xyxy)
        super().__init__(0.0, 0.0, x2 - x1, y2 - y1)
        self.cls = cls
        self._corner: str | None = None  # "tl", "tr", "bl", "br" while a corner is dragged
        self.setFlags(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable | QGraphicsItem.GraphicsItemFlag.ItemIsMovable
                      | QGraphicsItem.GraphicsItemFlag.ItemIsFocusable
                      | QGraphicsItem.GraphicsItemFlag.ItemSendsGeometryChanges)
        self.setAcceptHoverEvents(True)
        self.label = QGraphicsSimpleTextItem(self)
        self.label.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setPos(x1, y1)
        self.set_class(cls)

    # -- geometry in image pixels
    def xyxy(self) -> tuple[float, float, float, float]:
        r = self.rect().translated(self.pos())
        return (round(r.left(), 1), round(r.top(), 1), round(r.right(), 1), round(r.bottom(), 1))

    def to_json(self, view: str) -> dict:
        return {"view": view, "class": self.cls, "box_xyxy": list(self.xyxy())}

    def set_class(self, cls: str) -> None:
        self.cls = cls
        self.label.setText(name("finding", cls))
        self.label.setBrush(QBrush(_colour(cls)))
        self.update()

    def set_xyxy(self, x1: float, y1: float, x2: float, y2: float) -> None:
        """Set the box, clipped to the image and at least MIN_SIDE on each side."""
        bounds = self._bounds()
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        if bounds is not None:
            x1, y1 = max(bounds.left(), x1), max(bounds.top(), y1)
            x2, y2 = min(bounds.right(), x2), min(bounds.bottom(), y2)
        x2, y2 = max(x2, x1 + MIN_SIDE), max(y2, y1 + MIN_SIDE)
        self.prepareGeometryChange()
        self.setRect(0.0, 0.0, x2 - x1, y2 - y1)
        self.setPos(x1, y1)

    def nudge(self, dx: float, dy: float) -> None:
        self.setPos(self.pos() + QPointF(dx, dy))  # itemChange keeps it on the image

    def grow(self, dw: float, dh: float) -> None:
        x1, y1, x2, y2 = self.xyxy()
        self.set_xyxy(x1, y1, x2 + dw, y2 + dh)

    def rescaled(self) -> None:
        """The view's zoom changed: the handles (fixed screen size) change the bounding rectangle."""
        self.prepareGeometryChange()

    def _bounds(self) -> QRectF | None:
        scene = self.scene()
        return scene.image_rect if isinstance(scene, BoxScene) else None

    def _scale(self) -> float:
        views = self.scene().views() if self.scene() is not None else []
        return views[0].transform().m11() if views else 1.0

    # -- Qt hooks
    def itemChange(self, change, value):
        if change == QGraphicsItem.GraphicsItemChange.ItemPositionChange and self._bounds() is not None:
            b, r = self._bounds(), self.rect()
            x = min(max(value.x(), b.left()), b.right() - r.width())
            y = min(max(value.y(), b.top()), b.bottom() - r.height())
            return QPointF(x, y)
        return super().itemChange(change, value)

    def _corner_at(self, local: QPointF) -> str | None:
        grab = HANDLE_PX / max(self._scale(), 1e-6)
        r = self.rect()
        for key, p in (("tl", r.topLeft()), ("tr", r.topRight()), ("bl", r.bottomLeft()), ("br", r.bottomRight())):
            if abs(local.x() - p.x()) <= grab and abs(local.y() - p.y()) <= grab:
                return key
        return None

    def boundingRect(self) -> QRectF:
        pad = HANDLE_PX / max(self._scale(), 1e-6) if self.scene() is not None else HANDLE_PX
        return self.rect().adjusted(-pad, -pad, pad, pad)

    def shape(self) -> QPainterPath:
        path = QPainterPath()  # the corner handles stick out of the rectangle: they must be clickable too
        path.addRect(self.boundingRect())
        return path

    def hoverMoveEvent(self, event) -> None:
        corner = self._corner_at(event.pos()) if self.isSelected() else None
        self.setCursor(Qt.CursorShape.SizeFDiagCursor if corner in ("tl", "br") else
                       Qt.CursorShape.SizeBDiagCursor if corner in ("tr", "bl") else Qt.CursorShape.SizeAllCursor)
        super().hoverMoveEvent(event)

    def mousePressEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        self._corner = self._corner_at(event.pos()) if self.isSelected() else None
        if self._corner is not None and event.button() == Qt.MouseButton.LeftButton:
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        if self._corner is None:
            super().mouseMoveEvent(event)
            return
        x1, y1, x2, y2 = self.xyxy()
        p = event.scenePos()
        if "l" in self._corner:
            x1 = p.x()
        else:
            x2 = p.x()
        if "t" in self._corner:
            y1 = p.y()
        else:
            y2 = p.y()
        self.set_xyxy(x1, y1, x2, y2)

    def mouseReleaseEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        self._corner = None
        super().mouseReleaseEvent(event)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        colour = _colour(self.cls)
        pen = QPen(colour, 3 if self.isSelected() else 2)
        pen.setCosmetic(True)  # the same width at any zoom
        painter.setPen(pen)
        painter.setBrush(QColor(colour.red(), colour.green(), colour.blue(), 40 if self.isSelected() else 0))
        painter.drawRect(self.rect())
        if self.isSelected():
            s = HANDLE_PX / max(self._scale(), 1e-6)
            painter.setBrush(QBrush(QColor("white")))
            r = self.rect()
            for p in (r.topLeft(), r.topRight(), r.bottomLeft(), r.bottomRight()):
                painter.drawRect(QRectF(p.x() - s / 2, p.y() - s / 2, s, s))


class BoxScene(QGraphicsScene):
    """One view's image and its boxes; a drag on empty image area (or any drag in add mode) draws a new box."""

    boxes_changed = pyqtSignal()

    def __init__(self, view_name: str, image: QImage, parent=None) -> None:
        super().__init__(parent)
        self.view_name = view_name
        self.image_rect = QRectF(0, 0, image.width(), image.height())
        self.setSceneRect(self.image_rect)
        self.pixmap = QGraphicsPixmapItem(QPixmap.fromImage(image))
        self.pixmap.setZValue(-1)
        self.addItem(self.pixmap)
        self.box_items: list[BoxItem] = []
        self.add_mode = False
        self.new_class = ""  # the class a drawn box gets (the dialog's current class)
        self._drawing: BoxItem | None = None
        self._origin = QPointF()

    def add_box(self, cls: str, xyxy: Sequence[float]) -> BoxItem:
        item = BoxItem(cls, xyxy)
        self.addItem(item)
        item.set_xyxy(*xyxy)  # clipped to the image now that it is in the scene
        self.box_items.append(item)
        self.boxes_changed.emit()
        return item

    def remove_box(self, item: BoxItem) -> None:
        self.box_items.remove(item)
        self.removeItem(item)
        self.boxes_changed.emit()

    def select_only(self, item: BoxItem | None) -> None:
        self.clearSelection()
        if item is not None:
            item.setSelected(True)
            self.setFocusItem(item)

    def selected_boxes(self) -> list[BoxItem]:
        return [b for b in self.box_items if b.isSelected()]

    def mousePressEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        under = [i for i in self.items(event.scenePos()) if isinstance(i, BoxItem)]
        p = event.scenePos()
        if (event.button() == Qt.MouseButton.LeftButton and (self.add_mode or not under)
                and self.image_rect.contains(p) and self.new_class):
            self._origin = p
            self._drawing = self.add_box(self.new_class, (p.x(), p.y(), p.x() + MIN_SIDE, p.y() + MIN_SIDE))
            self.select_only(self._drawing)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        if self._drawing is not None:
            p = event.scenePos()
            self._drawing.set_xyxy(self._origin.x(), self._origin.y(), p.x(), p.y())
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        if self._drawing is not None:
            item, self._drawing = self._drawing, None
            p = event.scenePos()
            if abs(p.x() - self._origin.x()) < MIN_SIDE or abs(p.y() - self._origin.y()) < MIN_SIDE:
                self.remove_box(item)  # a click, not a drag
            else:
                item.set_xyxy(self._origin.x(), self._origin.y(), p.x(), p.y())
            self.add_mode = False
            for v in self.views():
                v.viewport().unsetCursor()
            event.accept()
            return
        super().mouseReleaseEvent(event)


class BoxView(QGraphicsView):
    """The image zoomed to fit, with the keyboard handling of the boxes."""

    def __init__(self, scene: BoxScene, parent: QWidget | None = None) -> None:
        super().__init__(scene, parent)
        self.box_scene = scene
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(480, 360)
        self.setObjectName("boxView")

    def fit(self) -> None:
        self.fitInView(self.box_scene.image_rect, Qt.AspectRatioMode.KeepAspectRatio)
        for b in self.box_scene.box_items:
            b.rescaled()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.fit()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.fit()

    def focusNextPrevChild(self, next_: bool) -> bool:
        """Tab walks the boxes; past the last (or before the first) focus leaves the image as usual."""
        boxes, sel = self.box_scene.box_items, self.box_scene.selected_boxes()
        if self.hasFocus() and boxes:
            i = boxes.index(sel[0]) if sel else (-1 if next_ else len(boxes))
            j = i + (1 if next_ else -1)
            if 0 <= j < len(boxes):
                self.box_scene.select_only(boxes[j])
                return True
            self.box_scene.clearSelection()
        return super().focusNextPrevChild(next_)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key, mods = event.key(), event.modifiers()
        sel = self.box_scene.selected_boxes()
        arrows = {Qt.Key.Key_Left: (-1, 0), Qt.Key.Key_Right: (1, 0), Qt.Key.Key_Up: (0, -1),
                  Qt.Key.Key_Down: (0, 1)}
        if key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and sel:
            for b in sel:
                self.box_scene.remove_box(b)
        elif key in arrows and sel:
            dx, dy = arrows[key]
            step = NUDGE_FAST if mods & Qt.KeyboardModifier.ShiftModifier else NUDGE
            for b in sel:
                if mods & Qt.KeyboardModifier.ControlModifier:
                    b.grow(dx * step, dy * step)
                else:
                    b.nudge(dx * step, dy * step)
        elif key == Qt.Key.Key_N:
            self.box_scene.add_mode = True  # the next drag draws a box, even over another one
            self.viewport().setCursor(Qt.CursorShape.CrossCursor)
        elif key == Qt.Key.Key_Escape and self.box_scene.add_mode:
            self.box_scene.add_mode = False
            self.viewport().unsetCursor()
        else:
            super().keyPressEvent(event)
            return
        event.accept()


class BoxEditorDialog(QDialog):
    """Every stored view with its boxes; a class combo for the selected box; reason and comment to save."""

    def __init__(self, views: Iterable[tuple[str, QImage]], boxes: Iterable[dict], classes: Sequence[str],
                 title: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("boxEditor")
        self.record_title = title
        self.classes = tuple(classes)
        boxes = list(boxes)
        self.tabs = QTabWidget()
        self.scenes: list[BoxScene] = []
        self.views: list[BoxView] = []
        for view_name, image in views:
            scene = BoxScene(view_name, image, self)
            for b in boxes:
                if b["view"] == view_name:
                    scene.add_box(b["class"], b["box_xyxy"])
            scene.selectionChanged.connect(self._selection_changed)
            scene.boxes_changed.connect(self._update_count)
            bv = BoxView(scene)
            self.scenes.append(scene)
            self.views.append(bv)
            self.tabs.addTab(bv, "")
        self.tabs.currentChanged.connect(lambda _=0: self._selection_changed())

        self.cls = QComboBox()
        self.cls.setObjectName("boxClass")
        for c in self.classes:
            self.cls.addItem(name("finding", c), c)
        self.cls.currentIndexChanged.connect(self._class_chosen)
        self.cls_label = QLabel()
        self.add_button = QPushButton()
        self.add_button.clicked.connect(self.add_box)
        self.delete_button = QPushButton()
        self.delete_button.clicked.connect(self.delete_selected)
        self.count = QLabel()
        self.help = QLabel()
        self.help.setWordWrap(True)
        side = QVBoxLayout()
        side.addWidget(self.cls_label)
        side.addWidget(self.cls)
        side.addWidget(self.add_button)
        side.addWidget(self.delete_button)
        side.addWidget(self.count)
        side.addWidget(self.help)
        side.addStretch(1)
        upper = QHBoxLayout()
        upper.addWidget(self.tabs, 1)
        upper.addLayout(side)

        self.reason = QComboBox()
        self.reason.setObjectName("boxReason")
        self.reason.currentIndexChanged.connect(lambda _=0: self._update_save())
        self.comment = QLineEdit()
        self.comment.textChanged.connect(lambda _="": self._update_save())
        self.form_labels = [QLabel(), QLabel()]
        form = QFormLayout()
        form.addRow(self.form_labels[0], self.reason)
        form.addRow(self.form_labels[1], self.comment)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(upper, 1)
        lay.addLayout(form)
        lay.addWidget(self.buttons)
        self.resize(1000, 700)
        self.retranslate()
        self._selection_changed()
        if self.views:
            self.views[0].setFocus()

    def retranslate(self) -> None:
        self.setWindowTitle(tr("Correct boxes") + (f" · {self.record_title}" if self.record_title else ""))
        for i, scene in enumerate(self.scenes):
            self.tabs.setTabText(i, name("view", scene.view_name))
            for b in scene.box_items:
                b.set_class(b.cls)  # the label in the current language
        self.cls_label.setText(tr("Class of the selected box (new boxes get it too)"))
        for i, c in enumerate(self.classes):
            self.cls.setItemText(i, name("finding", c))
        self.add_button.setText(tr("Add box"))
        self.add_button.setToolTip(tr("Add a box in the middle of the image, or press N and drag on the image"))
        self.delete_button.setText(tr("Delete box"))
        self.delete_button.setToolTip(tr("Delete the selected box (Delete key)"))
        self.help.setText(tr("Drag a box to move it, drag its corners to resize it, drag on empty image to add one "
                             "(N, then drag: anywhere). Tab selects the next box, arrow keys move it (Shift: 10 "
                             "pixels), Ctrl+arrow keys resize it, Delete removes it."))
        current = self.reason.currentData()
        self.reason.blockSignals(True)
        self.reason.clear()
        self.reason.addItem(tr("Choose a reason"), None)
        for code in BOX_REASONS:
            self.reason.addItem(name("box_reason", code), code)
        self.reason.setCurrentIndex(max(0, self.reason.findData(current)) if current else 0)
        self.reason.blockSignals(False)
        for label, text in zip(self.form_labels, ("Reason", "Comment")):
            label.setText(tr(text))
        self.comment.setPlaceholderText(tr("Why (required for Other)"))
        self.buttons.button(QDialogButtonBox.StandardButton.Save).setText(tr("Save correction"))
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setText(tr("Cancel"))
        self._update_count()
        self._update_save()

    # -- state
    def current_scene(self) -> BoxScene | None:
        i = self.tabs.currentIndex()
        return self.scenes[i] if 0 <= i < len(self.scenes) else None

    def boxes(self) -> list[dict]:
        """The complete corrected set, every view, in image pixels."""
        return [b.to_json(s.view_name) for s in self.scenes for b in s.box_items]

    def values(self) -> tuple[str, str, list[dict]]:
        return self.reason.currentData(), self.comment.text().strip(), self.boxes()

    def _update_save(self) -> None:
        code = self.reason.currentData()
        ok = code is not None and (code != "other" or bool(self.comment.text().strip()))
        self.buttons.button(QDialogButtonBox.StandardButton.Save).setEnabled(ok)

    def _update_count(self) -> None:
        self.count.setText(tr("{n} box(es) in all views", n=sum(len(s.box_items) for s in self.scenes)))
        scene = self.current_scene()
        self.delete_button.setEnabled(bool(scene and scene.selected_boxes()))

    def _selection_changed(self) -> None:
        scene = self.current_scene()
        sel = scene.selected_boxes() if scene else []
        if sel:
            self.cls.blockSignals(True)
            i = self.cls.findData(sel[0].cls)
            if i < 0:  # a class the current model does not know (an older model's box): keep it selectable
                self.cls.addItem(sel[0].cls, sel[0].cls)
                i = self.cls.count() - 1
            self.cls.setCurrentIndex(i)
            self.cls.blockSignals(False)
        for s in self.scenes:
            s.new_class = self.cls.currentData() or ""
        self._update_count()

    def _class_chosen(self) -> None:
        cls = self.cls.currentData()
        for s in self.scenes:
            s.new_class = cls or ""
        scene = self.current_scene()
        for b in scene.selected_boxes() if scene else []:
            b.set_class(cls)

    # -- actions
    def add_box(self) -> None:
        """A box in the middle of the current view (a quarter of its size), selected to move or resize by keys."""
        scene = self.current_scene()
        if scene is None or not self.cls.currentData():
            return
        r = scene.image_rect
        w, h = r.width() / 4, r.height() / 4
        item = scene.add_box(self.cls.currentData(), (r.center().x() - w / 2, r.center().y() - h / 2,
                                                      r.center().x() + w / 2, r.center().y() + h / 2))
        scene.select_only(item)
        self.views[self.tabs.currentIndex()].setFocus()

    def delete_selected(self) -> None:
        scene = self.current_scene()
        for b in scene.selected_boxes() if scene else []:
            scene.remove_box(b)
