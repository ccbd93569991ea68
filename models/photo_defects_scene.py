"""Scene parts for ``models.photo_defects``: benches, product surfaces cut from photos, shading, placement,
foreign objects and the camera pass. All colour arrays are float32 BGR 0..255 until the camera pass.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from models.photo_defects_paint import Light, Surface, add_film_sheen, add_tamper_strip

PRODUCT_KINDS = ("carton", "pouch", "bottle", "device")


def _noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth value noise in 0..1 (random grid, bicubic upsampling)."""
    g = rng.random((cells + 1, cells + 1)).astype(np.float32)
    return np.clip(cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)


def make_bench(rng: np.random.Generator, bases: list[np.ndarray], size: int) -> np.ndarray:
    """A bench: wood, fabric, concrete, brushed metal, or a blurred recoloured photo crop."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    kind = int(rng.integers(0, 5))
    if kind == 0:  # wood: growth rings bent by low-frequency noise, fine grain along them
        a = rng.uniform(0, np.pi)
        u = xx * math.cos(a) + yy * math.sin(a)
        rings = np.sin((u + 25 * _noise(rng, size, size, 3)) / rng.uniform(3, 9))
        grain = cv2.blur(rng.random((size, size)).astype(np.float32), (1, 9) if abs(math.sin(a)) > 0.7 else (9, 1))
        tone = 0.75 + 0.12 * rings + 0.15 * grain
        base = np.float32([[60, 100, 150], [90, 130, 170], [40, 60, 90], [130, 170, 200]][int(rng.integers(0, 4))])
        out = base * tone[..., None]
    elif kind == 1:  # fabric: a weave with slubs
        p = rng.uniform(2.5, 5)
        weave = 0.5 + 0.25 * np.sin(xx * 2 * np.pi / p) + 0.25 * np.sin(yy * 2 * np.pi / p)
        out = rng.uniform(40, 200, 3).astype(np.float32) * (0.7 + 0.3 * weave * (0.7 + 0.6 * _noise(rng, size, size, 12)))[..., None]
    elif kind == 2:  # concrete: octaves of noise, speckles
        n = 0.5 * _noise(rng, size, size, 4) + 0.3 * _noise(rng, size, size, 16) + 0.2 * rng.random((size, size)).astype(np.float32)
        out = np.float32(rng.uniform(100, 170)) * np.float32([1.0, 1.0, rng.uniform(0.95, 1.08)]) * (0.7 + 0.5 * n)[..., None]
    elif kind == 3:  # brushed metal: noise stretched along one axis, a broad sheen
        streak = cv2.resize(rng.random((size, 6)).astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
        streak = streak if rng.random() < 0.5 else streak.T
        sheen = 0.8 + 0.3 * np.sin(xx / size * np.pi * rng.uniform(0.5, 2) + rng.uniform(0, 6))
        out = np.float32([rng.uniform(120, 190)] * 3) * np.float32([1.03, 1.0, 0.97]) * (sheen * (0.85 + 0.2 * streak))[..., None]
    else:  # another photo, out of focus and recoloured
        b = bases[int(rng.integers(0, len(bases)))]
        crop = cv2.resize(b, (size // 4, size // 4)).astype(np.float32)
        crop = cv2.GaussianBlur(crop, (0, 0), rng.uniform(1.5, 4))
        grey = crop.mean(2, keepdims=True)
        crop = grey + (crop - grey) * rng.uniform(0.0, 0.6)
        out = cv2.resize(crop, (size, size), interpolation=cv2.INTER_CUBIC) * rng.uniform(0.5, 1.0)
    return np.clip(out, 0, 255).astype(np.float32)


def _recolour(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Photometric variety of the print: hue rotation, channel swap, contrast/brightness."""
    if rng.random() < 0.35:
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(rng.integers(0, 180))) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if rng.random() < 0.15:
        img = img[..., rng.permutation(3)]
    out = img.astype(np.float32)
    m = out.mean()
    return np.clip((out - m) * rng.uniform(0.8, 1.2) + m * rng.uniform(0.85, 1.15), 0, 255)


