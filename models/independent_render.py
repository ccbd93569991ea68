"""Independent generator of labelled defect images, for evaluating the detector off its training style.

Written from a prose description of the classes and the label convention only (not from the training
renderer), so its look is deliberately different: every product is painted on a flat "product sheet" of
its own (cartons in three-quarter view, cylindrical bottles, jars and cans with labels, pillow pouches
with heat seals, folded woven fabric, electronics with glass screens, plastic toys), defects are painted
on that sheet where the material allows them, and the sheet is then placed in a bench scene with a
perspective homography, a soft drop shadow, directional light with falloff, a colour cast, specular
glints and camera defects (defocus or motion blur, vignetting, sensor noise, JPEG at varied quality).

Each defect's box is the tight box around the pixels it changed: the difference between the sheet before
and after painting it (colour and silhouette), carried into the scene by the same homography; puddles and
foreign objects are painted in the scene and diffed there.

    python -m models.independent_render OUT --images N --seed S [--size 416] [--split test]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

GENERATOR = "models.independent_render"
CLASSES = ("scratch", "dent", "crack", "tear", "stain", "leak", "wear", "seal_broken", "package_damage",
           "foreign_object")
CLS = {name: i for i, name in enumerate(CLASSES)}
SPLITS = ("train", "val", "test")
EMPTY_FRACTION = 0.15
MIN_PIXELS = 6
DIFF_THRESHOLD = 0.045  # a pixel counts as changed when a channel moved by more than this (0..1 scale)

# Which defects make physical sense on which product kind.
KIND_CLASSES: dict[str, frozenset[str]] = {
    "carton": frozenset({"scratch", "tear", "stain", "wear", "seal_broken", "package_damage", "foreign_object"}),
    "bottle": frozenset({"scratch", "dent", "crack", "stain", "leak", "wear", "seal_broken", "foreign_object"}),
    "jar": frozenset({"scratch", "crack", "stain", "leak", "wear", "seal_broken", "foreign_object"}),
    "can": frozenset({"scratch", "dent", "stain", "leak", "wear", "foreign_object"}),
    "pouch": frozenset({"scratch", "tear", "stain", "leak", "wear", "seal_broken", "package_damage",
                        "foreign_object"}),
    "garment": frozenset({"tear", "stain", "wear", "foreign_object"}),
    "electronics": frozenset({"scratch", "dent", "crack", "stain", "wear", "seal_broken", "foreign_object"}),
    "toy": frozenset({"scratch", "dent", "crack", "stain", "wear", "foreign_object"}),
}
KINDS = tuple(KIND_CLASSES)
# Painting order on one product (a puncture before the stain that runs over it, foreign objects last).
APPLY_ORDER = ("package_damage", "dent", "crack", "tear", "seal_broken", "wear", "scratch", "stain", "leak",
               "foreign_object")
UPRIGHT = {"bottle", "jar", "can", "pouch"}
LETTERS = np.array(list("ABCDEFGHJKLMNPRSTUVWXYZ0123456789"))
FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX,
         cv2.FONT_HERSHEY_PLAIN)


class UsageError(ValueError):
    """Bad command-line arguments or output folder."""


# --------------------------------------------------------------------------------------------- helpers


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


# --------------------------------------------------------------------------------------------- products


@dataclass
class Product:
    kind: str
    material: str
    rgb: np.ndarray  # float32 HxWx3, BGR 0..1
    alpha: np.ndarray  # float32 HxW
    rigid: np.ndarray | None = None  # bool, where a dent/crack can happen
    tearable: np.ndarray | None = None  # bool, fabric/paper/film
    seal: dict | None = None  # {"mask": bool, "under": colour, "type": str, "axis": radians}
    sources: list = field(default_factory=list)  # leak start points
    corners: list = field(default_factory=list)  # silhouette corners (x, y) for crushing
    base: tuple = (0.0, 0.0)  # where it stands (local coords)
    inner: np.ndarray = field(default_factory=lambda: bgr(0.12, 0.1, 0.08))
    screen: np.ndarray | None = None
    light: float = 0.0

    @property
    def surface(self) -> np.ndarray:
        return self.alpha > 0.6


def profile_alpha(h: int, w: int, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Alpha of a body of revolution from per-row half widths; also the normalised across-coordinate."""
    cx = w / 2
    x = np.arange(w, dtype=np.float32)[None, :] + 0.5 - cx
    hw = half.astype(np.float32)[:, None]
    alpha = np.clip(hw - np.abs(x) + 0.5, 0, 1)
    u = np.clip(x / np.maximum(hw, 1), -1, 1)
    return alpha, u


def cylinder_shade(rgb, alpha, u, strength: float, glint_at: float, glint: float, mask=None) -> None:
    shade = (1 - strength) + strength * np.sqrt(np.clip(1 - u ** 2, 0, 1))
    hl = glint * np.exp(-((u - glint_at) / 0.09) ** 2)
    if mask is not None:
        shade = np.where(mask, shade, 1.0)
        hl = np.where(mask, hl, 0.0)
    rgb *= shade[..., None]
    rgb += (hl * (alpha > 0))[..., None]


