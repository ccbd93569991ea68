"""Drawing primitives of the independent generator: colours, masks, noise, strokes, printed text and panels."""

from __future__ import annotations

import math

import cv2
import numpy as np

LETTERS = np.array(list("ABCDEFGHJKLMNPRSTUVWXYZ0123456789"))
FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX,
         cv2.FONT_HERSHEY_PLAIN)


def U(rng, a: float, b: float) -> float:
    return float(rng.uniform(a, b))


def bgr(r: float, g: float, b: float) -> np.ndarray:
    return np.array([b, g, r], np.float32)


def hsv_colour(rng, hue=None, sat=(0.3, 0.9), val=(0.35, 0.95)) -> np.ndarray:
    h = U(rng, 0, 180) if hue is None else hue
    px = np.array([[[h, U(rng, *sat) * 255, U(rng, *val) * 255]]], np.uint8)
    return cv2.cvtColor(px, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32) / 255


def paint(img: np.ndarray, mask, colour, opacity: float = 1.0) -> None:
    """Alpha-blend a colour (or an image of the same size) into ``img`` through ``mask`` (uint8 or float)."""
    a = mask.astype(np.float32) / 255 if mask.dtype == np.uint8 else mask.astype(np.float32)
    a = (a * opacity)[..., None]
    img *= 1 - a
    img += a * np.asarray(colour, np.float32)


