"""Defect painters of the independent generator: each paints one class on a product sheet, where the material allows."""

from __future__ import annotations

import math

import cv2
import numpy as np

from models.independent_classes import DIFF_THRESHOLD
from models.independent_paint import (U, bgr, blob_polygon, erode, fill_poly, paint, pick_point, polyline,
                                      smooth_noise, walk)
from models.independent_products import Product


def inset_point(rng, allowed: np.ndarray, margin: float):
    """``allowed`` eroded by ``margin`` of the sheet's short side (2 px at least), and a random point in it (None
    if nothing is left): a dent or a tear keeps off the edge of the part that can take it."""
    region = erode(allowed, max(2, int(margin * min(allowed.shape))))
    return region, pick_point(rng, region)


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
    region, c = inset_point(rng, p.rigid, 0.05)
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
        pts, _ = walk(rng, x, y, ang, length, max(2.0, u * 0.015), 0.35)
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
    _, c = inset_point(rng, p.tearable, 0.04)
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
            pts, _ = walk(rng, cx + gx * r * 0.3, cy + gy * r * 0.3, a2, r * U(rng, 0.5, 1.1), 3, 0.15)
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
        pts, _ = walk(rng, s[0] - math.cos(a2) * length * 0.4, s[1] - math.sin(a2) * length * 0.4, a2,
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
