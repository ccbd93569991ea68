"""Product sheets of the independent generator: one flat painted sheet per product kind, with its materials."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from models.independent_paint import (U, bgr, fill_poly, hsv_colour, paint, polyline, print_panel, smooth_noise,
                                      text_marks)


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