def make_surface(rng: np.random.Generator, bases: list[np.ndarray], size: int, kind: str, light: Light,
                 strip: bool, film: bool) -> Surface:
    """A product cut from a photo, in texture space with an empty margin round it."""
    pw = int(rng.uniform(0.38, 0.7) * size)
    ph = int(rng.uniform(0.38, 0.72) * size)
    if kind == "bottle":
        pw = int(pw * 0.7)
    pad = int(0.12 * max(pw, ph)) + 4
    src = bases[int(rng.integers(0, len(bases)))]
    sh, sw = src.shape[:2]
    scale = rng.uniform(0.45, 1.0)
    cw, ch = min(sw, int(sw * scale)), min(sh, int(sw * scale * ph / pw))
    ch = min(ch, sh)
    cx, cy = int(rng.integers(0, sw - cw + 1)), int(rng.integers(0, sh - ch + 1))
    crop = cv2.resize(src[cy:cy + ch, cx:cx + cw], (pw, ph), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = cv2.flip(crop, 1)
    colour = _recolour(rng, crop)
    if kind == "device":  # print on dark plastic or metal: faint, desaturated
        grey = colour.mean(2, keepdims=True)
        colour = (grey + (colour - grey) * 0.3) * rng.uniform(0.35, 0.6) + rng.uniform(20, 50)
    H, W = ph + 2 * pad, pw + 2 * pad
    full = np.zeros((H, W, 3), np.float32)
    full[pad:pad + ph, pad:pad + pw] = colour
    alpha = np.zeros((H, W), np.uint8)
    radius = {"carton": rng.uniform(1, 5), "pouch": rng.uniform(8, 22), "bottle": pw * 0.18,
              "device": rng.uniform(8, 24)}[kind]
    r = int(radius)
    x0, y0, x1, y1 = pad, pad, pad + pw - 1, pad + ph - 1
    cv2.rectangle(alpha, (x0 + r, y0), (x1 - r, y1), 255, -1)
    cv2.rectangle(alpha, (x0, y0 + r), (x1, y1 - r), 255, -1)
    for px, py in ((x0 + r, y0 + r), (x1 - r, y0 + r), (x0 + r, y1 - r), (x1 - r, y1 - r)):
        cv2.circle(alpha, (px, py), r, 255, -1, cv2.LINE_AA)
    if kind == "bottle":  # a cap: a ridged plain band narrower than the body
        capw, caph = int(pw * rng.uniform(0.35, 0.6)), int(ph * rng.uniform(0.08, 0.14))
        cx0 = pad + (pw - capw) // 2
        full[pad:pad + caph] = 0
        alpha[pad:pad + caph] = 0
        ridges = 0.85 + 0.15 * np.sin(np.arange(capw, dtype=np.float32) * 1.6)
        full[pad:pad + caph, cx0:cx0 + capw] = rng.uniform(30, 230, 3).astype(np.float32) * ridges[None, :, None]
        alpha[pad:pad + caph, cx0:cx0 + capw] = 255
    if kind == "pouch":  # crimped seals top and bottom
        band = max(int(ph * 0.05), 3)
        crimp = 0.8 + 0.2 * (np.arange(pw) % 4 < 2).astype(np.float32)
        full[pad:pad + band, pad:pad + pw] *= crimp[None, :, None]
        full[pad + ph - band:pad + ph, pad:pad + pw] *= crimp[None, :, None]
    s = Surface(colour=full, alpha=alpha.astype(np.float32) / 255, body=(pad, pad, pad + pw, pad + ph),
                light=light, kind=kind, donors=bases)
    if strip:
        add_tamper_strip(rng, s)
    if film:
        add_film_sheen(rng, s)
    return s


def shading(rng: np.random.Generator, s: Surface) -> tuple[np.ndarray, np.ndarray]:
    """Multiplicative shade and additive highlight of the product's form under the scene light."""
    h, w = s.alpha.shape
    x0, y0, x1, y1 = s.body
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = (xx - x0) / max(x1 - x0, 1), (yy - y0) / max(y1 - y0, 1)
    ramp = 1.0 + 0.12 * ((u - 0.5) * s.light.x + (v - 0.5) * s.light.y)
    spec = np.zeros((h, w), np.float32)
    if s.kind == "bottle":
        nx = np.clip((u - 0.5) * 2, -1, 1)
        nz = np.sqrt(np.clip(1 - nx * nx, 0, 1))
        ramp = ramp * (0.35 + 0.65 * np.clip(nx * s.light.x + nz * s.light.z, 0, 1))
        spec = np.exp(-((u - 0.5 - 0.3 * s.light.x) / 0.05) ** 2) * rng.uniform(0.35, 0.7)
    elif s.kind in ("pouch", "device"):
        d = cv2.distanceTransform((s.alpha > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
        ramp = ramp * (0.7 + 0.3 * np.clip(d / (0.15 * max(x1 - x0, 1)), 0, 1))
        if s.kind == "device":
            spec = np.exp(-((u + v - 0.8 - 0.3 * s.light.x) / 0.25) ** 2) * rng.uniform(0.08, 0.2)
    return ramp.astype(np.float32), spec.astype(np.float32)


def placement(rng: np.random.Generator, s: Surface, size: int) -> np.ndarray:
    """Homography from texture space to the frame: scale, tilt, perspective, a position mostly in view."""
    x0, y0, x1, y1 = s.body
    pw, ph = x1 - x0, y1 - y0
    k = rng.uniform(0.85, 1.15)
    ang = rng.uniform(-0.45, 0.45)
    ca, sa = math.cos(ang), math.sin(ang)
    corners = np.float32([[-pw / 2, -ph / 2], [pw / 2, -ph / 2], [pw / 2, ph / 2], [-pw / 2, ph / 2]]) * k
    corners = corners @ np.float32([[ca, sa], [-sa, ca]])
    corners += rng.uniform(-0.07, 0.07, (4, 2)).astype(np.float32) * np.float32([pw, ph]) * k
    half = np.abs(corners).max(0)
    cx = rng.uniform(min(half[0], size / 2), max(size - half[0], size / 2))
    cy = rng.uniform(min(half[1], size / 2), max(size - half[1], size / 2))
    src = np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    return cv2.getPerspectiveTransform(src, corners + np.float32([cx, cy]))


def warp(img: np.ndarray, hom: np.ndarray, size: int) -> np.ndarray:
    return cv2.warpPerspective(img, hom, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def contact_shadow(alpha: np.ndarray, light: Light, rng: np.random.Generator) -> np.ndarray:
    """Soft cast shadow away from the light plus a tight dark line where the product meets the bench."""
    off = rng.uniform(3, 12)
    soft = cv2.GaussianBlur(alpha, (0, 0), rng.uniform(5, 12))
    m = np.float32([[1, 0, -light.x * off], [0, 1, -light.y * off]])
    soft = cv2.warpAffine(soft, m, alpha.shape[::-1])
    tight = cv2.GaussianBlur(alpha, (0, 0), 1.8)
    return np.clip(rng.uniform(0.3, 0.55) * soft + 0.35 * tight, 0, 0.85)


# --- foreign_object: small real-looking things on or beside the product, each with its own shadow ---------
def _curve(rng: np.random.Generator, x: float, y: float, length: float, curl: float) -> np.ndarray:
    pts = [(x, y)]
    hd, dh = rng.uniform(0, 2 * np.pi), 0.0
    for _ in range(max(int(length / 3), 3)):
        dh = 0.8 * dh + rng.normal(0, curl)
        hd += dh
        x, y = x + 3 * math.cos(hd), y + 3 * math.sin(hd)
        pts.append((x, y))
    return np.array(pts, np.float32)


def paint_foreign_object(rng: np.random.Generator, scene: np.ndarray, at: tuple[float, float], light: Light,
                         donors: list[np.ndarray]) -> np.ndarray:
    h, w = scene.shape[:2]
    x, y = at
    cover = np.zeros((h, w), np.float32)
    colour = np.zeros((h, w, 3), np.float32)
    kind = int(rng.integers(0, 6))
    if kind in (0, 1):  # hair or thread
        pts = _curve(rng, x, y, rng.uniform(30, 120), 0.12 if kind == 0 else 0.25)
        m = np.zeros((h, w), np.uint8)
        cv2.polylines(m, [np.round(pts * 16).astype(np.int32)], False, 255, 1 if kind == 0 else 2, cv2.LINE_AA, shift=4)
        cover = m.astype(np.float32) / 255 * (0.9 if kind == 0 else 1.0)
        if kind == 0:
            col = np.float32([[15, 18, 22], [20, 40, 70], [90, 160, 200], [140, 140, 140]][int(rng.integers(0, 4))])
        else:
            col = rng.uniform(20, 240, 3).astype(np.float32)
        colour[:] = col
        lift = 1.5
    elif kind == 2:  # a paper scrap cut from another photo
        d = donors[int(rng.integers(0, len(donors)))]
        sz = int(rng.uniform(18, 48))
        sx, sy = int(rng.integers(0, d.shape[1] - sz)), int(rng.integers(0, d.shape[0] - sz))
        patch = d[sy:sy + sz, sx:sx + sz].astype(np.float32)
        n = int(rng.integers(4, 8))
        t = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = rng.uniform(0.35, 0.5, n) * sz
        poly = np.stack([sz / 2 + rad * np.cos(t), sz / 2 + rad * np.sin(t)], 1).astype(np.float32)
        rot = cv2.getRotationMatrix2D((sz / 2, sz / 2), float(rng.uniform(0, 360)), 1.0)
        rot[:, 2] += (x - sz / 2, y - sz / 2)
        pm = np.zeros((sz, sz), np.uint8)
        cv2.fillPoly(pm, [np.round(poly * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
        cover = cv2.warpAffine(pm.astype(np.float32) / 255, rot, (w, h))
        colour = cv2.warpAffine(patch * rng.uniform(0.85, 1.1), rot, (w, h))
        lift = 2.5
    elif kind == 3:  # a screw: shaded shaft with thread, round head
        ln, rad = rng.uniform(12, 30), rng.uniform(2, 4)
        a = rng.uniform(0, np.pi)
        tip = (x + ln * math.cos(a), y + ln * math.sin(a))
        m = np.zeros((h, w), np.uint8)
        cv2.line(m, (int(x), int(y)), (int(tip[0]), int(tip[1])), 255, int(rad * 2), cv2.LINE_AA)
        cv2.circle(m, (int(x), int(y)), int(rad * 1.8), 255, -1, cv2.LINE_AA)
        cover = m.astype(np.float32) / 255
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        across = (-(xx - x) * math.sin(a) + (yy - y) * math.cos(a)) / (rad * 1.8)
        along = (xx - x) * math.cos(a) + (yy - y) * math.sin(a)
        metal = rng.uniform(110, 200) * (0.55 + 0.45 * np.cos(np.clip(across, -1.5, 1.5) - 0.5 * light.y))
        metal *= 0.8 + 0.2 * np.sin(along * 2.2)
        colour = np.repeat(metal[..., None], 3, 2).astype(np.float32)
        lift = 2.0
    elif kind == 4:  # a sticker
        sw, shh = rng.uniform(16, 38), rng.uniform(10, 26)
        m = np.zeros((h, w), np.uint8)
        box = cv2.boxPoints(((x, y), (sw, shh), float(rng.uniform(0, 180))))
        cv2.fillPoly(m, [np.round(box * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
        cover = m.astype(np.float32) / 255
        colour[:] = rng.uniform(60, 250, 3).astype(np.float32)
        lines = np.zeros((h, w), np.uint8)
        for i in range(int(rng.integers(1, 4))):
            cv2.line(lines, (int(x - sw / 3), int(y - shh / 4 + i * 4)), (int(x + sw / 4), int(y - shh / 4 + i * 4)), 255, 1)
        colour *= 1 - 0.7 * (lines[..., None] > 0) * (cover[..., None] > 0.5)
        lift = 1.0
    else:  # crumbs
        for _ in range(int(rng.integers(4, 14))):
            cx, cy = x + rng.normal(0, 12), y + rng.normal(0, 12)
            r = rng.uniform(1.2, 3.5)
            m = np.zeros((h, w), np.uint8)
            cv2.ellipse(m, (int(cx), int(cy)), (int(r + 0.5), int(r * rng.uniform(0.5, 1) + 0.5)),
                        float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA)
            cover = np.maximum(cover, m.astype(np.float32) / 255)
        colour[:] = np.float32([60, 120, 175]) * rng.uniform(0.6, 1.2)
        colour *= (0.8 + 0.4 * rng.random((h, w), np.float32))[..., None]
        lift = 1.2
    shadow = cv2.GaussianBlur(cover, (0, 0), 1.2)
    shadow = cv2.warpAffine(shadow, np.float32([[1, 0, -light.x * lift], [0, 1, -light.y * lift]]), (w, h))
    scene *= 1 - 0.45 * np.clip(shadow - cover, 0, 1)[..., None]
    a = cover[..., None]
    scene[:] = scene * (1 - a) + colour * a
    sup = ((cover > 0.01) | (shadow > 0.01)).astype(np.uint8)
    return cv2.dilate(sup, np.ones((5, 5), np.uint8)) > 0


def camera(rng: np.random.Generator, scene: np.ndarray) -> np.ndarray:
    """White balance, exposure, vignetting, chromatic aberration, defocus or motion blur, noise, JPEG."""
    h, w = scene.shape[:2]
    img = scene * rng.uniform(0.85, 1.15, 3).astype(np.float32) * np.float32(rng.uniform(0.7, 1.3))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (0.5 * (w * w + h * h) / 2)
    img *= (1 - rng.uniform(0.0, 0.35) * r2)[..., None]
    if rng.random() < 0.5:  # lateral chromatic aberration: red and blue planes a pixel apart
        dx = int(rng.choice([-1, 1]))
        img[..., 2] = np.roll(img[..., 2], dx, 1)
        img[..., 0] = np.roll(img[..., 0], -dx, 1)
    blur = rng.random()
    if blur < 0.4:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.3))
    elif blur < 0.6:
        n = int(rng.integers(3, 8))
        k = np.zeros((n, n), np.float32)
        a = rng.uniform(0, np.pi)
        c = (n - 1) / 2
        cv2.line(k, (int(round(c - c * math.cos(a))), int(round(c - c * math.sin(a)))),
                 (int(round(c + c * math.cos(a))), int(round(c + c * math.sin(a)))), 1.0, 1)
        img = cv2.filter2D(img, -1, k / k.sum())
    img = np.clip(img, 0, 255)
    img = 255 * (img / 255) ** np.float32(rng.uniform(0.85, 1.15))
    sigma = rng.uniform(1, 6)
    img += rng.normal(0, 1, img.shape).astype(np.float32) * (sigma * np.sqrt(img / 128 + 0.1))
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 96))])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)
