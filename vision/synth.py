"""Procedural product and defect renderer.

Draws catalogue-like products (cartons, bottles, garments, toys, car seats, gadgets) and paints the ten
detector classes of the domain taxonomy onto them. Every painted defect keeps its own mask, so a label's
box is the exact bounding box of the pixels that were changed, after any perspective warp.

Used for three things: the sample catalogue's reference images, the simulated camera's returned items,
and the detector's training data. Everything is driven by a ``numpy.random.Generator`` so a seed
reproduces an image bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import numpy as np

DEFECT_CLASSES: tuple[str, ...] = (
    "scratch",
    "dent",
    "crack",
    "tear",
    "stain",
    "leak",
    "wear",
    "seal_broken",
    "package_damage",
    "foreign_object",
)


class ProductShape(StrEnum):
    CARTON = "carton"
    BOTTLE = "bottle"
    GARMENT = "garment"
    TOY = "toy"
    CAR_SEAT = "car_seat"
    GADGET = "gadget"


# Which defects are physically plausible on which shape; the renderer samples from these.
PLAUSIBLE_DEFECTS: dict[ProductShape, tuple[str, ...]] = {
    ProductShape.CARTON: ("scratch", "dent", "tear", "stain", "leak", "seal_broken", "package_damage", "foreign_object"),
    ProductShape.BOTTLE: ("scratch", "dent", "crack", "stain", "leak", "seal_broken", "foreign_object"),
    ProductShape.GARMENT: ("tear", "stain", "wear", "foreign_object"),
    ProductShape.TOY: ("scratch", "dent", "crack", "stain", "wear", "foreign_object"),
    ProductShape.CAR_SEAT: ("scratch", "dent", "crack", "tear", "stain", "wear", "foreign_object"),
    ProductShape.GADGET: ("scratch", "dent", "crack", "stain", "seal_broken", "package_damage", "foreign_object"),
}


@dataclass(frozen=True, slots=True)
class ProductLook:
    """Everything that makes one SKU look like itself, independent of the scene it is shot in."""

    shape: ProductShape
    body_bgr: tuple[int, int, int]
    accent_bgr: tuple[int, int, int]
    print_seed: int
    aspect: float = 1.0  # width / height of the body


@dataclass(frozen=True, slots=True)
class SceneStyle:
    """How the shot is taken. ``shifted`` picks a deliberately different distribution for generalisation tests."""

    size: tuple[int, int] = (416, 416)  # width, height
    perspective: float = 0.06
    blur_max: float = 1.2
    noise_max: float = 6.0
    jpeg_min: int = 60
    shifted: bool = False
    bench_grey: int | None = None  # a calibrated neutral bench (station camera) instead of random backgrounds
    lighting_jitter: float = 1.0  # scales the random gain and colour cast


@dataclass(slots=True)
class PaintedDefect:
    name: str
    mask: np.ndarray  # uint8, same size as the canvas, 255 where pixels were changed


@dataclass(slots=True)
class RenderedItem:
    image: np.ndarray  # BGR uint8
    product_mask: np.ndarray  # uint8, 255 on the product
    defects: list[PaintedDefect] = field(default_factory=list)

    def boxes(self, min_pixels: int = 6) -> list[tuple[str, tuple[int, int, int, int]]]:
        """Tight xyxy box around each defect's painted pixels (exclusive max, like numpy slicing)."""
        out = []
        for defect in self.defects:
            ys, xs = np.nonzero(defect.mask)
            if xs.size < min_pixels:
                continue
            out.append((defect.name, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)))
        return out


# --------------------------------------------------------------------------------------------- scene


