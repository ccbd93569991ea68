"""Bench scene of the independent generator: background, clutter, the placed sheet, scene defects, light, camera."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from models.independent_classes import APPLY_ORDER, CLS, DIFF_THRESHOLD, MIN_PIXELS
from models.independent_defects import SHEET_DEFECTS, sheet_change
from models.independent_paint import (U, bgr, blob_polygon, erode, fill_poly, hsv_colour, paint, pick_point,
                                      polyline, smooth_noise, text_marks, walk)
from models.independent_products import BUILDERS

UPRIGHT = {"bottle", "jar", "can", "pouch"}


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
            pts, _ = walk(rng, x, y, U(rng, 0, 6.28), S * U(rng, 0.3, 0.8), 5, 0.2)
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
        pts, _ = walk(rng, x, y, U(rng, 0, 6.28), scale * U(rng, 0.2, 0.45), 2.5, 0.12)
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
            pts, _ = walk(rng, x, y, U(rng, 0, 6.28), r * U(rng, 1, 2.5), 2, 0.4)
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