def bevel_shade(rgb, alpha, light: float, width: float, strength: float) -> None:
    a = cv2.GaussianBlur(alpha, (0, 0), max(1.0, width))
    gx = cv2.Sobel(a, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(a, cv2.CV_32F, 0, 1, ksize=3)
    s = -(gx * math.cos(light) + gy * math.sin(light)) * strength * width
    rgb *= np.clip(1 + s, 0.5, 1.6)[..., None]


def make_carton(rng, L: float, need: set) -> Product:
    fw = U(rng, 0.5, 0.8)
    fh = U(rng, 0.45, 0.85)
    d = fh * U(rng, 0.12, 0.35)
    e = fw * U(rng, 0.0, 0.3)
    k = L / max(fw + e, fh + d)
    fw, fh, d, e = fw * k, fh * k, d * k, e * k
    W, H = int(math.ceil(fw + e)) + 2, int(math.ceil(fh + d)) + 2
    rgb = np.zeros((H, W, 3), np.float32)
    front = [(0, d), (fw, d), (fw, d + fh), (0, d + fh)]
    top = [(0, d), (e, 0), (fw + e, 0), (fw, d)]
    side = [(fw, d), (fw + e, 0), (fw + e, fh), (fw, d + fh)]
    kraft = rng.random() < 0.45
    base = bgr(U(rng, 0.6, 0.75), U(rng, 0.45, 0.58), U(rng, 0.28, 0.38)) if kraft else \
        hsv_colour(rng, sat=(0.0, 0.6), val=(0.7, 1.0))
    masks = {}
    for name, poly, tone in (("front", front, 1.0), ("top", top, U(rng, 1.05, 1.2)), ("side", side, U(rng, 0.6, 0.8))):
        m = np.zeros((H, W), np.uint8)
        fill_poly(m, poly)
        masks[name] = m
        paint(rgb, m, np.clip(base * tone, 0, 1))
    alpha = np.clip(sum(m.astype(np.float32) for m in masks.values()) / 255, 0, 1)
    # Print on the front and a little on the side.
    if not kraft or rng.random() < 0.6:
        mg = U(rng, 0.04, 0.1)
        panel_base = base if rng.random() < 0.5 else hsv_colour(rng, sat=(0.1, 0.8), val=(0.6, 1.0))
        print_panel(rng, rgb, fw * mg, d + fh * mg, fw * (1 - mg), d + fh * (1 - mg), panel_base, masks["front"])
    else:
        text_marks(rng, rgb, fw * 0.15, d + fh * 0.3, fw * 0.85, d + fh * 0.6, bgr(0.15, 0.12, 0.1), rows=2)
    if e > 12:
        sm = np.zeros((H, W), np.uint8)
        text_marks(rng, sm_img := rgb.copy(), fw + 2, d + fh * 0.3, fw + e - 2, d + fh * 0.7, bgr(0.1, 0.1, 0.1))
        paint(rgb, masks["side"], sm_img)
        del sm
    # Cardboard texture and edge lines.
    tex = smooth_noise(rng, H, W, U(rng, 3, 8)) * 0.04 + smooth_noise(rng, H, W, 30) * 0.04
    rgb *= (1 + tex)[..., None]
    edges = np.zeros((H, W), np.uint8)
    polyline(edges, [(0, d), (fw, d), (fw, d + fh)], 1)
    paint(rgb, edges, base * 0.5, 0.5)
    seal = None
    want_seal = "seal_broken" in need or rng.random() < 0.6
    # Flap seam across the top face, with tape over it.
    seam = np.zeros((H, W), np.uint8)
    polyline(seam, [(e / 2, d / 2), (fw + e / 2, d / 2)], 1)
    paint(rgb, seam, base * 0.45, 0.8)
    if want_seal:
        tm = np.zeros((H, W), np.uint8)
        if rng.random() < 0.6:  # tape along the seam running down over the front
            tw = d * U(rng, 0.25, 0.5)
            down = fh * U(rng, 0.1, 0.25)
            fill_poly(tm, [(e / 2 - 1, d / 2 - tw / 2), (fw + e / 2 + 1, d / 2 - tw / 2),
                           (fw + e / 2 + 1, d / 2 + tw / 2), (e / 2 - 1, d / 2 + tw / 2)])
            stype = "tape"
            axis = 0.0
            if rng.random() < 0.5:
                cx = fw * U(rng, 0.3, 0.7)
                fill_poly(tm, [(cx - tw / 2, d - 1), (cx + tw / 2, d - 1), (cx + tw / 2, d + down),
                               (cx - tw / 2, d + down)])
            tm = np.minimum(tm, (alpha * 255).astype(np.uint8))
        else:  # security sticker across the top edge
            sw, sh = fw * U(rng, 0.12, 0.22), fh * U(rng, 0.12, 0.2)
            cx = fw * U(rng, 0.25, 0.75)
            cv2.rectangle(tm, (int(cx - sw / 2), int(d - sh * 0.4)), (int(cx + sw / 2), int(d + sh * 0.6)), 255, -1)
            stype, axis = "sticker", math.pi / 2
        under = rgb[tm > 128].mean(0) if (tm > 128).any() else base
        tape_col = rng.choice(3)
        colour = (bgr(0.75, 0.6, 0.4), bgr(0.92, 0.92, 0.9), hsv_colour(rng, sat=(0.5, 0.9), val=(0.6, 0.9)))[tape_col]
        paint(rgb, tm, colour, U(rng, 0.55, 0.9))
        if stype == "sticker" or rng.random() < 0.4:
            ys, xs = np.nonzero(tm > 128)
            if len(ys):
                text_marks(rng, rgb, xs.min() + 2, ys.min() + 1, xs.max() - 2, ys.max() - 1, bgr(0.8, 0.1, 0.1), 1)
        gl = np.zeros((H, W), np.uint8)
        gl[tm > 128] = 255
        paint(rgb, cv2.GaussianBlur(gl, (0, 0), 2), bgr(1, 1, 1), 0.12)
        seal = {"mask": tm > 128, "under": under, "type": stype, "axis": axis}
    corners = [(0, d), (e, 0), (fw + e, 0), (fw + e, fh), (fw, d + fh), (0, d + fh)]
    return Product("carton", "paper", np.clip(rgb, 0, 1), alpha, rigid=None, tearable=alpha > 0.6, seal=seal,
                   corners=corners, base=(fw / 2, d + fh), inner=bgr(0.25, 0.18, 0.1) * U(rng, 0.5, 1.0))


def make_bottle(rng, L: float, need: set, kind: str = "bottle") -> Product:
    H = int(L)
    if kind == "jar":
        W = int(L * U(rng, 0.6, 0.85))
        bw = W * 0.96
        lid_h, neck_h, sh_h = H * U(rng, 0.12, 0.18), H * U(rng, 0.02, 0.05), H * U(rng, 0.04, 0.1)
        nw = bw * U(rng, 0.7, 0.85)
        lid_w = nw * 1.06
    elif kind == "can":
        W = int(L * U(rng, 0.45, 0.62))
        bw = W * 0.96
        lid_h, neck_h, sh_h = H * 0.03, H * 0.02, H * 0.04
        nw = bw * 0.88
        lid_w = nw
    else:
        W = int(L * U(rng, 0.28, 0.42))
        bw = W * 0.96
        lid_h, neck_h, sh_h = H * U(rng, 0.06, 0.1), H * U(rng, 0.05, 0.12), H * U(rng, 0.08, 0.2)
        nw = bw * U(rng, 0.28, 0.45)
        lid_w = nw * 1.12
    y = np.arange(H, dtype=np.float32) + 0.5
    half = np.full(H, bw / 2, np.float32)
    half[y < lid_h] = lid_w / 2
    neck = (y >= lid_h) & (y < lid_h + neck_h)
    half[neck] = nw / 2
    sh = (y >= lid_h + neck_h) & (y < lid_h + neck_h + sh_h)
    t = (y[sh] - lid_h - neck_h) / max(sh_h, 1)
    half[sh] = nw / 2 + (bw / 2 - nw / 2) * (0.5 - 0.5 * np.cos(np.pi * t))
    r = min(bw * 0.12, H * 0.05)
    bot = y > H - r
    half[bot] = bw / 2 - r + np.sqrt(np.clip(r ** 2 - (y[bot] - (H - r)) ** 2, 0, None))
    alpha, u = profile_alpha(H, W, half)
    yy = np.repeat(y[:, None], W, 1)
    cap_m = yy < lid_h
    if kind == "can":
        material = "metal"
        body = hsv_colour(rng, sat=(0.4, 1.0), val=(0.4, 0.9))
    elif kind == "jar" or rng.random() < 0.4:
        material = "glass"
        body = (bgr(0.2, 0.4, 0.2), bgr(0.4, 0.25, 0.1), bgr(0.6, 0.7, 0.72), hsv_colour(rng, val=(0.3, 0.7)))[
            int(rng.integers(4))]
    else:
        material = "plastic"
        body = hsv_colour(rng, sat=(0.2, 0.9), val=(0.4, 0.95))
    rgb = np.empty((H, W, 3), np.float32)
    rgb[:] = body
    if material == "glass":  # contents seen through glass, a fill line
        fill = lid_h + neck_h + sh_h * U(rng, 0.0, 1.5)
        content = hsv_colour(rng, sat=(0.3, 1.0), val=(0.15, 0.7))
        cm = (yy > fill).astype(np.float32) * 0.7
        if kind == "jar":
            cm *= 1 + 0.25 * smooth_noise(rng, H, W, U(rng, 4, 12))
        paint(rgb, np.clip(cm, 0, 1), content)
    cap_col = (bgr(0.75, 0.75, 0.78), bgr(0.8, 0.65, 0.3), hsv_colour(rng, sat=(0.5, 1), val=(0.3, 0.9)),
               bgr(0.95, 0.95, 0.95))[int(rng.integers(4))]
    rgb[cap_m] = cap_col
    if kind != "can":
        ridges = (np.sin(np.arange(W) * (2 * np.pi / U(rng, 2.5, 4))) > 0.3)[None, :] & cap_m
        rgb[ridges] *= 0.82
    # Label band.
    lab_top = lid_h + neck_h + sh_h + (H - lid_h - neck_h - sh_h) * U(rng, 0.05, 0.3)
    lab_bot = lab_top + (H - lab_top) * U(rng, 0.45, 0.85) if kind != "can" else H * 0.95
    if kind == "can":
        lab_top = H * 0.08
    if rng.random() < 0.9:
        lab_base = hsv_colour(rng, sat=(0.0, 0.7), val=(0.6, 1.0)) if kind != "can" else body
        print_panel(rng, rgb, 0, lab_top, W, lab_bot, lab_base, (alpha * 255).astype(np.uint8))
    seal = None
    if kind != "can" and ("seal_broken" in need or rng.random() < 0.5):
        sm = np.zeros((H, W), np.uint8)
        if kind == "jar" and rng.random() < 0.6:  # security sticker over lid and shoulder
            sx = W / 2 + U(rng, -0.3, 0.3) * nw
            sw = W * U(rng, 0.07, 0.14)
            cv2.rectangle(sm, (int(sx - sw / 2), int(lid_h * 0.3)), (int(sx + sw / 2), int(lid_h + neck_h + sh_h * 0.9)),
                          255, -1)
            stype, axis = "sticker", math.pi / 2
            col = (bgr(0.95, 0.95, 0.9), bgr(0.9, 0.8, 0.2), bgr(0.85, 0.85, 0.9))[int(rng.integers(3))]
        else:  # shrink band over cap and neck
            top, bottom = lid_h * U(rng, 0.2, 0.6), lid_h + neck_h * U(rng, 0.5, 1.0) + 1
            sm[int(top):int(bottom)] = 255
            sm = np.minimum(sm, (np.clip(half[:, None] * 1.04 + 1 - np.abs(np.arange(W)[None] + 0.5 - W / 2), 0, 1) * 255)
                            .astype(np.uint8))
            stype, axis = "band", 0.0
            col = hsv_colour(rng, sat=(0.0, 0.8), val=(0.6, 1.0))
        under = rgb[sm > 128].mean(0) if (sm > 128).any() else cap_col
        paint(rgb, sm, col, U(rng, 0.6, 0.85))
        perf = np.zeros((H, W), np.uint8)
        ys, xs = np.nonzero(sm > 128)
        if len(ys):
            if stype == "band":
                yl = int((ys.min() + ys.max()) / 2)
                for x in range(int(xs.min()), int(xs.max()), 4):
                    cv2.line(perf, (x, yl), (x + 1, yl), 255, 1)
                paint(rgb, perf, col * 0.6)
            else:
                text_marks(rng, rgb, xs.min() + 1, ys.min() + 2, xs.max() - 1, ys.max() - 2, bgr(0.7, 0.1, 0.1), 3)
        seal = {"mask": sm > 128, "under": under, "type": stype, "axis": axis}
        alpha = np.maximum(alpha, (sm > 128) * 1.0)
    light = U(rng, -0.7, -0.2)
    cylinder_shade(rgb, alpha, u, U(rng, 0.35, 0.6) if material != "metal" else 0.7, light,
                   U(rng, 0.15, 0.45) if material != "plastic" else U(rng, 0.08, 0.25))
    if material == "metal":
        rgb += (0.12 * np.exp(-((u - 0.45) / 0.06) ** 2) * (alpha > 0))[..., None]
    rgb *= (1 + 0.02 * smooth_noise(rng, H, W, 6))[..., None]
    cx = W / 2
    rigid = (alpha > 0.6) & (yy >= lid_h)
    if material == "plastic" and rng.random() < 0.5:
        rigid &= yy > lid_h + neck_h  # thin-walled: only the body can dent
    sources = [(cx + s * nw / 2 * U(rng, 0.3, 0.9), lid_h + U(rng, 0, neck_h + 1)) for s in (-1, 1)]
    sources.append((cx + U(rng, -0.4, 0.4) * bw, lid_h + neck_h + sh_h + U(rng, 0, 0.3) * H))  # seam
    return Product(kind, material, np.clip(rgb, 0, 1), alpha, rigid=rigid, tearable=None, seal=seal,
                   sources=sources, base=(cx, H - 1), light=light)


def make_pouch(rng, L: float, need: set) -> Product:
    H = int(L)
    W = int(L * U(rng, 0.55, 0.8))
    seal_h = H * U(rng, 0.07, 0.12)
    bulge = W * U(rng, 0.0, 0.05)
    ts = np.linspace(0, 1, 20)
    right = np.stack([W - 2 - bulge * np.sin(np.pi * ts) * 0 - (1 - np.sin(np.pi * ts)) * bulge, ts * (H - 2) + 1], 1)
    left = np.stack([1 + (1 - np.sin(np.pi * ts)) * bulge, ts * (H - 2) + 1], 1)[::-1]
    poly = np.concatenate([right, left])
    m = np.zeros((H, W), np.uint8)
    fill_poly(m, poly)
    liquid = "leak" in need or rng.random() < 0.4
    spout = None
    if liquid:
        sw = W * U(rng, 0.1, 0.16)
        sx = W * (U(rng, 0.2, 0.35) if rng.random() < 0.5 else U(rng, 0.65, 0.8))
        spout = (sx, sw)
        cv2.rectangle(m, (int(sx - sw / 2), 0), (int(sx + sw / 2), int(seal_h + 2)), 255, -1)
    alpha = m.astype(np.float32) / 255
    base = hsv_colour(rng, sat=(0.1, 0.9), val=(0.4, 1.0))
    rgb = np.empty((H, W, 3), np.float32)
    rgb[:] = base
    print_panel(rng, rgb, W * 0.1, seal_h + H * 0.08, W * 0.9, H * 0.9, base if rng.random() < 0.5 else
                hsv_colour(rng, val=(0.6, 1.0)), m)
    sm = np.zeros((H, W), np.uint8)
    cv2.rectangle(sm, (0, 0), (W, int(seal_h)), 255, -1)
    sm = np.minimum(sm, m)
    hatch = (np.sin(np.arange(H) * (2 * np.pi / U(rng, 2.5, 3.5))) > 0)[:, None] & (sm > 128)
    rgb[hatch] *= 0.85
    if spout is not None:
        sx, sw = spout
        cap = np.zeros((H, W), np.uint8)
        cv2.rectangle(cap, (int(sx - sw / 2), 0), (int(sx + sw / 2), int(seal_h * 0.8)), 255, -1)
        paint(rgb, cap, hsv_colour(rng, sat=(0.5, 1), val=(0.5, 1.0)))
        sm[cap > 0] = 0
    # Pillow shading and film wrinkles.
    dist = cv2.distanceTransform(m, cv2.DIST_L2, 5)
    pillow = 0.72 + 0.28 * np.clip(dist / (0.25 * W), 0, 1) ** 0.6
    wr = smooth_noise(rng, H, W, U(rng, 8, 20))
    wrinkles = 0.1 * np.exp(-(wr / 0.08) ** 2) * (np.clip(dist / 6, 0, 1))
    rgb *= pillow[..., None]
    rgb += wrinkles[..., None]
    gl = np.exp(-((np.arange(W)[None, :] - W * U(rng, 0.25, 0.75)) / (W * 0.08)) ** 2) * (alpha > 0)
    rgb += (U(rng, 0.05, 0.2) * gl)[..., None]
    seal = {"mask": sm > 128, "under": bgr(0.08, 0.08, 0.08), "type": "heatseal", "axis": math.pi / 2}
    sources = []
    if spout is not None:
        sources.append((spout[0] + U(rng, -0.5, 0.5) * spout[1], seal_h + 1))
    sources.append((W * U(rng, 0.1, 0.9), seal_h + 2))
    corners = [(1, 1), (W - 2, 1), (W - 2 - bulge, H - 2), (1 + bulge, H - 2)]
    return Product("pouch", "film", np.clip(rgb, 0, 1), alpha, rigid=None, tearable=(alpha > 0.6) & (sm == 0),
                   seal=seal, sources=sources if liquid else [], corners=corners, base=(W / 2, H - 2),
                   inner=hsv_colour(rng, val=(0.1, 0.4)))


def make_garment(rng, L: float, need: set) -> Product:
    W = int(L)
    H = int(L * U(rng, 0.55, 0.9))
    pts = [(2, 2), (W - 3, 2), (W - 3, H - 3), (2, H - 3)]
    poly = []
    for a, b in zip(pts, pts[1:] + pts[:1]):
        for t in np.linspace(0, 1, 10, endpoint=False):
            poly.append((a[0] + (b[0] - a[0]) * t + rng.normal(0, 0.8), a[1] + (b[1] - a[1]) * t + rng.normal(0, 0.8)))
    m = np.zeros((H, W), np.uint8)
    fill_poly(m, poly)
    m = cv2.GaussianBlur(m, (0, 0), 0.7)
    alpha = m.astype(np.float32) / 255
    base = hsv_colour(rng, sat=(0.1, 0.85), val=(0.25, 0.95))
    rgb = np.empty((H, W, 3), np.float32)
    rgb[:] = base
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    pattern = rng.integers(4)
    second = hsv_colour(rng, sat=(0.1, 0.85), val=(0.25, 0.95))
    if pattern == 1:  # stripes
        period = U(rng, 8, 30)
        st = ((yy if rng.random() < 0.6 else xx) % period) < period * U(rng, 0.2, 0.5)
        rgb[st] = second
    elif pattern == 2:  # check
        p = U(rng, 10, 30)
        chk = ((xx // p + yy // p) % 2 == 0)
        paint(rgb, chk.astype(np.float32), second, 0.5)
    elif pattern == 3:  # print motif
        for _ in range(int(rng.integers(3, 9))):
            mm = np.zeros((H, W), np.uint8)
            cv2.circle(mm, (int(U(rng, 0, W)), int(U(rng, 0, H))), int(U(rng, 3, 0.08 * W + 4)), 255, -1, cv2.LINE_AA)
            paint(rgb, mm, second)
    period = U(rng, 2.2, 3.5)
    weave = np.sin(xx * 2 * np.pi / period) * np.sin(yy * 2 * np.pi / period)
    if rng.random() < 0.4:  # knit
        weave = np.abs(np.sin(xx * np.pi / period + np.abs(np.sin(yy * np.pi / period)) * 1.5)) - 0.5
    rgb *= (1 + 0.08 * weave + 0.05 * smooth_noise(rng, H, W, 2.0) + 0.05 * smooth_noise(rng, H, W, 40))[..., None]
    # Folds: soft shading bands with a crease line.
    for _ in range(int(rng.integers(1, 4))):
        fy = U(rng, 0.15, 0.85) * H
        band = np.exp(-((yy - fy) / U(rng, 3, 12)) ** 2)
        rgb *= (1 - 0.25 * band * (yy > fy) + 0.12 * band * (yy <= fy))[..., None]
    stitch = np.zeros((H, W), np.uint8)
    inset = U(rng, 5, 12)
    for x in np.arange(inset, W - inset, 6):
        cv2.line(stitch, (int(x), int(inset)), (int(x + 3), int(inset)), 255, 1, cv2.LINE_AA)
        cv2.line(stitch, (int(x), int(H - inset)), (int(x + 3), int(H - inset)), 255, 1, cv2.LINE_AA)
    paint(rgb, stitch, base * 0.6, 0.8)
    if rng.random() < 0.5:  # care label
        tag = np.zeros((H, W), np.uint8)
        tx, ty = int(W * U(rng, 0.4, 0.55)), int(inset + 2)
        tw, th = int(W * U(rng, 0.08, 0.15)), int(H * U(rng, 0.06, 0.1))
        cv2.rectangle(tag, (tx, ty), (tx + tw, ty + th), 255, -1)
        paint(rgb, tag, bgr(0.95, 0.94, 0.9))
        text_marks(rng, rgb, tx + 1, ty + 1, tx + tw - 1, ty + th - 1, bgr(0.2, 0.2, 0.25), 2)
    return Product("garment", "fabric", np.clip(rgb, 0, 1), alpha, rigid=None, tearable=alpha > 0.6,
                   corners=[(2, 2), (W - 3, 2), (W - 3, H - 3), (2, H - 3)], base=(W / 2, H - 3),
                   inner=np.clip(base * U(rng, 0.3, 0.6), 0, 1))


def make_electronics(rng, L: float, need: set) -> Product:
    sub = rng.integers(3)
    if sub == 0:  # phone
        H, W = int(L), int(L * U(rng, 0.45, 0.55))
    elif sub == 1:  # tablet / laptop lid
        W, H = int(L), int(L * U(rng, 0.62, 0.78))
    else:  # remote / controller
        H, W = int(L), int(L * U(rng, 0.3, 0.42))
    rad = int(min(W, H) * U(rng, 0.06, 0.18))
    m = np.zeros((H, W), np.uint8)
    cv2.rectangle(m, (rad, 1), (W - 1 - rad, H - 2), 255, -1)
    cv2.rectangle(m, (1, rad), (W - 2, H - 1 - rad), 255, -1)
    for cx, cy in ((rad, rad), (W - 1 - rad, rad), (rad, H - 1 - rad), (W - 1 - rad, H - 1 - rad)):
        cv2.circle(m, (cx, cy), rad - 1, 255, -1, cv2.LINE_AA)
    alpha = m.astype(np.float32) / 255
    shell = (bgr(0.08, 0.08, 0.09), bgr(0.9, 0.9, 0.9), bgr(0.55, 0.56, 0.6), hsv_colour(rng, val=(0.3, 0.8)))[
        int(rng.integers(4))]
    rgb = np.empty((H, W, 3), np.float32)
    rgb[:] = shell
    rgb *= (1 + 0.015 * smooth_noise(rng, H, W, 1.5))[..., None]
    screen = None
    if sub in (0, 1):
        mg = int(min(W, H) * U(rng, 0.05, 0.09))
        sm = np.zeros((H, W), np.uint8)
        cv2.rectangle(sm, (mg, int(mg * U(rng, 1, 2))), (W - mg, H - int(mg * U(rng, 1, 2))), 255, -1)
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        glass = np.empty_like(rgb)
        glass[:] = bgr(0.04, 0.05, 0.07)
        if rng.random() < 0.4:  # display on: icon grid
            for gy in np.arange(mg * 3, H - mg * 3, max(8, W * 0.18)):
                for gx in np.arange(mg * 2, W - mg * 3, max(8, W * 0.2)):
                    ic = np.zeros((H, W), np.uint8)
                    s = max(3, int(W * 0.1))
                    cv2.rectangle(ic, (int(gx), int(gy)), (int(gx + s), int(gy + s)), 255, -1)
                    paint(glass, ic, hsv_colour(rng, sat=(0.5, 1), val=(0.5, 1)), 0.9)
        refl = np.clip(1 - np.abs((xx - yy * U(rng, 0.3, 1.2)) - W * U(rng, 0.1, 0.6)) / (W * 0.15), 0, 1)
        glass += (0.12 * refl)[..., None]
        paint(rgb, sm, glass)
        screen = sm > 128
        cam = np.zeros((H, W), np.uint8)
        cv2.circle(cam, (W // 2, max(2, mg // 2 + 1)), max(1, mg // 4), 255, -1, cv2.LINE_AA)
        paint(rgb, cam, bgr(0.02, 0.02, 0.03))
    else:
        bm = np.zeros((H, W), np.uint8)
        for k in range(int(rng.integers(4, 10))):
            cv2.circle(bm, (int(U(rng, 0.25, 0.75) * W), int(H * (0.15 + 0.08 * k))), max(2, int(W * U(rng, 0.06, 0.1))),
                       255, -1, cv2.LINE_AA)
        paint(rgb, bm, hsv_colour(rng, sat=(0.0, 0.9), val=(0.2, 0.9)))
        text_marks(rng, rgb, W * 0.2, H * 0.8, W * 0.8, H * 0.95, bgr(0.7, 0.7, 0.7) if shell.mean() < 0.5 else
                   bgr(0.1, 0.1, 0.1), 2)
    light = U(rng, -2.6, -0.5)
    bevel_shade(rgb, alpha, light, max(1.5, min(W, H) * 0.02), 2.5)
    seal = None
    if "seal_broken" in need or rng.random() < 0.3:
        st = np.zeros((H, W), np.uint8)
        sw, sh = int(W * U(rng, 0.15, 0.3)), int(H * U(rng, 0.04, 0.08))
        sx, sy = int(U(rng, 0.1, 0.9) * (W - sw)), int(H * U(rng, 0.05, 0.9) - sh) if sub == 2 else int(H - sh - 4)
        sy = max(2, sy)
        cv2.rectangle(st, (sx, sy), (sx + sw, sy + sh), 255, -1)
        under = rgb[st > 128].mean(0) if (st > 128).any() else shell
        paint(rgb, st, (bgr(0.85, 0.85, 0.9), bgr(0.95, 0.95, 0.95), bgr(0.9, 0.75, 0.2))[int(rng.integers(3))])
        text_marks(rng, rgb, sx + 1, sy + 1, sx + sw - 1, sy + sh - 1, bgr(0.3, 0.3, 0.35), 1)
        seal = {"mask": st > 128, "under": under, "type": "sticker", "axis": 0.0}
    return Product("electronics", "plastic", np.clip(rgb, 0, 1), alpha, rigid=alpha > 0.6, seal=seal,
                   base=(W / 2, H - 2), screen=screen, light=light)


def make_toy(rng, L: float, need: set) -> Product:
    sub = rng.integers(3)
    W, H = (int(L), int(L * U(rng, 0.5, 0.7))) if sub == 0 else (int(L * U(rng, 0.55, 0.8)), int(L))
    m = np.zeros((H, W), np.uint8)
    rgb = np.zeros((H, W, 3), np.float32)
    c1, c2 = hsv_colour(rng, sat=(0.7, 1), val=(0.6, 1)), hsv_colour(rng, sat=(0.7, 1), val=(0.6, 1))

    def part(draw, colour):
        pm = np.zeros((H, W), np.uint8)
        draw(pm)
        paint(rgb, pm, colour)
        np.maximum(m, pm, out=m)

    if sub == 0:  # car
        part(lambda p: cv2.rectangle(p, (int(W * 0.04), int(H * 0.4)), (int(W * 0.96), int(H * 0.78)), 255, -1), c1)
        part(lambda p: fill_poly(p, [(W * 0.25, H * 0.42), (W * 0.35, H * 0.1), (W * 0.7, H * 0.1),
                                     (W * 0.8, H * 0.42)]), c1 * 0.95)
        part(lambda p: fill_poly(p, [(W * 0.32, H * 0.38), (W * 0.39, H * 0.16), (W * 0.66, H * 0.16),
                                     (W * 0.73, H * 0.38)]), bgr(0.6, 0.8, 0.95))
        for wx in (0.25, 0.75):
            part(lambda p: cv2.circle(p, (int(W * wx), int(H * 0.78)), int(H * 0.18), 255, -1, cv2.LINE_AA),
                 bgr(0.08, 0.08, 0.08))
            part(lambda p: cv2.circle(p, (int(W * wx), int(H * 0.78)), int(H * 0.08), 255, -1, cv2.LINE_AA),
                 bgr(0.7, 0.7, 0.72))
    elif sub == 1:  # robot
        part(lambda p: cv2.rectangle(p, (int(W * 0.3), int(H * 0.02)), (int(W * 0.7), int(H * 0.3)), 255, -1), c2)
        part(lambda p: cv2.rectangle(p, (int(W * 0.2), int(H * 0.32)), (int(W * 0.8), int(H * 0.75)), 255, -1), c1)
        part(lambda p: cv2.rectangle(p, (int(W * 0.02), int(H * 0.34)), (int(W * 0.18), int(H * 0.65)), 255, -1), c2)
        part(lambda p: cv2.rectangle(p, (int(W * 0.82), int(H * 0.34)), (int(W * 0.98), int(H * 0.65)), 255, -1), c2)
        part(lambda p: cv2.rectangle(p, (int(W * 0.25), int(H * 0.76)), (int(W * 0.45), int(H * 0.98)), 255, -1), c2)
        part(lambda p: cv2.rectangle(p, (int(W * 0.55), int(H * 0.76)), (int(W * 0.75), int(H * 0.98)), 255, -1), c2)
        for ex in (0.42, 0.58):
            part(lambda p: cv2.circle(p, (int(W * ex), int(H * 0.14)), max(2, int(W * 0.05)), 255, -1, cv2.LINE_AA),
                 bgr(0.05, 0.05, 0.05))
    else:  # duck-like animal
        part(lambda p: cv2.ellipse(p, (int(W * 0.5), int(H * 0.68)), (int(W * 0.46), int(H * 0.28)), 0, 0, 360, 255, -1,
                                   cv2.LINE_AA), c1)
        part(lambda p: cv2.circle(p, (int(W * 0.55), int(H * 0.28)), int(min(W, H) * 0.24), 255, -1, cv2.LINE_AA), c1)
        part(lambda p: fill_poly(p, [(W * 0.72, H * 0.26), (W * 0.98, H * 0.32), (W * 0.72, H * 0.38)]), c2)
        part(lambda p: cv2.circle(p, (int(W * 0.62), int(H * 0.22)), max(2, int(W * 0.04)), 255, -1, cv2.LINE_AA),
             bgr(0.03, 0.03, 0.03))
    alpha = m.astype(np.float32) / 255
    light = U(rng, -2.6, -0.5)
    bevel_shade(rgb, alpha, light, max(2.0, min(W, H) * 0.04), 2.0)
    gm = np.zeros((H, W), np.uint8)
    cv2.ellipse(gm, (int(W * U(rng, 0.3, 0.7)), int(H * U(rng, 0.2, 0.5))), (max(2, int(W * 0.08)), max(1, int(H * 0.03))),
                U(rng, -40, 40), 0, 360, 255, -1, cv2.LINE_AA)
    gm = np.minimum(cv2.GaussianBlur(gm, (0, 0), 2), m)
    paint(rgb, gm, bgr(1, 1, 1), U(rng, 0.3, 0.7))
    return Product("toy", "plastic", np.clip(rgb, 0, 1), alpha, rigid=alpha > 0.6, base=(W / 2, H - 2), light=light)


BUILDERS = {
    "carton": make_carton,
    "bottle": lambda rng, L, need: make_bottle(rng, L, need, "bottle"),
    "jar": lambda rng, L, need: make_bottle(rng, L, need, "jar"),
    "can": lambda rng, L, need: make_bottle(rng, L, need, "can"),
    "pouch": make_pouch,
    "garment": make_garment,
    "electronics": make_electronics,
    "toy": make_toy,
}


# --------------------------------------------------------------------------------------------- defects (product sheet)


def _walk(rng, x, y, ang, length, step, turn):
    pts = [(x, y)]
    n = max(2, int(length / step))
    for _ in range(n):
        ang += rng.normal(0, turn)
        x += step * math.cos(ang)
        y += step * math.sin(ang)
        pts.append((x, y))
    return pts, ang


def d_scratch(rng, p: Product) -> bool:
    H, W = p.alpha.shape
    u = min(H, W)
    start = pick_point(rng, erode(p.surface, 3))
    if start is None:
        return False
    ang = U(rng, 0, math.pi)
    m = np.zeros((H, W), np.uint8)
    length = U(rng, 0.2, 0.65) * u
    for k in range(int(rng.integers(1, 4))):
        off = rng.normal(0, 0.03 * u)
        t = np.linspace(-0.5, 0.5, 14)
        bend = U(rng, -0.08, 0.08)
        nx, ny = -math.sin(ang), math.cos(ang)
        seg = length * U(rng, 0.5, 1.0)
        x = start[0] + math.cos(ang) * t * seg + nx * (off + bend * (t ** 2 - 0.25) * seg)
        y = start[1] + math.sin(ang) * t * seg + ny * (off + bend * (t ** 2 - 0.25) * seg)
        polyline(m, np.stack([x, y], 1), 2 if rng.random() < 0.2 else 1)
    a = m.astype(np.float32) / 255 * (0.55 + 0.45 * np.clip(smooth_noise(rng, H, W, 10) + 0.6, 0, 1))
    a *= p.surface
    light = rng.random() < 0.65 or p.rgb.mean() < 0.3
    opacity = U(rng, 0.55, 0.95)
    if light:
        p.rgb += (1 - p.rgb) * (a * opacity * U(rng, 0.4, 0.8))[..., None]
    else:
        p.rgb *= (1 - a * opacity * 0.6)[..., None]
    return True


def d_dent(rng, p: Product) -> bool:
    H, W = p.alpha.shape
    u = min(H, W)
    region = erode(p.rigid, max(2, int(0.05 * u)))
    c = pick_point(rng, region)
    if c is None:
        return False
    r = U(rng, 0.08, 0.18) * u
    x0, x1 = int(max(0, c[0] - r - 2)), int(min(W, c[0] + r + 3))
    y0, y1 = int(max(0, c[1] - r - 2)), int(min(H, c[1] + r + 3))
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    ex = U(rng, 0.7, 1.3)
    dx, dy = (xx - c[0]) * ex, (yy - c[1]) / ex
    d = np.sqrt(dx ** 2 + dy ** 2) / r
    inside = d < 1
    k = U(rng, 0.12, 0.3)
    f = np.where(inside, 1 - k * (1 - d ** 2) ** 2, 1.0)
    mapx = (c[0] + (xx - c[0]) * f).astype(np.float32)
    mapy = (c[1] + (yy - c[1]) * f).astype(np.float32)
    win = p.rgb[y0:y1, x0:x1]
    warped = cv2.remap(p.rgb, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    bump = np.where(inside, (1 - d ** 2) ** 2, 0).astype(np.float32)
    la = p.light + U(rng, -0.4, 0.4)
    dirv = ((xx - c[0]) * math.cos(la) + (yy - c[1]) * math.sin(la)) / r
    shade = 1 + U(rng, 0.25, 0.5) * bump * dirv * 2 - 0.12 * bump
    spec = np.clip(bump * dirv, 0, None) ** 2 * U(rng, 0.0, 0.5)
    out = warped * shade[..., None] + spec[..., None]
    keep = region[y0:y1, x0:x1] | erode(p.rigid, 1)[y0:y1, x0:x1]
    blend = np.where(keep & inside, 1.0, 0.0).astype(np.float32)
    blend = cv2.GaussianBlur(blend, (0, 0), 1.0)[..., None]
    win[:] = np.clip(win * (1 - blend) + out * blend, 0, 1)
    return True


def d_crack(rng, p: Product) -> bool:
    H, W = p.alpha.shape
    u = min(H, W)
    region = p.rigid
    if p.screen is not None and rng.random() < 0.6:
        region = p.screen & p.rigid
    start = pick_point(rng, erode(region, 3))
    if start is None:
        return False
    m = np.zeros((H, W), np.uint8)
    queue = [(start[0], start[1], U(rng, 0, 2 * math.pi), U(rng, 0.2, 0.5) * u, 0)]
    if p.screen is not None and region is not p.rigid and rng.random() < 0.5:  # impact star
        for a in np.linspace(0, 2 * math.pi, int(rng.integers(4, 8)), endpoint=False):
            queue.append((start[0], start[1], a + rng.normal(0, 0.3), U(rng, 0.08, 0.3) * u, 1))
    n = 0
    while queue and n < 14:
        x, y, ang, length, depth = queue.pop()
        pts, _ = _walk(rng, x, y, ang, length, max(2.0, u * 0.015), 0.35)
        polyline(m, pts, 1 if depth or rng.random() < 0.6 else 2)
        n += 1
        if depth < 2:
            for _ in range(int(rng.integers(0, 3))):
                j = int(rng.integers(1, len(pts)))
                queue.append((pts[j][0], pts[j][1], ang + rng.choice([-1, 1]) * U(rng, 0.4, 1.1), length * U(rng, 0.25, 0.5),
                              depth + 1))
    a = m.astype(np.float32) / 255 * region
    edge = np.roll(np.roll(a, 1, 0), 1, 1) * (1 - a) * region
    dark = bgr(0.04, 0.04, 0.04) if p.rgb.mean() > 0.15 else bgr(0.5, 0.5, 0.52)
    paint(p.rgb, a, dark, U(rng, 0.75, 1.0))
    paint(p.rgb, edge, bgr(0.95, 0.95, 0.95), U(rng, 0.2, 0.5))
    return True


def d_tear(rng, p: Product) -> bool:
    H, W = p.alpha.shape
    u = min(H, W)
    region = erode(p.tearable, max(2, int(0.04 * u)))
    c = pick_point(rng, region)
    if c is None:
        return False
    length = U(rng, 0.12, 0.35) * u
    width = length * U(rng, 0.15, 0.45)
    ang = U(rng, 0, math.pi)
    n = 18
    t = np.linspace(-0.5, 0.5, n)
    prof = np.sin(np.pi * (t + 0.5)) ** 0.7 * width / 2
    jag = lambda: rng.uniform(-0.35, 0.35, n) * width * 0.4 * (prof > 0.5)
    top = np.stack([t * length, -prof + jag()], 1)
    bot = np.stack([t * length, prof * U(rng, 0.3, 1.0) + jag()], 1)[::-1]
    shape = np.concatenate([top, bot])
    ca, sa = math.cos(ang), math.sin(ang)
    pts = np.stack([c[0] + ca * shape[:, 0] - sa * shape[:, 1], c[1] + sa * shape[:, 0] + ca * shape[:, 1]], 1)
    hole = np.zeros((H, W), np.uint8)
    fill_poly(hole, pts)
    hole = np.minimum(hole, (p.surface * 255).astype(np.uint8))
    if hole.max() == 0:
        return False
    ring = cv2.dilate(hole, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))).astype(np.float32) / 255
    ring = np.clip(ring - hole.astype(np.float32) / 255, 0, 1) * p.surface
    behind = np.empty_like(p.rgb)
    behind[:] = p.inner
    if p.material == "paper":  # corrugated fluting
        flute = np.sin((np.arange(W)[None, :] * ca + np.arange(H)[:, None] * sa) * 2 * np.pi / U(rng, 3, 5))
        behind *= (1 + 0.25 * flute)[..., None]
    behind *= (0.6 + 0.4 * np.clip(smooth_noise(rng, H, W, 6) + 0.5, 0, 1))[..., None]
    paint(p.rgb, hole, behind)
    rim = bgr(0.92, 0.9, 0.85) if p.material in ("paper", "film") else np.clip(p.rgb[int(c[1]), int(c[0])] * 1.3, 0, 1)
    paint(p.rgb, ring, rim, U(rng, 0.5, 0.9))
    if p.material == "fabric":  # loose threads
        th = np.zeros((H, W), np.uint8)
        for i in range(int(rng.integers(4, 12))):
            x0, y0 = pts[int(rng.integers(len(pts)))]
            a2 = U(rng, 0, 2 * math.pi)
            tl = U(rng, 2, 0.06 * u + 3)
            cv2.line(th, (int(x0), int(y0)), (int(x0 + tl * math.cos(a2)), int(y0 + tl * math.sin(a2))), 255, 1,
                     cv2.LINE_AA)
        paint(p.rgb, th.astype(np.float32) / 255 * p.surface, np.clip(p.rgb[int(c[1]), int(c[0])] * 1.2, 0, 1), 0.9)
    else:  # a lifted flap casting a shadow into the hole
        sh = cv2.GaussianBlur(hole, (0, 0), 2).astype(np.float32) / 255
        sh = np.roll(sh, (2, 2), (0, 1)) * (hole > 0)
        p.rgb *= (1 - 0.5 * sh)[..., None]
    return True


def d_stain(rng, p: Product) -> bool:
    H, W = p.alpha.shape
    u = min(H, W)
    c = pick_point(rng, erode(p.surface, 4))
    if c is None:
        return False
    r = U(rng, 0.05, 0.18) * u
    m = np.zeros((H, W), np.uint8)
    for _ in range(int(rng.integers(1, 5))):
        fill_poly(m, blob_polygon(rng, c[0] + rng.normal(0, r * 0.4), c[1] + rng.normal(0, r * 0.4), r * U(rng, 0.4, 1.0),
                                  r * U(rng, 0.3, 0.9), 0.3, angle=U(rng, 0, 3.14)))
    a = cv2.GaussianBlur(m, (0, 0), U(rng, 0.8, 2.5)).astype(np.float32) / 255
    a *= np.clip(0.75 + 0.35 * smooth_noise(rng, H, W, max(3, r / 3)), 0, 1)
    a *= p.surface
    kind = rng.integers(5)
    tint = (bgr(0.45, 0.28, 0.12), bgr(0.55, 0.5, 0.2), bgr(0.1, 0.15, 0.55), bgr(0.45, 0.1, 0.2),
            bgr(0.6, 0.35, 0.1))[kind]
    strength = U(rng, 0.35, 0.75)
    p.rgb *= (1 - a[..., None] * strength * (1 - tint)) if kind != 1 else (1 - a * strength * 0.5)[..., None]
    if kind in (0, 3) and rng.random() < 0.7:  # drying ring
        ring = np.clip(a - cv2.erode(a, np.ones((3, 3), np.uint8), iterations=2), 0, 1)
        p.rgb *= (1 - ring * 0.5)[..., None]
    if kind == 1:  # grease sheen
        p.rgb += (a * 0.08 * np.clip(smooth_noise(rng, H, W, 4), 0, 1))[..., None]
    return True


def d_leak(rng, p: Product) -> bool:
    H, W = p.alpha.shape
    u = min(H, W)
    if not p.sources:
        return False
    sx, sy = p.sources[int(rng.integers(len(p.sources)))]
    liquid = (bgr(0.85, 0.9, 0.95), bgr(0.95, 0.55, 0.1), bgr(0.85, 0.75, 0.2), bgr(0.98, 0.98, 0.95),
              bgr(0.3, 0.15, 0.05), bgr(0.2, 0.5, 0.95))[int(rng.integers(6))]
    wet = np.zeros((H, W), np.uint8)
    gloss = np.zeros((H, W), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        x, y = sx + rng.normal(0, 0.02 * W), sy
        wdt = U(rng, 1.5, 0.03 * u + 2)
        length = U(rng, 0.2, 0.75) * (H - sy)
        pts = [(x, y)]
        while y < sy + length:
            y += 3
            x += rng.normal(0, 0.6)
            pts.append((x, y))
        polyline(wet, pts, int(wdt))
        cv2.circle(wet, (int(x), int(y)), int(wdt * U(rng, 0.7, 1.2)) + 1, 255, -1, cv2.LINE_AA)
        polyline(gloss, [(q[0] - wdt * 0.25, q[1]) for q in pts], 1)
    if rng.random() < 0.6:  # broad wet run below the source
        fill_poly(wet, blob_polygon(rng, sx, sy + 0.08 * H, U(rng, 0.05, 0.12) * W, U(rng, 0.06, 0.15) * H, 0.25))
    a = cv2.GaussianBlur(wet, (0, 0), 0.8).astype(np.float32) / 255 * (p.alpha > 0.5)
    g = gloss.astype(np.float32) / 255 * (p.alpha > 0.5)
    p.rgb *= 1 - a[..., None] * U(rng, 0.25, 0.5) * (1 - liquid * 0.8)
    p.rgb += ((g * U(rng, 0.3, 0.6) + a * 0.04) * 1.0)[..., None]
    p.rgb[:] = np.clip(p.rgb, 0, 1)
    p.__dict__.setdefault("puddle", None)
    p.puddle = liquid if rng.random() < 0.75 else None
    return True


def d_wear(rng, p: Product) -> bool:
    H, W = p.alpha.shape
    u = min(H, W)
    surf = erode(p.surface, 2)
    if rng.random() < 0.5:  # rubbed edges and corners wear first
        edge = surf & ~erode(surf, max(3, int(0.08 * u)))
        c = pick_point(rng, edge) or pick_point(rng, surf)
    else:
        c = pick_point(rng, surf)
    if c is None:
        return False
    rx, ry = U(rng, 0.07, 0.2) * u, U(rng, 0.05, 0.15) * u
    m = np.zeros((H, W), np.uint8)
    fill_poly(m, blob_polygon(rng, c[0], c[1], rx, ry, 0.35, angle=U(rng, 0, 3.14)))
    a = cv2.GaussianBlur(m, (0, 0), U(rng, 2, 5)).astype(np.float32) / 255 * surf
    a *= np.clip(0.6 + 0.6 * smooth_noise(rng, H, W, 3), 0, 1)
    grey = p.rgb.mean(2, keepdims=True)
    faded = np.clip(grey * 0.4 + p.rgb * 0.3 + 0.35, 0, 1)
    paint(p.rgb, a, faded, U(rng, 0.5, 0.85))
    if p.material == "fabric":  # pilling: small fuzz balls
        fz = np.zeros((H, W), np.uint8)
        ys, xs = np.nonzero(m > 128)
        for _ in range(min(len(ys), int(rng.integers(20, 60)))):
            k = int(rng.integers(len(ys)))
            cv2.circle(fz, (int(xs[k]), int(ys[k])), int(rng.integers(1, 3)), 255, -1, cv2.LINE_AA)
        paint(p.rgb, fz.astype(np.float32) / 255 * surf, np.clip(faded * 1.15, 0, 1), 0.8)
    else:  # scuff strokes
        sc = np.zeros((H, W), np.uint8)
        ys, xs = np.nonzero(m > 128)
        base_ang = U(rng, 0, math.pi)
        for _ in range(min(len(ys), int(rng.integers(8, 30)))):
            k = int(rng.integers(len(ys)))
            a2 = base_ang + rng.normal(0, 0.3)
            ln = U(rng, 2, 0.06 * u + 3)
            cv2.line(sc, (int(xs[k]), int(ys[k])), (int(xs[k] + ln * math.cos(a2)), int(ys[k] + ln * math.sin(a2))), 255,
                     1, cv2.LINE_AA)
        paint(p.rgb, sc.astype(np.float32) / 255 * surf, bgr(0.85, 0.85, 0.85), U(rng, 0.2, 0.5))
    return True


def d_seal_broken(rng, p: Product) -> bool:
    if p.seal is None or not p.seal["mask"].any():
        return False
    H, W = p.alpha.shape
    sm = p.seal["mask"]
    ys, xs = np.nonzero(sm)
    span = max(xs.max() - xs.min(), ys.max() - ys.min()) + 1
    c = pick_point(rng, sm)
    axis = p.seal["axis"] + rng.normal(0, 0.25)
    # The cut runs across the seal: normal vector n along the seal's long axis.
    nx, ny = math.cos(axis), math.sin(axis)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    along = (xx - c[0]) * -ny + (yy - c[1]) * nx
    dist = (xx - c[0]) * nx + (yy - c[1]) * ny
    dist += smooth_noise(rng, H, W, 3) * U(rng, 1, 3)  # ragged cut
    gap_w = U(rng, 2, max(3, 0.12 * span))
    if p.seal["type"] == "heatseal":  # torn open notch from the top edge
        gap = sm & (np.abs(dist) < gap_w) & (yy < ys.max() + 2)
        opening = np.zeros((H, W), np.uint8)
        fill_poly(opening, blob_polygon(rng, c[0], ys.max() + 1, gap_w * U(rng, 1, 2), (ys.max() - ys.min()) * U(rng, 0.6, 1.0),
                                        0.3))
        gap = gap | ((opening > 128) & (p.alpha > 0.5))
        gap &= p.alpha > 0.5
    else:
        gap = sm & (np.abs(dist) < gap_w / 2)
    lifted = sm & (dist > gap_w / 2) & (dist < gap_w / 2 + U(rng, 0.2, 0.6) * span) & ~gap
    under = np.empty_like(p.rgb)
    under[:] = p.seal["under"]
    if p.seal["type"] == "sticker" and rng.random() < 0.6:  # VOID residue
        vm = np.zeros((H, W), np.uint8)
        for y in range(int(ys.min()), int(ys.max()) + 8, 8):
            for x in range(int(xs.min()) - 10, int(xs.max()), 24):
                cv2.putText(vm, "VOID", (x, y), cv2.FONT_HERSHEY_PLAIN, 0.6, 255, 1, cv2.LINE_AA)
        paint(under, vm, bgr(0.75, 0.15, 0.15), 0.8)
    g = gap.astype(np.float32)
    paint(p.rgb, g, under * 0.85)
    lf = lifted.astype(np.float32) * np.clip(1 - (dist - gap_w / 2) / max(1, 0.5 * span), 0, 1)
    p.rgb += (lf * U(rng, 0.15, 0.35))[..., None]  # the curled edge catches the light
    edge = (g > 0) & ~erode(g > 0, 1)
    p.rgb *= (1 - 0.35 * edge)[..., None]
    p.rgb[:] = np.clip(p.rgb, 0, 1)
    return bool(gap.any())


def d_package_damage(rng, p: Product) -> bool:
    H, W = p.alpha.shape
    u = min(H, W)
    mode = rng.integers(3)
    if mode == 0 and p.corners:  # crushed corner: dent the silhouette inwards, crease lines
        cx, cy = p.corners[int(rng.integers(len(p.corners)))]
        gx, gy = p.base[0] - cx, (H / 2) - cy
        n = math.hypot(gx, gy) or 1
        gx, gy = gx / n, gy / n
        r = U(rng, 0.12, 0.25) * u
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / r
        push = np.clip(1 - d, 0, 1) ** 1.5 * r * U(rng, 0.35, 0.6)
        mapx, mapy = xx - gx * push, yy - gy * push
        rgba = np.dstack([p.rgb * p.alpha[..., None], p.alpha])
        out = cv2.remap(rgba, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        a = out[..., 3]
        p.rgb[:] = np.where(a[..., None] > 1e-3, out[..., :3] / np.maximum(a, 1e-3)[..., None], p.rgb)
        p.alpha[:] = a
        shade = np.clip(1 - d, 0, 1) * 0.35
        p.rgb *= (1 - shade * (0.6 + 0.4 * smooth_noise(rng, H, W, 4)))[..., None]
        cr = np.zeros((H, W), np.uint8)
        for _ in range(int(rng.integers(2, 5))):
            a2 = math.atan2(gy, gx) + rng.normal(0, 0.6)
            pts, _ = _walk(rng, cx + gx * r * 0.3, cy + gy * r * 0.3, a2, r * U(rng, 0.5, 1.1), 3, 0.15)
            polyline(cr, pts, 1)
        crf = cr.astype(np.float32) / 255 * (p.alpha > 0.5)
        paint(p.rgb, crf, bgr(0.1, 0.08, 0.06), 0.55)
        paint(p.rgb, np.roll(crf, 1, 1) * (1 - crf), bgr(1, 1, 1), 0.3)
        return True
    c = pick_point(rng, erode(p.surface, max(3, int(0.08 * u))))
    if c is None:
        return False
    if mode == 1:  # puncture: dark hole with torn flaps
        r = U(rng, 0.03, 0.08) * u
        hole = np.zeros((H, W), np.uint8)
        fill_poly(hole, blob_polygon(rng, c[0], c[1], r, r * U(rng, 0.6, 1.0), 0.45, 16))
        paint(p.rgb, hole, p.inner * 0.6)
        fl = np.zeros((H, W), np.uint8)
        for a2 in np.linspace(0, 2 * math.pi, int(rng.integers(3, 6)), endpoint=False):
            a2 += rng.normal(0, 0.3)
            tip = (c[0] + math.cos(a2) * r * 1.6, c[1] + math.sin(a2) * r * 1.6)
            fill_poly(fl, [(c[0] + math.cos(a2 - 0.4) * r, c[1] + math.sin(a2 - 0.4) * r), tip,
                           (c[0] + math.cos(a2 + 0.4) * r, c[1] + math.sin(a2 + 0.4) * r)])
        paint(p.rgb, fl.astype(np.float32) / 255 * p.surface, np.clip(p.rgb[int(c[1]), int(c[0])] * 0.7 + 0.1, 0, 1), 0.8)
        ring = cv2.GaussianBlur(cv2.dilate(hole, np.ones((5, 5), np.uint8), iterations=2), (0, 0), 3)
        p.rgb *= (1 - 0.3 * ring.astype(np.float32) / 255 * p.surface)[..., None]
        return True
    # caved-in side / crease field: a soft trough with crease lines along it
    ang = U(rng, 0, math.pi)
    length = U(rng, 0.25, 0.5) * u
    m = np.zeros((H, W), np.uint8)
    fill_poly(m, blob_polygon(rng, c[0], c[1], length / 2, length * U(rng, 0.12, 0.25), 0.2, angle=ang))
    a = cv2.GaussianBlur(m, (0, 0), U(rng, 3, 6)).astype(np.float32) / 255 * p.surface
    p.rgb *= (1 - 0.4 * a)[..., None]
    cr = np.zeros((H, W), np.uint8)
    for _ in range(int(rng.integers(2, 6))):
        a2 = ang + rng.normal(0, 0.25)
        s = (c[0] + rng.normal(0, length * 0.15), c[1] + rng.normal(0, length * 0.1))
        pts, _ = _walk(rng, s[0] - math.cos(a2) * length * 0.4, s[1] - math.sin(a2) * length * 0.4, a2,
                       length * U(rng, 0.4, 0.8), 3, 0.12)
        polyline(cr, pts, 1)
    crf = cr.astype(np.float32) / 255 * p.surface
    paint(p.rgb, crf, bgr(0.08, 0.07, 0.06), 0.6)
    paint(p.rgb, np.roll(crf, 1, 0) * (1 - crf), bgr(1, 1, 1), 0.35)
    return True


SHEET_DEFECTS = {"scratch": d_scratch, "dent": d_dent, "crack": d_crack, "tear": d_tear, "stain": d_stain,
                 "leak": d_leak, "wear": d_wear, "seal_broken": d_seal_broken, "package_damage": d_package_damage}


def sheet_change(before_rgb, before_a, p: Product) -> np.ndarray:
    diff = np.abs(p.rgb * p.alpha[..., None] - before_rgb * before_a[..., None]).max(2)
    return (diff > DIFF_THRESHOLD) | (np.abs(p.alpha - before_a) > 0.25)


# --------------------------------------------------------------------------------------------- scene


def background(rng, S: int) -> np.ndarray:
    kind = rng.integers(5)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    img = np.empty((S, S, 3), np.float32)
    if kind == 0:  # wood planks
        a = U(rng, 0, math.pi)
        v = xx * math.cos(a) + yy * math.sin(a)
        w_ = -xx * math.sin(a) + yy * math.cos(a)
        plank = U(rng, 60, 160) * S / 416
        idx = np.floor(w_ / plank)
        warp = smooth_noise(rng, S, S, 40) * U(rng, 4, 12)
        grain = 0.5 + 0.5 * np.sin((w_ + warp + idx * 7) * 2 * np.pi / U(rng, 4, 10) + np.sin(v / 50 + idx))
        c1 = bgr(U(rng, 0.45, 0.75), U(rng, 0.3, 0.5), U(rng, 0.15, 0.3))
        c2 = c1 * U(rng, 0.6, 0.8)
        img[:] = c1
        paint(img, grain, c2, 0.7)
        img *= (1 + 0.12 * np.sin(idx * 12.9898)[..., None] * 0.5)
        seam = (np.abs(w_ - (idx + 0.5) * plank) > plank / 2 - 1)
        img[seam] *= 0.6
    elif kind == 1:  # cloth / bench mat with weave
        base = hsv_colour(rng, sat=(0.05, 0.6), val=(0.2, 0.8))
        img[:] = base
        p = U(rng, 2.5, 5)
        img *= (1 + 0.07 * np.sin(xx * 2 * np.pi / p)[..., None] * np.sin(yy * 2 * np.pi / p)[..., None])
        img *= (1 + 0.08 * smooth_noise(rng, S, S, 60))[..., None]
    elif kind == 2:  # smooth gradient
        c1, c2 = hsv_colour(rng, sat=(0, 0.4), val=(0.3, 0.95)), hsv_colour(rng, sat=(0, 0.4), val=(0.3, 0.95))
        a = U(rng, 0, 2 * math.pi)
        t = ((xx * math.cos(a) + yy * math.sin(a)) / S + 1) / 2
        img[:] = c1
        paint(img, np.clip(t, 0, 1), c2)
    elif kind == 3:  # tiles with grout, in perspective
        big = int(S * 1.5)
        tile = U(rng, 40, 110) * S / 416
        ty, tx = np.mgrid[0:big, 0:big].astype(np.float32)
        base = hsv_colour(rng, sat=(0, 0.4), val=(0.4, 0.95))
        t_img = np.empty((big, big, 3), np.float32)
        t_img[:] = base
        jitter = rng.uniform(0.9, 1.1, (int(big / tile) + 2, int(big / tile) + 2)).astype(np.float32)
        t_img *= jitter[(ty // tile).astype(int), (tx // tile).astype(int)][..., None]
        grout = ((tx % tile) < 2) | ((ty % tile) < 2)
        t_img[grout] = base * 0.55
        src = np.float32([[0, 0], [big, 0], [big, big], [0, big]])
        j = S * 0.15
        dst = np.float32([[-rng.uniform(0, j), -rng.uniform(0, j)], [S + rng.uniform(0, j), -rng.uniform(0, j)],
                          [S + rng.uniform(0, j), S + rng.uniform(0, j)], [-rng.uniform(0, j), S + rng.uniform(0, j)]])
        img = cv2.warpPerspective(t_img, cv2.getPerspectiveTransform(src, dst), (S, S))
    else:  # cutting / ESD mat with a grid
        base = (bgr(0.15, 0.4, 0.25), bgr(0.25, 0.3, 0.4), bgr(0.2, 0.2, 0.22))[int(rng.integers(3))]
        img[:] = base
        g = U(rng, 20, 40) * S / 416
        lines = ((xx % g) < 1) | ((yy % g) < 1)
        img[lines] = np.clip(base * 1.6, 0, 1)
    img *= (1 + 0.03 * smooth_noise(rng, S, S, 3))[..., None]
    return np.clip(img, 0, 1)


def clutter(rng, img: np.ndarray) -> None:
    S = img.shape[0]
    for _ in range(int(rng.integers(0, 4))):
        m = np.zeros((S, S), np.uint8)
        kind = rng.integers(4)
        x, y = U(rng, 0, S), U(rng, 0, S)
        if kind == 0:  # pen
            a = U(rng, 0, math.pi)
            ln = U(rng, 0.2, 0.45) * S
            cv2.line(m, (int(x), int(y)), (int(x + ln * math.cos(a)), int(y + ln * math.sin(a))), 255,
                     max(3, int(S * 0.02)), cv2.LINE_AA)
            col = hsv_colour(rng, val=(0.2, 0.9))
        elif kind == 1:  # cable
            pts, _ = _walk(rng, x, y, U(rng, 0, 6.28), S * U(rng, 0.3, 0.8), 5, 0.2)
            polyline(m, pts, max(2, int(S * 0.012)))
            col = bgr(0.08, 0.08, 0.08) if rng.random() < 0.6 else bgr(0.9, 0.9, 0.9)
        elif kind == 2:  # sheet of paper with printing
            w, h = U(rng, 0.2, 0.4) * S, U(rng, 0.25, 0.45) * S
            box = cv2.boxPoints(((x, y), (w, h), U(rng, 0, 90)))
            fill_poly(m, box)
            col = bgr(0.95, 0.95, 0.93)
        else:  # tape roll / coin
            r = U(rng, 0.03, 0.09) * S
            cv2.circle(m, (int(x), int(y)), int(r), 255, -1, cv2.LINE_AA)
            cv2.circle(m, (int(x), int(y)), int(r * U(rng, 0, 0.6)), 0, -1, cv2.LINE_AA)
            col = hsv_colour(rng, sat=(0, 0.5), val=(0.4, 0.9))
        sh = cv2.GaussianBlur(m, (0, 0), 4)
        sh = np.roll(sh, (4, 4), (0, 1)).astype(np.float32) / 255
        img *= (1 - 0.3 * sh)[..., None]
        paint(img, m, col)
        if kind == 2:
            ys, xs = np.nonzero(m)
            layer = img.copy()
            text_marks(rng, layer, xs.min() + 6, ys.min() + 6, xs.max() - 6, ys.max() - 6, bgr(0.3, 0.3, 0.3), 4)
            paint(img, cv2.erode(m, np.ones((7, 7), np.uint8)), layer)


def placement(rng, kind: str, w: int, h: int, S: int) -> np.ndarray:
    ang = math.radians(U(rng, -22, 22) if kind in UPRIGHT else U(rng, -70, 70))
    s = U(rng, 0.92, 1.08)
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    c = src.mean(0)
    rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]], np.float32)
    d = (src - c) @ rot.T * s
    j = max(w, h) * U(rng, 0.0, 0.1)
    d += rng.uniform(-j, j, d.shape).astype(np.float32)
    ext = d.max(0) - d.min(0)
    if ext.max() > S * 0.98:
        d *= S * 0.98 / ext.max()
        ext = d.max(0) - d.min(0)
    lo = -d.min(0) - S * 0.04
    hi = S - d.max(0) + S * 0.04
    centre = np.array([U(rng, lo[0], max(lo[0], hi[0])), U(rng, lo[1], max(lo[1], hi[1]))], np.float32)
    return cv2.getPerspectiveTransform(src, (d + centre).astype(np.float32))


def warp_point(Hm: np.ndarray, x: float, y: float) -> tuple[float, float]:
    v = Hm @ np.array([x, y, 1.0])
    return float(v[0] / v[2]), float(v[1] / v[2])


def foreign_object(rng, img: np.ndarray, at: tuple[float, float], scale: float) -> None:
    S = img.shape[0]
    x, y = at
    m = np.zeros((S, S), np.uint8)
    kind = rng.integers(6)
    shadow = True
    if kind == 0:  # hair
        pts, _ = _walk(rng, x, y, U(rng, 0, 6.28), scale * U(rng, 0.2, 0.45), 2.5, 0.12)
        polyline(m, pts, 1)
        col = (bgr(0.05, 0.04, 0.03), bgr(0.3, 0.2, 0.1), bgr(0.85, 0.75, 0.5), bgr(0.6, 0.6, 0.6))[int(rng.integers(4))]
        shadow = False
    elif kind == 1:  # crumbs
        for _ in range(int(rng.integers(3, 12))):
            cx, cy = x + rng.normal(0, scale * 0.04), y + rng.normal(0, scale * 0.04)
            r = U(rng, 1, max(1.5, scale * 0.015))
            fill_poly(m, blob_polygon(rng, cx, cy, r, r * U(rng, 0.5, 1.0), 0.4, 7))
        col = bgr(U(rng, 0.55, 0.85), U(rng, 0.4, 0.65), U(rng, 0.2, 0.4))
    elif kind == 2:  # sticker
        w, h = scale * U(rng, 0.08, 0.16), scale * U(rng, 0.05, 0.1)
        fill_poly(m, cv2.boxPoints(((x, y), (w, h), U(rng, 0, 180))))
        col = (bgr(1, 1, 1), bgr(1, 0.85, 0.1), bgr(1, 0.5, 0.1), bgr(0.4, 0.9, 0.4))[int(rng.integers(4))]
    elif kind == 3:  # screw
        a = U(rng, 0, 6.28)
        ln = scale * U(rng, 0.06, 0.12)
        th = max(2, int(scale * 0.012))
        e = (x + ln * math.cos(a), y + ln * math.sin(a))
        cv2.line(m, (int(x), int(y)), (int(e[0]), int(e[1])), 255, th, cv2.LINE_AA)
        cv2.circle(m, (int(x), int(y)), th + 1, 255, -1, cv2.LINE_AA)
        col = bgr(0.7, 0.7, 0.72)
    elif kind == 4:  # dust clump
        r = scale * U(rng, 0.02, 0.05)
        fill_poly(m, blob_polygon(rng, x, y, r, r * 0.8, 0.5, 20))
        for _ in range(int(rng.integers(3, 9))):
            pts, _ = _walk(rng, x, y, U(rng, 0, 6.28), r * U(rng, 1, 2.5), 2, 0.4)
            polyline(m, pts, 1)
        m = cv2.GaussianBlur(m, (0, 0), 0.8)
        col = bgr(0.55, 0.55, 0.52)
    else:  # insect-like speck
        r = max(2.0, scale * U(rng, 0.012, 0.025))
        a = U(rng, 0, 180)
        cv2.ellipse(m, (int(x), int(y)), (int(r * 1.6), int(r)), a, 0, 360, 255, -1, cv2.LINE_AA)
        for k in range(6):
            la = math.radians(a) + (k % 3 - 1) * 0.7 + (math.pi if k >= 3 else 0) + math.pi / 2
            cv2.line(m, (int(x), int(y)), (int(x + 2.2 * r * math.cos(la)), int(y + 2.2 * r * math.sin(la))), 255, 1,
                     cv2.LINE_AA)
        col = bgr(0.05, 0.05, 0.04)
    if shadow:
        sh = np.roll(cv2.GaussianBlur(m, (0, 0), 1.5), (2, 2), (0, 1)).astype(np.float32) / 255
        img *= (1 - 0.3 * sh)[..., None]
    paint(img, m, col, U(rng, 0.8, 1.0))
    if kind == 2:
        ys, xs = np.nonzero(m > 128)
        if len(ys) > 20:
            inner = img.copy()
            text_marks(rng, inner, xs.min() + 2, ys.min() + 2, xs.max() - 2, ys.max() - 2, bgr(0.1, 0.1, 0.1), 2)
            paint(img, cv2.erode(m, np.ones((3, 3), np.uint8)), inner)
    if kind == 3:  # thread glints
        gl = np.zeros((S, S), np.uint8)
        cv2.line(gl, (int(x), int(y)), (int(x + 1), int(y - 1)), 255, 1)
        paint(img, gl, bgr(1, 1, 1), 0.6)


def puddle(rng, img: np.ndarray, prod_alpha: np.ndarray, at: tuple[float, float], width: float, liquid) -> None:
    S = img.shape[0]
    m = np.zeros((S, S), np.uint8)
    w = width * U(rng, 0.3, 0.55)  # radius: the puddle is about as wide as the product's base
    fill_poly(m, blob_polygon(rng, at[0] + U(rng, -0.2, 0.2) * width, at[1] + w * 0.1, w, w * U(rng, 0.15, 0.35), 0.3, 32))
    a = cv2.GaussianBlur(m, (0, 0), 1.0).astype(np.float32) / 255 * (1 - prod_alpha)
    img *= 1 - a[..., None] * 0.5 * (1 - liquid * 0.7)
    rim = np.clip(a - cv2.erode(a, np.ones((3, 3), np.uint8)), 0, 1)
    img *= (1 - 0.3 * rim)[..., None]
    streak = np.clip(smooth_noise(rng, S, S, max(4.0, w / 4)), 0, 1) ** 2 * a
    img += (streak * U(rng, 0.2, 0.45) + a * 0.04)[..., None]


@dataclass
class Rendered:
    jpeg: bytes
    boxes: list  # (class index, x0, y0, x1, y1) in pixels, exclusive max
    kind: str


def render(rng, S: int, kind: str, classes: list[str]) -> Rendered:
    img = background(rng, S)
    clutter(rng, img)
    L = S * U(rng, 0.45, 0.85)
    prod = BUILDERS[kind](rng, L, set(classes))
    prod.__dict__["puddle"] = None
    local: list[tuple[str, np.ndarray]] = []
    for name in [c for c in APPLY_ORDER if c in classes and c != "foreign_object"]:
        before_rgb, before_a = prod.rgb.copy(), prod.alpha.copy()
        if SHEET_DEFECTS[name](rng, prod):
            prod.rgb[:] = np.clip(prod.rgb, 0, 1)
            local.append((name, sheet_change(before_rgb, before_a, prod)))
    h, w = prod.alpha.shape
    Hm = placement(rng, kind, w, h, S)
    warped_pm = cv2.warpPerspective(prod.rgb * prod.alpha[..., None], Hm, (S, S), flags=cv2.INTER_LINEAR)
    warped_a = cv2.warpPerspective(prod.alpha, Hm, (S, S), flags=cv2.INTER_LINEAR)
    # Drop shadow away from the light.
    la = U(rng, 0, 2 * math.pi)
    off = U(rng, 0.01, 0.035) * S
    sh = cv2.GaussianBlur(warped_a, (0, 0), U(rng, 3, 9) * S / 416)
    sh = cv2.warpAffine(sh, np.float32([[1, 0, off * math.cos(la)], [0, 1, off * math.sin(la)]]), (S, S))
    img *= (1 - U(rng, 0.3, 0.6) * sh)[..., None]
    img[:] = img * (1 - warped_a[..., None]) + warped_pm
    masks: list[tuple[str, np.ndarray]] = []
    for name, m in local:
        wm = cv2.warpPerspective(m.astype(np.float32), Hm, (S, S), flags=cv2.INTER_LINEAR) > 0.3
        masks.append((name, wm))
    if prod.__dict__.get("puddle") is not None:
        before = img.copy()
        bx, by = warp_point(Hm, *prod.base)
        pw = max(math.dist(warp_point(Hm, w, h), warp_point(Hm, 0, h)), 0.3 * w)
        puddle(rng, img, warped_a, (bx, by), pw, prod.puddle)
        change = np.abs(img - before).max(2) > DIFF_THRESHOLD
        masks = [(n, m | change) if n == "leak" else (n, m) for n, m in masks]
    if "foreign_object" in classes:
        inside = erode(warped_a > 0.9, 3)
        at = pick_point(rng, inside)
        if at is not None:
            before = img.copy()
            foreign_object(rng, img, at, max(w, h) * 1.0)
            masks.append(("foreign_object", np.abs(img - before).max(2) > DIFF_THRESHOLD))
    # Lighting: a light with falloff, a colour cast, a specular glint on the product.
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    lx, ly = U(rng, -0.3, 1.3) * S, U(rng, -0.3, 1.3) * S
    fall = np.exp(-((xx - lx) ** 2 + (yy - ly) ** 2) / (2 * (U(rng, 0.5, 1.3) * S) ** 2))
    gain = U(rng, 0.55, 0.85) + U(rng, 0.25, 0.55) * fall
    temp = U(rng, -0.12, 0.12)
    cast = np.array([1 - temp, 1 + U(rng, -0.03, 0.03), 1 + temp], np.float32)
    img *= gain[..., None] * cast
    if rng.random() < 0.6:
        gm = np.zeros((S, S), np.uint8)
        gx, gy = warp_point(Hm, w * U(rng, 0.2, 0.8), h * U(rng, 0.1, 0.6))
        cv2.ellipse(gm, (int(gx), int(gy)), (max(2, int(S * U(rng, 0.02, 0.08))), max(1, int(S * U(rng, 0.01, 0.03)))),
                    U(rng, 0, 180), 0, 360, 255, -1, cv2.LINE_AA)
        g = cv2.GaussianBlur(gm, (0, 0), S * 0.01 + 1).astype(np.float32) / 255 * warped_a
        img += (g * U(rng, 0.1, 0.35))[..., None]
    # Camera.
    r = rng.random()
    if r < 0.4:
        img = cv2.GaussianBlur(img, (0, 0), U(rng, 0.4, 1.4) * S / 416 + 0.2)
    elif r < 0.6:
        n = int(rng.integers(3, 8))
        k = np.zeros((n, n), np.float32)
        a = U(rng, 0, math.pi)
        c = (n - 1) / 2
        cv2.line(k, (int(round(c - c * math.cos(a))), int(round(c - c * math.sin(a)))),
                 (int(round(c + c * math.cos(a))), int(round(c + c * math.sin(a)))), 1.0, 1)
        img = cv2.filter2D(img, -1, k / k.sum())
    vr = ((xx - S / 2) ** 2 + (yy - S / 2) ** 2) / (S * S / 2)
    img *= (1 - U(rng, 0.05, 0.45) * vr)[..., None]
    sigma = U(rng, 0.004, 0.03)
    img += rng.normal(0, 1, img.shape).astype(np.float32) * (sigma * (0.5 + np.sqrt(np.clip(img, 0, 1))))
    img += rng.normal(0, sigma * 0.5, (S, S, 1)).astype(np.float32)
    out8 = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    ok, enc = cv2.imencode(".jpg", out8, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(45, 96))])
    assert ok
    boxes = []
    for name, m in masks:
        if int(m.sum()) < MIN_PIXELS:
            continue
        ys, xs = np.nonzero(m)
        boxes.append((CLS[name], int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    return Rendered(enc.tobytes(), boxes, kind)


# --------------------------------------------------------------------------------------------- dataset


def plan(rng, n: int) -> list[tuple[str, list[str]]]:
    """Product kind and defect classes per image: ~15 % empty, the rest 1-3 classes, balanced over the set."""
    empty = set(rng.permutation(n)[:int(round(EMPTY_FRACTION * n))].tolist())
    counts = np.zeros(len(CLASSES))
    out = []
    for i in range(n):
        if i in empty:
            out.append((KINDS[int(rng.integers(len(KINDS)))], []))
            continue
        k = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
        first = int(np.lexsort((rng.random(len(CLASSES)), counts))[0])
        kinds = [kd for kd in KINDS if CLASSES[first] in KIND_CLASSES[kd]]
        kind = kinds[int(rng.integers(len(kinds)))]
        chosen = [CLASSES[first]]
        allowed = [c for c in CLASSES if c in KIND_CLASSES[kind] and c != CLASSES[first]]
        order = np.lexsort((rng.random(len(allowed)), counts[[CLS[c] for c in allowed]]))
        chosen += [allowed[j] for j in order[:k - 1]]
        for c in chosen:
            counts[CLS[c]] += 1
        out.append((kind, chosen))
    return out


def yolo_line(c: int, box, W: int, H: int) -> str:
    x0, y0, x1, y1 = box
    return f"{c} {(x0 + x1) / 2 / W:.6f} {(y0 + y1) / 2 / H:.6f} {(x1 - x0) / W:.6f} {(y1 - y0) / H:.6f}"


def generate(out: Path, images: int, seed: int, size: int = 416, split: str = "test", progress=None) -> dict:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder")
    img_dir, lab_dir = out / "images" / split, out / "labels" / split
    if img_dir.is_dir() and any(img_dir.iterdir()):
        raise UsageError(f"{img_dir} already holds files; choose an empty output folder")
    for s in SPLITS:
        (out / "images" / s).mkdir(parents=True, exist_ok=True)
        (out / "labels" / s).mkdir(parents=True, exist_ok=True)
    plans = plan(np.random.default_rng([seed, 0]), images)
    digest = hashlib.sha256()
    per_class = [0] * len(CLASSES)
    kinds: dict[str, int] = {}
    empty = 0
    for i, (kind, classes) in enumerate(plans):
        r = render(np.random.default_rng([seed, 1, i]), size, kind, classes)
        stem = f"indep_{i:05d}"
        text = "".join(yolo_line(b[0], b[1:], size, size) + "\n" for b in r.boxes)
        (img_dir / f"{stem}.jpg").write_bytes(r.jpeg)
        (lab_dir / f"{stem}.txt").write_text(text)
        digest.update(stem.encode() + b"\0" + r.jpeg + b"\0" + text.encode() + b"\0")
        for b in r.boxes:
            per_class[b[0]] += 1
        empty += not r.boxes
        kinds[kind] = kinds.get(kind, 0) + 1
        if progress:
            progress(i + 1, images)
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CLASSES))
    (out / "data.yaml").write_text(f"path: {out.resolve()}\ntrain: images/train\nval: images/val\ntest: images/test\n"
                                   f"nc: {len(CLASSES)}\nnames:\n{names}\n")
    manifest = {
        "generator": GENERATOR, "seed": seed, "size": size, "split": split,
        "counts": {"images": images, "empty_images": empty, "boxes": sum(per_class), "product_kinds": dict(sorted(kinds.items()))},
        "boxes_per_class": {n: per_class[i] for i, n in enumerate(CLASSES)},
        "sha256": digest.hexdigest(),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        raise UsageError(message)


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(prog="python -m models.independent_render", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="output dataset folder")
    ap.add_argument("--images", type=int, required=True, help="number of images")
    ap.add_argument("--seed", type=int, required=True, help="random seed")
    ap.add_argument("--size", type=int, default=416, help="square image size in pixels (64..2048)")
    ap.add_argument("--split", default="test", help="train, val or test (default test)")
    try:
        a = ap.parse_args(argv)
        if a.images < 1:
            raise UsageError(f"--images must be at least 1, got {a.images}")
        if a.seed < 0:
            raise UsageError(f"--seed must be non-negative, got {a.seed}")
        if not 64 <= a.size <= 2048:
            raise UsageError(f"--size must be between 64 and 2048, got {a.size}")
        if a.split not in SPLITS:
            raise UsageError(f"--split must be one of {', '.join(SPLITS)}, got {a.split!r}")
        t0 = time.perf_counter()
        m = generate(a.out, a.images, a.seed, a.size, a.split)
    except UsageError as exc:
        print(f"independent_render: error: {exc}", file=sys.stderr)
        return 2
    dt = time.perf_counter() - t0
    print(f"wrote {m['counts']['images']} images ({m['counts']['empty_images']} undamaged, {m['counts']['boxes']} boxes) "
          f"to {a.out}/images/{a.split} in {dt:.1f} s; sha256 {m['sha256'][:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