def _background(rng: np.random.Generator, w: int, h: int, shifted: bool, bench_grey: int | None = None) -> np.ndarray:
    if bench_grey is not None:
        noise = rng.normal(0, 2.0, (h, w, 1)).astype(np.float32)
        return np.clip(bench_grey + noise, 0, 255).astype(np.uint8).repeat(3, axis=2)
    if shifted:
        # Other backgrounds: saturated coloured mats with a grid, as on a cutting mat.
        base = rng.integers(40, 200, 3)
        img = np.full((h, w, 3), base, np.uint8)
        step = int(rng.integers(18, 40))
        col = tuple(int(c) for c in np.clip(base + rng.integers(-60, 60, 3), 0, 255))
        for x in range(0, w, step):
            cv2.line(img, (x, 0), (x, h), col, 1)
        for y in range(0, h, step):
            cv2.line(img, (0, y), (w, y), col, 1)
        return img
    grey = int(rng.integers(150, 235))
    tint = rng.integers(-12, 12, 3)
    img = np.full((h, w, 3), np.clip(grey + tint, 0, 255), np.uint8)
    # Soft bench texture: low-frequency noise.
    noise = cv2.resize(rng.normal(0, 8, (h // 16 + 1, w // 16 + 1)).astype(np.float32), (w, h))
    return np.clip(img.astype(np.float32) + noise[..., None], 0, 255).astype(np.uint8)


def _texture(rng: np.random.Generator, h: int, w: int, strength: float, fabric: bool) -> np.ndarray:
    fine = rng.normal(0, strength, (h, w)).astype(np.float32)
    if fabric:
        yy, xx = np.mgrid[0:h, 0:w]
        period = float(rng.uniform(3, 6))
        fine += (np.sin(xx / period) * np.sin(yy / period) * strength * 0.8).astype(np.float32)
    return cv2.GaussianBlur(fine, (3, 3), 0)


def _shade(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator, strength: float) -> None:
    """Directional lighting gradient over the product (in place)."""
    h, w = mask.shape
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    grad = (np.cos(angle) * (xx / w - 0.5) + np.sin(angle) * (yy / h - 0.5)) * strength
    f = img.astype(np.float32) * (1.0 + grad[..., None])
    sel = mask > 0
    img[sel] = np.clip(f[sel], 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------- products


def _rounded_rect(mask: np.ndarray, x1: int, y1: int, x2: int, y2: int, r: int) -> None:
    r = max(1, min(r, (x2 - x1) // 2, (y2 - y1) // 2))
    cv2.rectangle(mask, (x1 + r, y1), (x2 - r, y2), 255, -1)
    cv2.rectangle(mask, (x1, y1 + r), (x2, y2 - r), 255, -1)
    for cx, cy in ((x1 + r, y1 + r), (x2 - r, y1 + r), (x1 + r, y2 - r), (x2 - r, y2 - r)):
        cv2.circle(mask, (cx, cy), r, 255, -1)


def _print_marks(img: np.ndarray, region: tuple[int, int, int, int], look: ProductLook, view: str) -> None:
    """Brand print, logo and a barcode label: fixed per SKU (print_seed) so identity checks can use them."""
    prng = np.random.default_rng(look.print_seed + (0 if view == "front" else 7))
    x1, y1, x2, y2 = region
    w, h = x2 - x1, y2 - y1
    if w < 20 or h < 20:
        return
    accent = look.accent_bgr
    kind = int(prng.integers(0, 3))
    cx, cy = x1 + w // 2, y1 + int(h * prng.uniform(0.3, 0.45))
    rad = max(4, int(min(w, h) * prng.uniform(0.12, 0.2)))
    if kind == 0:
        cv2.circle(img, (cx, cy), rad, accent, -1)
        cv2.circle(img, (cx, cy), rad // 2, look.body_bgr, -1)
    elif kind == 1:
        pts = np.array([[cx, cy - rad], [cx + rad, cy + rad], [cx - rad, cy + rad]], np.int32)
        cv2.fillPoly(img, [pts], accent)
    else:
        cv2.rectangle(img, (cx - rad, cy - rad // 2), (cx + rad, cy + rad // 2), accent, -1)
    # Stripes of "text".
    for i in range(int(prng.integers(2, 4))):
        ty = y1 + int(h * (0.62 + 0.08 * i))
        tw = int(w * prng.uniform(0.3, 0.7))
        cv2.line(img, (x1 + (w - tw) // 2, ty), (x1 + (w + tw) // 2, ty), accent, max(1, h // 60))
    # Barcode label bottom right.
    lw, lh = max(10, w // 4), max(8, h // 8)
    lx, ly = x2 - lw - w // 12, y2 - lh - h // 14
    cv2.rectangle(img, (lx, ly), (lx + lw, ly + lh), (245, 245, 245), -1)
    bx = lx + 2
    while bx < lx + lw - 2:
        bw = int(prng.integers(1, 3))
        cv2.rectangle(img, (bx, ly + 2), (bx + bw - 1, ly + lh - 3), (20, 20, 20), -1)
        bx += bw + int(prng.integers(1, 3))


def _draw_product(
    rng: np.random.Generator, look: ProductLook, w: int, h: int, view: str, scale: float
) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[int, int, int, int]]]:
    """Return (product layer BGR, product mask, named regions) on a w×h canvas."""
    layer = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    regions: dict[str, tuple[int, int, int, int]] = {}
    cx, cy = w // 2 + int(rng.integers(-w // 16, w // 16 + 1)), h // 2 + int(rng.integers(-h // 16, h // 16 + 1))
    bh = int(h * 0.62 * scale)
    bw = int(min(w * 0.8, bh * look.aspect))
    x1, y1, x2, y2 = cx - bw // 2, cy - bh // 2, cx + bw // 2, cy + bh // 2
    body = look.body_bgr
    shape = look.shape

    if shape in (ProductShape.CARTON, ProductShape.GADGET):
        depth = int(bw * 0.15)
        if shape == ProductShape.CARTON or view != "front":
            # Box with a visible top face (3D).
            top = np.array([[x1, y1], [x2, y1], [x2 + depth, y1 - depth], [x1 + depth, y1 - depth]], np.int32)
            side = np.array([[x2, y1], [x2 + depth, y1 - depth], [x2 + depth, y2 - depth], [x2, y2]], np.int32)
            cv2.fillPoly(mask, [top, side], 255)
            cv2.fillPoly(layer, [top], tuple(int(min(255, c * 1.15 + 10)) for c in body))
            cv2.fillPoly(layer, [side], tuple(int(c * 0.7) for c in body))
            cv2.rectangle(mask, (x1, y1), (x2, y2), 255, -1)
            cv2.rectangle(layer, (x1, y1), (x2, y2), body, -1)
            regions["seal"] = (x1 + depth // 2, y1 - depth, x2 + depth // 2, y1)
            regions["corner"] = (x2 - bw // 5, y2 - bh // 5, x2, y2)
            # Tamper seal strip across the top edge.
            sx = (x1 + x2) // 2
            cv2.rectangle(layer, (sx - bw // 14, y1 - depth), (sx + bw // 14, y1 + bh // 6), (235, 235, 225), -1)
            regions["seal_strip"] = (sx - bw // 14, y1 - depth, sx + bw // 14, y1 + bh // 6)
            _print_marks(layer, (x1, y1, x2, y2), look, view)
        else:
            # Bare device: rounded body, dark screen, buttons.
            _rounded_rect(mask, x1, y1, x2, y2, bw // 8)
            layer[mask > 0] = body
            sx1, sy1, sx2, sy2 = x1 + bw // 10, y1 + bh // 10, x2 - bw // 10, y1 + int(bh * 0.6)
            cv2.rectangle(layer, (sx1, sy1), (sx2, sy2), (30, 30, 35), -1)
            cv2.circle(layer, ((x1 + x2) // 2, y1 + int(bh * 0.8)), max(3, bw // 10), look.accent_bgr, -1)
            regions["screen"] = (sx1, sy1, sx2, sy2)
    elif shape == ProductShape.BOTTLE:
        neck_w = max(6, bw // 3)
        shoulder = y1 + bh // 4
        _rounded_rect(mask, x1, shoulder, x2, y2, bw // 5)
        cv2.rectangle(mask, (cx - neck_w // 2, y1 + bh // 10), (cx + neck_w // 2, shoulder + 5), 255, -1)
        pts = np.array([[x1 + bw // 10, shoulder + 8], [cx - neck_w // 2, y1 + bh // 6],
                        [cx + neck_w // 2, y1 + bh // 6], [x2 - bw // 10, shoulder + 8]], np.int32)
        cv2.fillPoly(mask, [pts], 255)
        layer[mask > 0] = body
        # Cap / teat in accent colour.
        cap = np.zeros_like(mask)
        cv2.rectangle(cap, (cx - neck_w // 2 - 2, y1), (cx + neck_w // 2 + 2, y1 + bh // 10), 255, -1)
        mask |= cap
        layer[cap > 0] = look.accent_bgr
        regions["seal"] = (cx - neck_w // 2 - 2, y1 + bh // 10 - 4, cx + neck_w // 2 + 2, y1 + bh // 10 + 6)
        regions["seal_strip"] = regions["seal"]
        # Label band with print.
        ly1, ly2 = y1 + int(bh * 0.45), y1 + int(bh * 0.8)
        cv2.rectangle(layer, (x1 + 2, ly1), (x2 - 2, ly2), (240, 240, 235), -1)
        _print_marks(layer, (x1 + 2, ly1, x2 - 2, ly2), look, view)
        # Specular highlight.
        cv2.line(layer, (x1 + bw // 6, shoulder + 10), (x1 + bw // 6, ly1 - 4), (250, 250, 250), max(2, bw // 20))
    elif shape == ProductShape.GARMENT:
        sleeve = bw // 3
        pts = np.array([
            [x1 + sleeve // 2, y1], [cx - bw // 8, y1], [cx, y1 + bh // 12], [cx + bw // 8, y1], [x2 - sleeve // 2, y1],
            [x2 + sleeve // 2, y1 + bh // 4], [x2 - sleeve // 4, y1 + bh // 3], [x2 - sleeve // 4, y2],
            [x1 + sleeve // 4, y2], [x1 + sleeve // 4, y1 + bh // 3], [x1 - sleeve // 2, y1 + bh // 4],
        ], np.int32)
        pts[:, 0] = np.clip(pts[:, 0], 2, w - 3)
        cv2.fillPoly(mask, [pts], 255)
        layer[mask > 0] = body
        tex = _texture(rng, h, w, 10.0, fabric=True)
        f = layer.astype(np.float32) + tex[..., None]
        layer[mask > 0] = np.clip(f[mask > 0], 0, 255).astype(np.uint8)
        prng = np.random.default_rng(look.print_seed)
        if prng.random() < 0.5:
            for yy in range(y1 + bh // 3, y2, max(6, bh // 10)):
                cv2.line(layer, (x1 + sleeve // 4, yy), (x2 - sleeve // 4, yy), look.accent_bgr, max(2, bh // 40))
            layer[mask == 0] = 0
        else:
            cv2.circle(layer, (cx, y1 + bh // 3), max(5, bw // 8), look.accent_bgr, -1)
    elif shape == ProductShape.TOY:
        r = min(bw, bh) // 4
        cv2.circle(mask, (cx, y1 + r), r, 255, -1)
        cv2.circle(mask, (cx - int(r * 0.8), y1 + r // 4), r // 2, 255, -1)
        cv2.circle(mask, (cx + int(r * 0.8), y1 + r // 4), r // 2, 255, -1)
        cv2.ellipse(mask, (cx, y1 + 2 * r + int(r * 0.9)), (int(r * 1.2), int(r * 1.3)), 0, 0, 360, 255, -1)
        cv2.circle(mask, (cx - int(r * 1.1), y2 - r // 2), r // 2, 255, -1)
        cv2.circle(mask, (cx + int(r * 1.1), y2 - r // 2), r // 2, 255, -1)
        layer[mask > 0] = body
        cv2.circle(layer, (cx - r // 3, y1 + int(r * 0.8)), max(2, r // 8), (20, 20, 20), -1)
        cv2.circle(layer, (cx + r // 3, y1 + int(r * 0.8)), max(2, r // 8), (20, 20, 20), -1)
        cv2.ellipse(layer, (cx, y1 + 2 * r + int(r * 0.9)), (int(r * 0.6), int(r * 0.7)), 0, 0, 360, look.accent_bgr, -1)
    else:  # CAR_SEAT
        _rounded_rect(mask, x1 + bw // 8, y1, x2 - bw // 8, y1 + int(bh * 0.65), bw // 5)
        _rounded_rect(mask, x1, y1 + int(bh * 0.5), x2, y2, bw // 6)
        layer[mask > 0] = body
        tex = _texture(rng, h, w, 7.0, fabric=True)
        f = layer.astype(np.float32) + tex[..., None]
        layer[mask > 0] = np.clip(f[mask > 0], 0, 255).astype(np.uint8)
        cv2.rectangle(layer, (x1 + bw // 4, y1 + bh // 6), (x2 - bw // 4, y1 + int(bh * 0.55)), look.accent_bgr, -1)
        cv2.line(layer, (cx - bw // 6, y1 + bh // 5), (cx - bw // 12, y2 - bh // 8), (25, 25, 25), max(2, bw // 25))
        cv2.line(layer, (cx + bw // 6, y1 + bh // 5), (cx + bw // 12, y2 - bh // 8), (25, 25, 25), max(2, bw // 25))
        cv2.rectangle(layer, (x1 + 4, y2 - bh // 8), (x2 - 4, y2 - 4), tuple(int(c * 0.6) for c in body), -1)
        layer[mask == 0] = 0
    regions.setdefault("body", (x1, y1, x2, y2))
    regions.setdefault("corner", (x2 - bw // 4, y2 - bh // 4, x2, y2))
    return layer, mask, regions


# --------------------------------------------------------------------------------------------- defects


def _point_in(rng: np.random.Generator, mask: np.ndarray, margin: int = 4) -> tuple[int, int] | None:
    inner = cv2.erode(mask, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    ys, xs = np.nonzero(inner)
    if xs.size == 0:
        return None
    i = int(rng.integers(0, xs.size))
    return int(xs[i]), int(ys[i])


def _blend(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray | tuple[float, float, float]) -> None:
    """img = img*(1-a) + colour*a, with a in [0, 1] (float32 array of image size)."""
    a = alpha[..., None].astype(np.float32)
    out = img.astype(np.float32) * (1 - a) + np.asarray(colour, np.float32) * a
    img[:] = np.clip(out, 0, 255).astype(np.uint8)


def _random_walk(rng: np.random.Generator, start: tuple[int, int], steps: int, step_len: float,
                 heading: float, wiggle: float) -> np.ndarray:
    pts = [start]
    x, y = float(start[0]), float(start[1])
    for _ in range(steps):
        heading += rng.normal(0, wiggle)
        x += np.cos(heading) * step_len
        y += np.sin(heading) * step_len
        pts.append((int(round(x)), int(round(y))))
    return np.array(pts, np.int32)


def paint_defect(rng: np.random.Generator, name: str, img: np.ndarray, product: np.ndarray,
                  regions: dict[str, tuple[int, int, int, int]]) -> np.ndarray | None:
    """Paint one defect into img (in place) within the product mask; return its mask (before clipping to
    changed pixels). ``regions`` names boxes on the product: "body", "corner", and where packaged "seal_strip"
    (and optionally "seal", where a leak starts); seal_broken and package_damage need "seal_strip"."""
    h, w = product.shape
    size = float(np.sqrt(product.sum() / 255.0))  # product scale in pixels
    m = np.zeros((h, w), np.uint8)
    p = _point_in(rng, product, margin=max(4, int(size * 0.08)))
    if p is None:
        return None
    if name == "scratch":
        length = int(size * rng.uniform(0.15, 0.35))
        pts = _random_walk(rng, p, 6, length / 6, rng.uniform(0, np.pi), 0.08)
        cv2.polylines(m, [pts], False, 255, int(rng.integers(2, 4)), cv2.LINE_AA)
        m = np.where(m > 60, 255, 0).astype(np.uint8) & product
        bright = rng.random() < 0.6
        _blend(img, (m / 255.0) * rng.uniform(0.6, 0.9), (235, 235, 235) if bright else (35, 35, 35))
    elif name == "dent":
        r = int(size * rng.uniform(0.07, 0.13))
        cv2.ellipse(m, p, (r, int(r * rng.uniform(0.6, 1.0))), rng.uniform(0, 180), 0, 360, 255, -1)
        m &= product
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ang = rng.uniform(0, 2 * np.pi)
        g = (np.cos(ang) * (xx - p[0]) + np.sin(ang) * (yy - p[1])) / max(r, 1)
        shade = np.clip(g, -1, 1) * rng.uniform(0.35, 0.55)
        f = img.astype(np.float32) * (1 + shade[..., None])
        sel = m > 0
        img[sel] = np.clip(f[sel], 0, 255).astype(np.uint8)
        cv2.ellipse(img, p, (r, int(r * 0.8)), 0, 0, 360, (60, 60, 60), 1, cv2.LINE_AA)
        cv2.ellipse(m, p, (r + 1, int(r * 0.8) + 1), 0, 0, 360, 255, 2)
        m &= product
    elif name == "crack":
        main = _random_walk(rng, p, int(rng.integers(6, 10)), size * 0.04, rng.uniform(0, 2 * np.pi), 0.6)
        cv2.polylines(m, [main], False, 255, 2)
        for _ in range(int(rng.integers(1, 4))):
            s = main[int(rng.integers(1, len(main)))]
            br = _random_walk(rng, (int(s[0]), int(s[1])), int(rng.integers(2, 5)), size * 0.03, rng.uniform(0, 2 * np.pi), 0.7)
            cv2.polylines(m, [br], False, 255, 1)
        m &= product
        _blend(img, m / 255.0 * 0.9, (15, 15, 15))
    elif name == "tear":
        r = size * rng.uniform(0.06, 0.12)
        n = 14
        ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
        rad = r * rng.uniform(0.4, 1.3, n)
        pts = np.stack([p[0] + rad * np.cos(ang) * 1.6, p[1] + rad * np.sin(ang) * 0.6], 1).astype(np.int32)
        cv2.fillPoly(m, [pts], 255)
        m &= product
        hole = m > 0
        img[hole] = (np.array([25, 22, 20]) + rng.integers(0, 15, 3)).astype(np.uint8)
        edge = cv2.morphologyEx(m, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) & product
        img[edge > 0] = np.clip(img[edge > 0].astype(np.int32) + 70, 0, 255).astype(np.uint8)
        m |= edge
    elif name == "stain":
        r = int(size * rng.uniform(0.06, 0.14))
        blob = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(3, 7))):
            q = (p[0] + int(rng.normal(0, r * 0.5)), p[1] + int(rng.normal(0, r * 0.5)))
            cv2.circle(blob, q, int(r * rng.uniform(0.4, 0.9)), 1.0, -1)
        blob = cv2.GaussianBlur(blob, (0, 0), r * 0.25)
        alpha = np.clip(blob * 1.4, 0, 1) * rng.uniform(0.55, 0.8)
        alpha *= product / 255.0
        m = ((alpha > 0.08) * 255).astype(np.uint8)
        alpha *= m > 0
        colour = (rng.uniform(20, 60), rng.uniform(50, 100), rng.uniform(80, 130))
        _blend(img, alpha, colour)
    elif name == "leak":
        top = regions.get("seal", regions["body"])
        x = int(rng.integers(top[0], max(top[0] + 1, top[2])))
        y0 = top[3]
        length = int(size * rng.uniform(0.25, 0.5))
        wid = max(3, int(size * rng.uniform(0.03, 0.06)))
        pts = _random_walk(rng, (x, y0), 8, length / 8, np.pi / 2, 0.1)
        cv2.polylines(m, [pts], False, 255, wid)
        cv2.circle(m, tuple(int(v) for v in pts[-1]), int(wid * 0.9), 255, -1)
        m &= product
        alpha = cv2.GaussianBlur(m.astype(np.float32) / 255.0, (5, 5), 0) * (m > 0)
        _blend(img, alpha * 0.55, (90, 110, 120))
        gloss = cv2.erode(m, np.ones((1, 3), np.uint8), iterations=max(1, wid // 3))
        _blend(img, (gloss / 255.0) * 0.35, (250, 250, 250))
    elif name == "wear":
        r = int(size * rng.uniform(0.08, 0.16))
        cv2.ellipse(m, p, (r, int(r * rng.uniform(0.5, 0.9))), rng.uniform(0, 180), 0, 360, 255, -1)
        m &= product
        sel = m > 0
        f = img.astype(np.float32)
        grey = f.mean(axis=2, keepdims=True)
        faded = f * 0.4 + grey * 0.3 + 255 * 0.3
        speck = rng.random((h, w)) < 0.12
        faded[speck] = np.clip(faded[speck] + rng.normal(0, 40, (speck.sum(), 1)), 0, 255)
        img[sel] = np.clip(faded[sel], 0, 255).astype(np.uint8)
    elif name == "seal_broken":
        if "seal_strip" not in regions:
            return None  # nothing sealed on a bare product
        x1, y1, x2, y2 = regions["seal_strip"]
        if x2 - x1 < 4 or y2 - y1 < 4:
            return None
        cut_y = int(rng.integers(y1 + (y2 - y1) // 4, y1 + 3 * (y2 - y1) // 4 + 1))
        gap = max(3, (y2 - y1) // 5)
        pts = np.array([[x1 - 2, cut_y], [x2 + 2, cut_y + int(rng.integers(-3, 4))],
                        [x2 + 2, cut_y + gap], [x1 - 2, cut_y + gap + int(rng.integers(-2, 3))]], np.int32)
        cv2.fillPoly(m, [pts], 255)
        m &= product
        img[m > 0] = (40, 40, 45)
        # A lifted flap of the seal: it may stick out past the product's outline, and is labelled too.
        flap = np.array([[x1, cut_y], [x2, cut_y], [x2 + (x2 - x1) // 2, cut_y - gap * 2]], np.int32)
        cv2.fillPoly(img, [flap], (200, 200, 190))
        cv2.fillPoly(m, [flap], 255)
        zig = np.array([[x, cut_y + (3 if (x // 3) % 2 else 0)] for x in range(x1, x2, 3)], np.int32)
        if len(zig) > 1:
            cv2.polylines(img, [zig], False, (250, 250, 250), 1)
            cv2.polylines(m, [zig], False, 255, 1)
    elif name == "package_damage":
        if "seal_strip" not in regions:
            return None  # package damage needs a package
        x1, y1, x2, y2 = regions["corner"]
        if rng.random() < 0.5:
            # Crushed corner: creased triangle, darker.
            cx, cy = x2, y2
            d = int(size * rng.uniform(0.15, 0.25))
            tri = np.array([[cx, cy - d], [cx - d, cy], [cx, cy]], np.int32)
            cv2.fillPoly(m, [tri], 255)
            m &= product
            f = img.astype(np.float32) * 0.6
            img[m > 0] = f[m > 0].astype(np.uint8)
            for k in range(3):
                o = int(d * (0.3 + 0.2 * k))
                cv2.line(img, (cx, cy - o), (cx - o, cy), (40, 40, 40), 1)
        else:
            # Puncture with torn flaps.
            r = int(size * rng.uniform(0.05, 0.09))
            n = 9
            ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
            rad = r * rng.uniform(0.5, 1.4, n)
            pts = np.stack([p[0] + rad * np.cos(ang), p[1] + rad * np.sin(ang)], 1).astype(np.int32)
            cv2.fillPoly(m, [pts], 255)
            m &= product
            img[m > 0] = (30, 35, 45)
            for a in ang[::3]:
                e = (int(p[0] + r * 1.5 * np.cos(a)), int(p[1] + r * 1.5 * np.sin(a)))
                cv2.line(img, p, e, (150, 170, 190), 2)
                cv2.line(m, p, e, 255, 2)
            m &= product
    elif name == "foreign_object":
        if rng.random() < 0.5:
            # A hair: long thin dark curve.
            pts = _random_walk(rng, p, 12, size * 0.03, rng.uniform(0, 2 * np.pi), 0.35)
            cv2.polylines(m, [pts], False, 255, 2, cv2.LINE_AA)
            m = np.where(m > 60, 255, 0).astype(np.uint8)
            _blend(img, m / 255.0 * 0.9, (20, 18, 15))
        else:
            # Crumbs: a cluster of small irregular blobs.
            for _ in range(int(rng.integers(4, 9))):
                q = (p[0] + int(rng.normal(0, size * 0.03)), p[1] + int(rng.normal(0, size * 0.03)))
                cv2.circle(m, q, int(rng.integers(2, 5)), 255, -1)
            colour = (rng.uniform(40, 90), rng.uniform(90, 150), rng.uniform(150, 210))
            _blend(img, m / 255.0, colour)
    else:
        raise ValueError(f"unknown defect class {name!r}")
    return m if m.any() else None


# --------------------------------------------------------------------------------------------- render


def labelled_change(name: str, mask: np.ndarray, before: np.ndarray, after: np.ndarray,
                    min_pixels: int = 6) -> PaintedDefect | None:
    """The label of one painted defect: exactly the pixels that changed, within the defect's own mask (None when
    fewer than ``min_pixels`` did)."""
    changed = np.any(np.abs(after.astype(np.int16) - before.astype(np.int16)) > 6, axis=2)
    tight = ((mask > 0) & changed).astype(np.uint8) * 255
    return PaintedDefect(name, tight) if tight.sum() / 255 >= min_pixels else None


def render_item(
    rng: np.random.Generator,
    look: ProductLook,
    defects: tuple[str, ...] = (),
    style: SceneStyle = SceneStyle(),
    view: str = "front",
    clean_reference: bool = False,
) -> RenderedItem:
    """Render one shot of a product with the given defects painted on.

    ``clean_reference`` renders a catalogue image: neutral background, no perspective, no noise.
    """
    w, h = style.size
    if clean_reference:
        bg = np.full((h, w, 3), 245, np.uint8)
        scale = 1.0
    else:
        bg = _background(rng, w, h, style.shifted, style.bench_grey)
        scale = float(rng.uniform(0.75, 1.05) if not style.shifted else rng.uniform(0.55, 1.15))
    layer, product, regions = _draw_product(rng, look, w, h, view, scale)
    img = bg.copy()
    img[product > 0] = layer[product > 0]
    if not clean_reference:
        _shade(img, product, rng, 0.35 if not style.shifted else 0.6)
        # Drop shadow on the background makes edges realistic.
        shadow = cv2.GaussianBlur(np.roll(product, (6, 6), axis=(0, 1)).astype(np.float32) / 255.0, (0, 0), 5)
        shadow *= product == 0
        _blend(img, shadow * 0.35, (0, 0, 0))

    painted: list[PaintedDefect] = []
    for name in defects:
        before = img.copy()
        mask = paint_defect(rng, name, img, product, regions)
        if mask is None:
            continue
        labelled = labelled_change(name, mask, before, img)
        if labelled is not None:
            painted.append(labelled)

    if not clean_reference:
        # Perspective warp applied identically to image, product mask and every defect mask.
        k = style.perspective * (2.0 if style.shifted else 1.0)
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        dst = src + rng.uniform(-k, k, (4, 2)).astype(np.float32) * np.float32([w, h])
        mtx = cv2.getPerspectiveTransform(src, dst)
        img = cv2.warpPerspective(img, mtx, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        product = cv2.warpPerspective(product, mtx, (w, h), flags=cv2.INTER_NEAREST)
        for d in painted:
            d.mask = cv2.warpPerspective(d.mask, mtx, (w, h), flags=cv2.INTER_NEAREST)
        # Lighting: global gain and colour cast (stronger in the shifted set).
        j = style.lighting_jitter
        gain = 1 + j * (rng.uniform(-0.2, 0.15) if not style.shifted else rng.uniform(-0.4, 0.3))
        cast = 1 + j * (rng.uniform(-0.07, 0.07, 3) if not style.shifted else rng.uniform(-0.2, 0.2, 3))
        img = np.clip(img.astype(np.float32) * gain * cast, 0, 255).astype(np.uint8)
        sigma = rng.uniform(0, style.blur_max)
        if sigma > 0.3:
            img = cv2.GaussianBlur(img, (0, 0), sigma)
        noise = rng.normal(0, rng.uniform(0, style.noise_max), img.shape)
        img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        quality = int(rng.integers(style.jpeg_min, 96))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    painted = [d for d in painted if d.mask.any()]
    return RenderedItem(image=img, product_mask=product, defects=painted)


def random_look(rng: np.random.Generator, shape: ProductShape | None = None) -> ProductLook:
    shape = shape or ProductShape(rng.choice([s.value for s in ProductShape]))
    body = tuple(int(c) for c in rng.integers(30, 230, 3))
    accent = tuple(int(c) for c in rng.integers(0, 255, 3))
    aspect = {
        ProductShape.CARTON: rng.uniform(0.8, 1.4),
        ProductShape.BOTTLE: rng.uniform(0.35, 0.55),
        ProductShape.GARMENT: rng.uniform(0.8, 1.0),
        ProductShape.TOY: rng.uniform(0.7, 0.9),
        ProductShape.CAR_SEAT: rng.uniform(0.7, 0.9),
        ProductShape.GADGET: rng.uniform(0.6, 1.2),
    }[shape]
    return ProductLook(shape, body, accent, int(rng.integers(0, 2**31)), float(aspect))


def random_defects(rng: np.random.Generator, shape: ProductShape, clean_share: float = 0.15) -> tuple[str, ...]:
    if rng.random() < clean_share:
        return ()
    options = PLAUSIBLE_DEFECTS[shape]
    n = int(rng.choice([1, 1, 2, 2, 3]))
    return tuple(rng.choice(options, size=n, replace=n > len(options)))
