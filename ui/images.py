"""Frames to QImage, and detections drawn on them. QImage (not QPixmap) so the worker thread can build them."""

from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np
from PyQt6.QtGui import QImage

# BGR colours per finding family: damage red, soiling amber, packaging blue, other magenta.
_COLOURS = {"scratch": (40, 40, 230), "dent": (40, 40, 230), "crack": (0, 0, 200), "tear": (40, 40, 230),
            "stain": (0, 170, 255), "leak": (0, 170, 255), "wear": (0, 170, 255), "foreign_object": (0, 170, 255),
            "seal_broken": (230, 120, 0), "package_damage": (230, 120, 0)}


def finding_colour(kind: str) -> tuple[int, int, int]:
    """BGR colour of a finding kind's boxes (the bench overlay and the box editor draw the same)."""
    return _COLOURS.get(kind, (200, 0, 200))


def to_qimage(image: np.ndarray) -> QImage:
    """BGR or grey uint8 -> an owned QImage (safe to pass between threads)."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    rgb = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    h, w, _ = rgb.shape
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def draw_boxes(image: np.ndarray, boxes: Iterable[tuple[str, float, tuple[float, float, float, float]]]) -> np.ndarray:
    """Numbered boxes (the caption under the image names each number in the UI's language)."""
    out = image.copy()
    t = max(2, round(out.shape[1] / 320))
    for n, (kind, _score, (x1, y1, x2, y2)) in enumerate(boxes, start=1):
        colour = finding_colour(kind)
        p1, p2 = (int(x1), int(y1)), (int(x2), int(y2))
        cv2.rectangle(out, p1, p2, colour, t)
        label = str(n)
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4 * t, t)
        y = max(th + 4, p1[1])
        cv2.rectangle(out, (p1[0], y - th - 4), (p1[0] + tw + 4, y), colour, -1)
        cv2.putText(out, label, (p1[0] + 2, y - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * t, (255, 255, 255), t)
    return out


def thumbnail(image: np.ndarray, max_side: int = 480) -> np.ndarray:
    h, w = image.shape[:2]
    f = max_side / max(h, w)
    return image if f >= 1 else cv2.resize(image, (int(w * f), int(h * f)), interpolation=cv2.INTER_AREA)


def heat_overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``heatmap`` (float [0, 1], the image's size) colour-mapped (blue = same as the reference, red = differs)
    and blended over the BGR image; where nothing differs the image shows through untinted."""
    from vision.difference import heatmap_u8

    grey = heatmap_u8(heatmap)
    colour = cv2.applyColorMap(grey, cv2.COLORMAP_JET)
    weight = (alpha * np.clip(heatmap, 0.0, 1.0) ** 0.5)[..., None]  # faint differences stay faint
    return (image.astype(np.float32) * (1 - weight) + colour.astype(np.float32) * weight).astype(np.uint8)