def fill_poly(mask: np.ndarray, pts, value: int = 255) -> None:
    p = np.round(np.asarray(pts, np.float64) * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(mask, [p], value, cv2.LINE_AA, shift=4)


def polyline(mask: np.ndarray, pts, thickness: int = 1, value: int = 255, closed: bool = False) -> None:
    p = np.round(np.asarray(pts, np.float64) * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(mask, [p], closed, value, max(1, int(thickness)), cv2.LINE_AA, shift=4)


def smooth_noise(rng, h: int, w: int, cell: float) -> np.ndarray:
    """Value noise in [-1, 1], features about ``cell`` pixels wide."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    g = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)


def blob_polygon(rng, cx: float, cy: float, rx: float, ry: float, rough: float = 0.25, n: int = 28,
                 angle: float = 0.0) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    k = rng.integers(2, 5)
    r = 1 + rough * (0.6 * np.sin(k * t + U(rng, 0, 6.28)) + 0.4 * rng.uniform(-1, 1, n))
    x, y = rx * r * np.cos(t), ry * r * np.sin(t)
    ca, sa = math.cos(angle), math.sin(angle)
    return np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], 1)


def pick_point(rng, mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    k = int(rng.integers(len(ys)))
    return float(xs[k]), float(ys[k])


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    if r <= 0:
        return mask
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.erode(mask.astype(np.uint8), k) > 0


def random_text(rng, n: int) -> str:
    return "".join(rng.choice(LETTERS, n))


def text_marks(rng, img, x0, y0, x1, y1, colour, rows=None) -> None:
    """Rows of text-like marks (Hershey letters, dash runs) inside a rectangle."""
    h, w = y1 - y0, x1 - x0
    if h < 6 or w < 10:
        return
    rows = rows or int(rng.integers(1, 5))
    m = np.zeros(img.shape[:2], np.uint8)
    row_h = h / rows
    for r in range(rows):
        cap = row_h * U(rng, 0.35, 0.7)
        font = FONTS[int(rng.integers(len(FONTS)))]
        scale = max(0.2, cap / 22.0)
        thick = 1 if cap < 14 or rng.random() < 0.6 else 2
        y = int(y0 + row_h * (r + 0.5) + cap / 2)
        if rng.random() < 0.25:  # fine print as dash runs
            x = x0 + U(rng, 0, 0.1) * w
            while x < x1 - 4:
                seg = U(rng, 2, 8) * max(1.0, cap / 6)
                cv2.line(m, (int(x), y - int(cap / 3)), (int(min(x + seg, x1)), y - int(cap / 3)), 255,
                         max(1, int(cap / 4)), cv2.LINE_AA)
                x += seg + U(rng, 1.5, 4)
            continue
        s = random_text(rng, int(rng.integers(3, 12)))
        while len(s) > 1 and cv2.getTextSize(s, font, scale, thick)[0][0] > w * 0.95:
            s = s[:-1]
        tw = cv2.getTextSize(s, font, scale, thick)[0][0]
        x = int(x0 + (w - tw) * (0.5 if rng.random() < 0.5 else U(rng, 0, 1)))
        cv2.putText(m, s, (x, y), font, scale, 255, thick, cv2.LINE_AA)
    paint(img, m, colour)


def print_panel(rng, img, x0, y0, x1, y1, base, mask=None) -> None:
    """A printed panel: background, colour band, logo, text rows, maybe a barcode."""
    x0, y0, x1, y1 = int(x0), int(y0), int(x1), int(y1)
    h, w = y1 - y0, x1 - x0
    if h < 8 or w < 8:
        return
    region = np.zeros(img.shape[:2], np.uint8)
    region[y0:y1, x0:x1] = 255
    if mask is not None:
        region = np.minimum(region, mask)
    layer = img.copy()
    layer[y0:y1, x0:x1] = base
    ink = hsv_colour(rng, sat=(0.5, 1.0), val=(0.2, 0.9))
    ink2 = hsv_colour(rng, sat=(0.4, 1.0), val=(0.3, 1.0))
    m = np.zeros(img.shape[:2], np.uint8)
    if rng.random() < 0.7:
        by = y0 + U(rng, 0, 0.7) * h
        bh = U(rng, 0.1, 0.35) * h
        if rng.random() < 0.5:
            cv2.rectangle(m, (x0, int(by)), (x1, int(by + bh)), 255, -1)
        else:  # swoosh band
            xs = np.linspace(x0, x1, 24)
            top = by + np.sin(np.linspace(0, U(rng, 1, 3.5), 24)) * bh * 0.6
            fill_poly(m, np.concatenate([np.stack([xs, top], 1), np.stack([xs[::-1], top[::-1] + bh], 1)]))
        paint(layer, m, ink2)
    m[:] = 0
    lx, ly, lr = x0 + U(rng, 0.2, 0.8) * w, y0 + U(rng, 0.2, 0.6) * h, U(rng, 0.08, 0.2) * min(w, h)
    shape = rng.integers(4)
    if shape == 0:
        cv2.circle(m, (int(lx), int(ly)), max(2, int(lr)), 255, -1, cv2.LINE_AA)
    elif shape == 1:
        fill_poly(m, [(lx, ly - lr), (lx + lr, ly + lr * 0.8), (lx - lr, ly + lr * 0.8)])
    elif shape == 2:
        t = np.linspace(0, 2 * np.pi, 11)[:-1]
        rr = np.where(np.arange(10) % 2 == 0, lr, lr * 0.45)
        fill_poly(m, np.stack([lx + rr * np.sin(t), ly - rr * np.cos(t)], 1))
    else:
        cv2.ellipse(m, (int(lx), int(ly)), (max(2, int(lr * 1.5)), max(1, int(lr * 0.7))), U(rng, -30, 30), 0, 360,
                    255, -1, cv2.LINE_AA)
    paint(layer, m, ink)
    text_col = ink if rng.random() < 0.5 else bgr(0.1, 0.1, 0.12)
    text_marks(rng, layer, x0 + 0.06 * w, y0 + (0.62 if ly < y0 + 0.45 * h else 0.05) * h, x1 - 0.06 * w,
               y0 + (0.95 if ly < y0 + 0.45 * h else 0.4) * h, text_col)
    if rng.random() < 0.4 and w > 30:
        m[:] = 0
        bx, bw_, bh_ = x0 + U(rng, 0.05, 0.5) * w, U(rng, 0.25, 0.4) * w, U(rng, 0.1, 0.18) * h
        byy = y1 - bh_ - 0.05 * h
        cv2.rectangle(layer, (int(bx - 2), int(byy - 2)), (int(bx + bw_ + 2), int(byy + bh_ + 2)),
                      tuple(float(v) for v in bgr(0.96, 0.96, 0.94)), -1)
        x = bx
        while x < bx + bw_:
            lw = rng.choice([1, 1, 2, 3])
            if rng.random() < 0.6:
                cv2.rectangle(m, (int(x), int(byy)), (int(x + lw - 1), int(byy + bh_)), 255, -1)
            x += lw + rng.choice([1, 2])
        paint(layer, m, bgr(0.05, 0.05, 0.05))
    paint(img, region, layer)


def walk(rng, x, y, ang, length, step, turn):
    pts = [(x, y)]
    n = max(2, int(length / step))
    for _ in range(n):
        ang += rng.normal(0, turn)
        x += step * math.cos(ang)
        y += step * math.sin(ang)
        pts.append((x, y))
    return pts, ang
