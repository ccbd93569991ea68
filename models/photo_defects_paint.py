"""Defect painters for ``models.photo_defects``: each class drawn by a physical method of its own.

Painters work on a product surface in texture space (float32 BGR 0..255 plus an alpha silhouette, with an
empty margin round the product so a defect may change the outline) and return a boolean *support*: every pixel
they may have changed. Labels are not taken from the support; they come from the before/after difference of the
rendered scene inside it (see ``models.photo_defects``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Light", "Surface", "SURFACE_PAINTERS", "paint_leak_drip", "paint_puddle",
           "add_tamper_strip", "add_film_sheen"]


@dataclass(frozen=True, slots=True)
class Light:
    """Scene light as a unit vector (x right, y down, z towards the camera)."""

    x: float
    y: float
    z: float

    @property
    def half(self) -> np.ndarray:
        """Blinn half vector between the light and a camera looking straight down."""
        h = np.array([self.x, self.y, self.z + 1.0], np.float32)
        return h / np.linalg.norm(h)


@dataclass(slots=True)
class Surface:
    """A product surface being painted: colour, silhouette and where the product body lies inside the margin."""

    colour: np.ndarray  # HxWx3 float32 BGR 0..255
    alpha: np.ndarray  # HxW float32 0..1
    body: tuple[int, int, int, int]  # x0, y0, x1, y1 of the product rectangle (exclusive max)
    light: Light
    kind: str
    donors: list[np.ndarray]  # other photos, for paper scraps and revealed layers
    under_strip: np.ndarray | None = None  # colour before an intact tamper strip was laid on
    strip: tuple[int, int, int, int] | None = None
    under_film: np.ndarray | None = None  # colour before a shrink-wrap sheen was laid on


def _inside_point(rng: np.random.Generator, s: Surface, margin: float = 0.12) -> tuple[float, float]:
    x0, y0, x1, y1 = s.body
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    return float(rng.uniform(x0 + mx, x1 - mx)), float(rng.uniform(y0 + my, y1 - my))


def _blob(rng: np.random.Generator, shape: tuple[int, int], cx: float, cy: float, rx: float, ry: float,
          rough: float = 0.25, angle: float = 0.0, n: int = 48) -> np.ndarray:
    """Filled irregular blob (radius modulated by a few random harmonics), anti-aliased, float 0..1."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones_like(t)
    for k in range(2, 6):
        r += rough / k * rng.uniform(-1, 1) * np.sin(k * t + rng.uniform(0, 2 * np.pi))
    r = np.clip(r, 0.35, None)
    ca, sa = math.cos(angle), math.sin(angle)
    px, py = rx * r * np.cos(t), ry * r * np.sin(t)
    pts = np.stack([cx + ca * px - sa * py, cy + sa * px + ca * py], 1)
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return m.astype(np.float32) / 255.0


def _walk(rng: np.random.Generator, x: float, y: float, heading: float, steps: int, step: float,
          turn: float) -> np.ndarray:
    """A smooth random walk: heading changes by a correlated random amount each step."""
    pts = [(x, y)]
    dh = 0.0
    for _ in range(steps):
        dh = 0.7 * dh + rng.normal(0, turn)
        heading += dh
        x += step * math.cos(heading)
        y += step * math.sin(heading)
        pts.append((x, y))
    return np.array(pts, np.float32)


def _poly(canvas: np.ndarray, pts: np.ndarray, value: int, thickness: int) -> None:
    cv2.polylines(canvas, [np.round(pts * 16).astype(np.int32)], False, int(value), thickness, cv2.LINE_AA, shift=4)


def _shift(mask: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(mask, m, (mask.shape[1], mask.shape[0]), flags=cv2.INTER_LINEAR)


def _support(*masks: np.ndarray, grow: int = 2) -> np.ndarray:
    m = np.zeros(masks[0].shape, np.uint8)
    for k in masks:
        m |= (k > 0.01).astype(np.uint8)
    return cv2.dilate(m, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)) > 0


def _normals_shade(height: np.ndarray, light: Light, shininess: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    """Lambert ratio (relative to a flat surface) and extra specular from a height field."""
    gy, gx = np.gradient(height)
    norm = np.sqrt(gx * gx + gy * gy + 1.0)
    nx, ny, nz = -gx / norm, -gy / norm, 1.0 / norm
    lamb = np.clip(nx * light.x + ny * light.y + nz * light.z, 0, None) / max(light.z, 0.2)
    h = light.half
    spec = np.clip(nx * h[0] + ny * h[1] + nz * h[2], 0, None) ** shininess - float(h[2]) ** shininess
    return lamb.astype(np.float32), np.clip(spec, -1, 1).astype(np.float32)


# --- scratch: a thin groove or polish line whose glint depends on its direction to the light ---------------
def paint_scratch(rng: np.random.Generator, s: Surface) -> np.ndarray:
    h, w = s.alpha.shape
    x0, y0, x1, y1 = s.body
    length = rng.uniform(0.2, 0.6) * min(x1 - x0, y1 - y0)
    cx, cy = _inside_point(rng, s, 0.2)
    ang = rng.uniform(0, np.pi)
    bend = rng.uniform(-0.25, 0.25) * length
    light_az = math.atan2(s.light.y, s.light.x)
    core = np.zeros((h, w), np.uint8)
    rim = np.zeros((h, w), np.uint8)
    strands = 1 if rng.random() < 0.6 else int(rng.integers(2, 5))
    thick = 1 if rng.random() < 0.75 else 2
    for k in range(strands):
        off = (k - strands / 2) * rng.uniform(2, 4)
        t = np.linspace(0, 1, 24)[:, None]
        p0 = np.array([cx - math.cos(ang) * length / 2, cy - math.sin(ang) * length / 2])
        p2 = np.array([cx + math.cos(ang) * length / 2, cy + math.sin(ang) * length / 2])
        p1 = (p0 + p2) / 2 + np.array([-math.sin(ang), math.cos(ang)]) * (bend + off)
        p0 = p0 + np.array([-math.sin(ang), math.cos(ang)]) * off
        p2 = p2 + np.array([-math.sin(ang), math.cos(ang)]) * off
        pts = ((1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t * t * p2).astype(np.float32)
        a, b = int(rng.integers(0, 6)), int(rng.integers(18, 24))
        for i in range(a, b - 1):
            d = pts[i + 1] - pts[i]
            glint = 0.3 + 0.7 * abs(math.sin(math.atan2(d[1], d[0]) - light_az))
            taper = math.sin(math.pi * (i - a + 0.5) / (b - a)) ** 0.5
            v = int(255 * glint * taper * rng.uniform(0.7, 1.0))
            _poly(core, pts[i:i + 2], v, thick)
            _poly(rim, pts[i:i + 2] + np.float32([s.light.x, s.light.y]), v, 1)
    ac, ar = core.astype(np.float32)[..., None] / 255, rim.astype(np.float32)[..., None] / 255
    ar = np.clip(ar - ac, 0, 1)
    c = s.colour
    if rng.random() < 0.55:  # polished-in line: bright where it catches the light
        c += ac * (255 - c) * rng.uniform(0.5, 0.9)
    else:  # groove: dark core, its far lip lit
        c *= 1 - ac * rng.uniform(0.45, 0.75)
        c += ar * (255 - c) * rng.uniform(0.35, 0.7)
    return _support(core, rim, grow=1)


# --- dent: a height-field dimple shaded by the scene light, print pulled into it --------------------------
def paint_dent(rng: np.random.Generator, s: Surface) -> np.ndarray:
    h, w = s.alpha.shape
    cx, cy = _inside_point(rng, s, 0.18)
    rx = rng.uniform(10, 38)
    ry = rx * rng.uniform(0.5, 1.2)
    depth = rng.uniform(3.0, 8.0) * (rx / 20)
    ang = rng.uniform(0, np.pi)
    r = int(2.4 * max(rx, ry))
    xa, xb, ya, yb = max(int(cx) - r, 0), min(int(cx) + r, w), max(int(cy) - r, 0), min(int(cy) + r, h)
    yy, xx = np.mgrid[ya:yb, xa:xb].astype(np.float32)
    u = ((xx - cx) * math.cos(ang) + (yy - cy) * math.sin(ang)) / rx
    v = (-(xx - cx) * math.sin(ang) + (yy - cy) * math.cos(ang)) / ry
    bumps = np.exp(-2.0 * (u * u + v * v))
    lumps = cv2.resize(rng.normal(0, 1, (4, 4)).astype(np.float32), (xb - xa, yb - ya), interpolation=cv2.INTER_CUBIC)
    height = -depth * bumps * (1 + 0.25 * lumps)
    if rng.random() < 0.4:  # a crease across the dent bottom, as sheet material folds
        height -= 0.35 * depth * np.exp(-(v * 4) ** 2) * np.exp(-(u * u) / 1.5)
    lamb, spec = _normals_shade(height, s.light, rng.uniform(20, 60))
    gy, gx = np.gradient(height)
    pull = rng.uniform(1.0, 2.5)
    roi = cv2.remap(s.colour[ya:yb, xa:xb], xx - xa + pull * gx, yy - ya + pull * gy, cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REFLECT)
    gloss = {"bottle": 0.8, "device": 0.9}.get(s.kind, 0.35)
    s.colour[ya:yb, xa:xb] = roi * lamb[..., None] + 255 * gloss * spec[..., None]
    sup = np.zeros((h, w), bool)
    sup[ya:yb, xa:xb] = np.abs(height) > 0.005 * depth
    return _support(sup.astype(np.float32), grow=2)


# --- crack: a forking fracture with a dark core, lit edge, and one side displaced -------------------------
def paint_crack(rng: np.random.Generator, s: Surface) -> np.ndarray:
    h, w = s.alpha.shape
    x, y = _inside_point(rng, s, 0.2)
    x0, y0, x1, y1 = s.body
    size = min(x1 - x0, y1 - y0)
    heading = rng.uniform(0, 2 * np.pi)
    main = _walk(rng, x, y, heading, int(rng.integers(12, 30)), size / 45 + 1.5, 0.25)
    branches = [main]
    for _ in range(int(rng.integers(1, 5))):
        i = int(rng.integers(2, len(main) - 1))
        d = main[i] - main[i - 1]
        hb = math.atan2(d[1], d[0]) + rng.choice([-1, 1]) * rng.uniform(0.4, 1.1)
        branches.append(_walk(rng, float(main[i, 0]), float(main[i, 1]), hb, int(rng.integers(4, 12)),
                              size / 55 + 1.2, 0.3))
    core = np.zeros((h, w), np.uint8)
    lit = np.zeros((h, w), np.uint8)
    for k, b in enumerate(branches):
        _poly(core, b, 255, 2 if k == 0 and rng.random() < 0.5 else 1)
        _poly(lit, b + np.float32([s.light.x * 1.2, s.light.y * 1.2]), 255, 1)
    # displaced halves: the material on one side of the main fracture slips a pixel or two
    side = np.zeros((h, w), np.uint8)
    d = main[-1] - main[0]
    nrm = np.float32([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-6) * size
    cv2.fillPoly(side, [np.round(np.vstack([main, main[::-1] + nrm])).astype(np.int32)], 1)
    dist = cv2.distanceTransform((core == 0).astype(np.uint8), cv2.DIST_L2, 3)
    reach = rng.uniform(8, 18)
    fall = np.clip(1 - dist / reach, 0, 1) * side
    slip = rng.uniform(0.8, 2.0)
    ux, uy = nrm / (np.linalg.norm(nrm) + 1e-6)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    moved = cv2.remap(s.colour, xx - slip * ux * fall, yy - slip * uy * fall, cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REFLECT)
    s.colour[:] = moved
    ac = core.astype(np.float32)[..., None] / 255
    al = np.clip(lit.astype(np.float32)[..., None] / 255 - ac, 0, 1)
    s.colour *= 1 - ac * rng.uniform(0.65, 0.9)
    s.colour += al * (255 - s.colour) * rng.uniform(0.45, 0.75)
    return _support(core, lit, fall, grow=2)


def _layer(rng: np.random.Generator, s: Surface, shape: tuple[int, int]) -> np.ndarray:
    """What a tear reveals: cardboard fluting, foil, fabric weft, or a dark photo crop (the inside/bench)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = rng.integers(0, 4)
    if kind == 0:
        a = rng.uniform(0, np.pi)
        wave = 0.5 + 0.5 * np.sin((xx * math.cos(a) + yy * math.sin(a)) * 2 * np.pi / rng.uniform(4, 7))
        base = np.float32([70, 120, 165]) * rng.uniform(0.8, 1.1)
        out = base * (0.7 + 0.3 * wave)[..., None]
    elif kind == 1:
        n = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 1.2)
        out = np.repeat((120 + 130 * n)[..., None], 3, 2) * np.float32([1.0, 1.0, 0.97])
    elif kind == 2:
        p = rng.uniform(2.5, 4.5)
        weave = (np.sin(xx * 2 * np.pi / p) * np.sin(yy * 2 * np.pi / p) > 0).astype(np.float32)
        col = rng.uniform(60, 220, 3).astype(np.float32)
        out = col * (0.75 + 0.25 * weave)[..., None]
    else:
        d = s.donors[int(rng.integers(0, len(s.donors)))]
        crop = cv2.resize(d, (w, h)).astype(np.float32)
        out = cv2.GaussianBlur(crop, (0, 0), 3) * rng.uniform(0.2, 0.45)
    return out.astype(np.float32)


# --- tear: a jagged opening revealing another layer, with a curled flap and white paper fibres -------------
def paint_tear(rng: np.random.Generator, s: Surface) -> np.ndarray:
    h, w = s.alpha.shape
    cx, cy = _inside_point(rng, s, 0.2)
    length = rng.uniform(18, 60)
    width = length * rng.uniform(0.2, 0.55)
    ang = rng.uniform(0, np.pi)
    hole = _blob(rng, (h, w), cx, cy, length / 2, width / 2, rough=0.5, angle=ang, n=40)
    jag = cv2.resize(rng.random((h // 3 + 1, w // 3 + 1)).astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
    hole = np.clip(hole * (0.75 + 0.5 * jag) - 0.25, 0, 1) * 1.6
    hole = np.clip(cv2.GaussianBlur(hole, (0, 0), 0.6), 0, 1)
    layer = _layer(rng, s, (h, w))
    depth = cv2.GaussianBlur(hole, (0, 0), 3)  # near the rim the layer lies in the opening's shadow
    layer *= (0.45 + 0.55 * depth)[..., None]
    ring = np.clip(cv2.dilate(hole, np.ones((3, 3), np.uint8)) - hole, 0, 1) * (jag > 0.35)
    # flap: the torn-out piece folded back over the surface beside the opening
    flip = rng.choice([-1.0, 1.0])
    dx, dy = -math.sin(ang) * flip, math.cos(ang) * flip
    flap = _blob(rng, (h, w), cx + dx * width * 0.8, cy + dy * width * 0.8, length * 0.4, width * 0.45,
                 rough=0.45, angle=ang, n=24) * (rng.random() < 0.8)
    flap = np.clip(flap - hole, 0, 1)
    shadow = np.clip(_shift(cv2.GaussianBlur(flap, (0, 0), 2), -s.light.x * 3, -s.light.y * 3) - flap, 0, 1)
    c = s.colour
    c *= 1 - 0.45 * shadow[..., None]
    a = hole[..., None]
    c[:] = c * (1 - a) + layer * a
    c += ring[..., None] * (235 - c) * 0.8
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    curl = 0.55 + 0.45 * np.clip(((xx - cx) * dx + (yy - cy) * dy) / (width + 1), 0, 1)
    back = np.float32(rng.uniform(185, 235)) * np.float32([0.93, 0.97, 1.0])
    f = flap[..., None]
    c[:] = c * (1 - f) + (back * curl[..., None]) * f
    return _support(hole, ring, flap, shadow, grow=2)


STAIN_COLOURS = {"coffee": (45, 85, 140), "tea": (80, 130, 175), "oil": (70, 135, 150), "ink": (150, 60, 30),
                 "wine": (85, 30, 120), "rust": (40, 95, 175), "mud": (70, 95, 110)}


# --- stain: translucent liquid mark, concentrated at a tide-line on its rim (coffee-ring) -----------------
def paint_stain(rng: np.random.Generator, s: Surface) -> np.ndarray:
    h, w = s.alpha.shape
    cx, cy = _inside_point(rng, s, 0.12)
    rx = rng.uniform(8, 42)
    mask = _blob(rng, (h, w), cx, cy, rx, rx * rng.uniform(0.55, 1.0), rough=0.35, angle=rng.uniform(0, np.pi))
    for _ in range(int(rng.integers(0, 5))):  # satellite drops
        a, r = rng.uniform(0, 2 * np.pi), rx * rng.uniform(1.1, 1.8)
        mask = np.maximum(mask, _blob(rng, (h, w), cx + r * math.cos(a), cy + r * math.sin(a),
                                      rx * rng.uniform(0.08, 0.22), rx * rng.uniform(0.08, 0.22)))
    mask = cv2.GaussianBlur(mask, (0, 0), rng.uniform(0.8, 2.0))
    k = int(rng.integers(2, 5))
    ring = np.clip(mask - cv2.erode(mask, np.ones((2 * k + 1, 2 * k + 1), np.uint8)), 0, 1)
    ring = cv2.GaussianBlur(ring, (0, 0), 1.0)
    blot = cv2.resize(rng.random((6, 6)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    conc = mask * rng.uniform(0.3, 0.65) * (0.75 + 0.4 * blot) + ring * rng.uniform(0.3, 0.6)
    name = list(STAIN_COLOURS)[int(rng.integers(0, len(STAIN_COLOURS)))]
    col = np.float32(STAIN_COLOURS[name]) * rng.uniform(0.8, 1.15) / 255
    s.colour *= 1 - np.clip(conc, 0, 0.95)[..., None] * (1 - np.clip(col, 0, 1))
    return _support(mask, ring, grow=1)


# --- leak: a glossy run from the top seam or cap, thinning with a bead at its end -------------------------
def paint_leak_drip(rng: np.random.Generator, s: Surface) -> tuple[np.ndarray, tuple[float, float] | None]:
    """The run on the product; returns its support and, when it reaches the bottom edge, where it left it."""
    h, w = s.alpha.shape
    x0, y0, x1, y1 = s.body
    x = rng.uniform(x0 + 0.15 * (x1 - x0), x1 - 0.15 * (x1 - x0))
    reach_bottom = rng.random() < 0.6
    end_y = y1 - 1 if reach_bottom else y0 + rng.uniform(0.3, 0.8) * (y1 - y0)
    steps = max(int((end_y - y0) / 2), 4)
    xs = x + np.cumsum(rng.normal(0, 0.35, steps + 1))
    ys = np.linspace(y0 + 2, end_y, steps + 1)
    wet = np.zeros((h, w), np.uint8)
    width = rng.uniform(3, 9)
    pts = np.stack([xs, ys], 1).astype(np.float32)
    _poly(wet, pts, 255, max(int(width), 2))
    _poly(wet, pts[: max(steps // 3, 2)], 255, max(int(width * 1.5), 2))
    if not reach_bottom:
        cv2.circle(wet, (int(xs[-1]), int(ys[-1])), int(width * 0.9), 255, -1, cv2.LINE_AA)
    if rng.random() < 0.6:  # the wet band along the seam it came from
        cv2.ellipse(wet, (int(x), int(y0 + 3)), (int(width * rng.uniform(2, 4)), int(width * 0.6) + 1), 0, 0, 360,
                    255, -1, cv2.LINE_AA)
    m = cv2.GaussianBlur(wet.astype(np.float32) / 255, (0, 0), 0.9) * s.alpha
    relief = cv2.GaussianBlur(m, (0, 0), width / 3 + 0.5) * width * 0.8
    lamb, spec = _normals_shade(relief, s.light, 60)
    gy, gx = np.gradient(relief)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    refr = cv2.remap(s.colour, xx + 2 * gx, yy + 2 * gy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    tint = np.float32(STAIN_COLOURS[["oil", "tea", "coffee", "ink"][int(rng.integers(0, 4))]]) / 255
    wetted = refr * (0.55 + 0.35 * tint) * np.clip(lamb, 0.6, 1.4)[..., None] + 255 * np.clip(spec, 0, 1)[..., None]
    a = m[..., None]
    s.colour[:] = s.colour * (1 - a) + wetted * a
    end = (float(xs[-1]), float(y1 - 1)) if reach_bottom else None
    return _support(m, grow=2), end


def paint_puddle(rng: np.random.Generator, scene: np.ndarray, x: float, y: float, light: Light) -> np.ndarray:
    """A flat glossy pool on the bench round (x, y): darkened, tinted, with highlights on its lit side."""
    h, w = scene.shape[:2]
    rx = rng.uniform(12, 40)
    m = _blob(rng, (h, w), x, y + rx * 0.15, rx, rx * rng.uniform(0.25, 0.45), rough=0.3)
    m = cv2.GaussianBlur(m, (0, 0), 1.0)
    edge = np.clip(m - _shift(m, -light.x * 2, -light.y * 2), 0, 1)
    glint = _blob(rng, (h, w), x + light.x * rx * 0.4, y + light.y * rx * 0.1, rx * 0.3, rx * 0.06, rough=0.2)
    a = m[..., None]
    scene *= 1 - a * rng.uniform(0.25, 0.5)
    scene += (edge + 0.8 * glint * m)[..., None] * (255 - scene) * 0.7
    return _support(m, grow=2)


# --- wear: scuffed, faded print; rubbed corners abraded along one stroke direction ------------------------
def paint_wear(rng: np.random.Generator, s: Surface) -> np.ndarray:
    h, w = s.alpha.shape
    x0, y0, x1, y1 = s.body
    if rng.random() < 0.5:
        cx, cy = (x0, x1)[int(rng.integers(0, 2))], (y0, y1)[int(rng.integers(0, 2))]
        r = rng.uniform(15, 45)
    else:
        cx, cy = _inside_point(rng, s, 0.15)
        r = rng.uniform(12, 40)
    m = _blob(rng, (h, w), cx, cy, r, r * rng.uniform(0.4, 1.0), rough=0.5, angle=rng.uniform(0, np.pi))
    m = cv2.GaussianBlur(m, (0, 0), rng.uniform(2, 5)) * s.alpha
    ang = rng.uniform(0, np.pi)
    k = np.zeros((9, 9), np.float32)
    cv2.line(k, (int(4 - 4 * math.cos(ang)), int(4 - 4 * math.sin(ang))),
             (int(4 + 4 * math.cos(ang)), int(4 + 4 * math.sin(ang))), 1.0, 1)
    streak = cv2.filter2D(rng.random((h, w)).astype(np.float32), -1, k / k.sum()) - 0.5
    grey = s.colour.mean(2, keepdims=True)
    a = m[..., None]
    c = s.colour
    c[:] = c * (1 - a * rng.uniform(0.5, 0.9)) + grey * a * rng.uniform(0.5, 0.9)
    c += a * (255 - c) * rng.uniform(0.2, 0.45)
    c += a * streak[..., None] * rng.uniform(60, 110)
    return _support(m, grow=1)


def add_tamper_strip(rng: np.random.Generator, s: Surface) -> None:
    """An intact tamper strip over the top edge: part of the product, never a defect by itself."""
    x0, y0, x1, y1 = s.body
    sw = int(rng.uniform(0.08, 0.16) * (x1 - x0)) + 6
    sx = int(rng.uniform(x0 + 0.2 * (x1 - x0), x1 - 0.2 * (x1 - x0) - sw))
    sh = int(rng.uniform(0.15, 0.3) * (y1 - y0))
    s.under_strip = s.colour.copy()
    col = np.float32([[40, 40, 200], [235, 235, 235], [190, 190, 185], [200, 120, 30]][int(rng.integers(0, 4))])
    band = np.ones((sh, sw, 3), np.float32) * col
    band[:, :, :] *= (0.9 + 0.1 * np.sin(np.arange(sh, dtype=np.float32) / 2.0))[:, None, None]
    s.colour[y0:y0 + sh, sx:sx + sw] = band
    s.strip = (sx, y0, sx + sw, y0 + sh)


def add_film_sheen(rng: np.random.Generator, s: Surface) -> None:
    """Intact shrink-wrap: broad soft diagonal highlights over the whole product."""
    h, w = s.alpha.shape
    s.under_film = s.colour.copy()
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0.4, 1.2)
    u = xx * math.cos(a) + yy * math.sin(a)
    sheen = np.clip(np.sin(u / rng.uniform(14, 30) + rng.uniform(0, 6)), 0, 1) ** 6
    s.colour += (sheen * s.alpha * rng.uniform(0.25, 0.45))[..., None] * (255 - s.colour)


# --- seal_broken: the strip cut and peeled, the shrink-wrap torn open, or the top flap bent open ------------
def paint_seal_broken(rng: np.random.Generator, s: Surface) -> np.ndarray:
    h, w = s.alpha.shape
    if s.strip is not None and s.under_strip is not None:
        sx0, sy0, sx1, sy1 = s.strip
        cut = int(rng.uniform(0.35, 0.75) * (sy1 - sy0)) + sy0
        gap = int(rng.integers(2, 5))
        peeled = np.zeros((h, w), np.float32)
        peeled[sy0:cut + gap, sx0:sx1] = 1
        s.colour[:] = s.colour * (1 - peeled[..., None]) + s.under_strip * peeled[..., None]
        # the lifted end: foreshortened, skewed, lit by its tilt, casting a shadow on the print
        lean = rng.uniform(-0.6, 0.6) * (sx1 - sx0)
        lift = np.float32([[sx0, cut], [sx1, cut], [sx1 + lean, cut - (cut - sy0) * 0.6], [sx0 + lean, cut - (cut - sy0) * 0.6]])
        flap = np.zeros((h, w), np.uint8)
        cv2.fillPoly(flap, [np.round(lift * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
        f = flap.astype(np.float32) / 255
        shadow = np.clip(_shift(cv2.GaussianBlur(f, (0, 0), 2), -s.light.x * 4, 3) - f, 0, 1)
        s.colour *= 1 - 0.5 * shadow[..., None]
        back = np.float32(rng.uniform(200, 240))
        s.colour[:] = s.colour * (1 - f[..., None]) + back * rng.uniform(0.7, 1.0) * f[..., None]
        return _support(peeled, f, shadow, grow=2)
    if s.under_film is not None:
        cx, cy = _inside_point(rng, s, 0.2)
        r = rng.uniform(15, 40)
        hole = _blob(rng, (h, w), cx, cy, r, r * rng.uniform(0.4, 0.9), rough=0.6, angle=rng.uniform(0, np.pi))
        hole = cv2.GaussianBlur(hole, (0, 0), 0.7)
        a = hole[..., None]
        s.colour[:] = s.colour * (1 - a) + s.under_film * a
        crinkle = np.zeros((h, w), np.uint8)
        cnts, _ = cv2.findContours((hole > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        for cnt in cnts:
            pts = cnt[:, 0, :].astype(np.float32)
            for i in range(0, len(pts), 3):
                d = rng.normal(0, 3, 2).astype(np.float32)
                _poly(crinkle, np.stack([pts[i], pts[i] + d]), int(rng.uniform(150, 255)), 1)
        cr = cv2.GaussianBlur(crinkle.astype(np.float32) / 255, (0, 0), 0.5)[..., None]
        s.colour += cr * (255 - s.colour) * 0.85
        return _support(hole, cr[..., 0], grow=2)
    # a bent-open flap at the opening: a dark gap into the pack and the flap's plain back standing out
    x0, y0, x1, y1 = s.body
    fw = rng.uniform(0.25, 0.6) * (x1 - x0)
    fx = rng.uniform(x0, x1 - fw)
    fh = rng.uniform(0.08, 0.18) * (y1 - y0)
    gap = np.float32([[fx, y0], [fx + fw, y0], [fx + fw * 0.9, y0 + fh], [fx + fw * 0.1, y0 + fh]])
    out = np.float32([[fx, y0], [fx + fw, y0], [fx + fw * 1.05, max(y0 - fh * 0.8, 1)], [fx - fw * 0.05, max(y0 - fh * 0.8, 1)]])
    g = np.zeros((h, w), np.uint8)
    o = np.zeros((h, w), np.uint8)
    cv2.fillPoly(g, [np.round(gap * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    cv2.fillPoly(o, [np.round(out * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    gf, of = g.astype(np.float32) / 255, o.astype(np.float32) / 255
    s.colour[:] = s.colour * (1 - gf[..., None]) + np.float32([25, 28, 32]) * gf[..., None]
    back = np.float32([120, 160, 190]) * rng.uniform(0.8, 1.15)
    s.colour[:] = s.colour * (1 - of[..., None]) + back * of[..., None]
    s.alpha[:] = np.maximum(s.alpha, of)
    return _support(gf, of, grow=2)


# --- package_damage: crushed corner, puncture, or split seam on a carton ----------------------------------
def paint_package_damage(rng: np.random.Generator, s: Surface) -> np.ndarray:
    h, w = s.alpha.shape
    x0, y0, x1, y1 = s.body
    mode = int(rng.integers(0, 3))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if mode == 0:  # crushed corner
        cx, cy = (x0, x1 - 1)[int(rng.integers(0, 2))], (y0, y1 - 1)[int(rng.integers(0, 2))]
        size = rng.uniform(22, 55)
        sx, sy = (1 if cx == x0 else -1), (1 if cy == y0 else -1)
        d = ((xx - cx) * sx + (yy - cy) * sy) / size  # 0 at the corner tip, 1 across the crushed zone
        zone = np.clip(1.2 - d, 0, 1) * (d > -0.1) * ((xx - cx) * sx >= -1) * ((yy - cy) * sy >= -1)
        jag = cv2.resize(rng.random((h // 4 + 1, w // 4 + 1)).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        cut = (d < rng.uniform(0.2, 0.4) + 0.12 * jag).astype(np.float32)
        wrinkle = np.sin(((xx - cx) * sy - (yy - cy) * sx) / rng.uniform(3, 6)) * zone
        moved = cv2.remap(s.colour, xx + 2.0 * wrinkle * sx, yy + 2.0 * wrinkle * sy, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)
        lamb, spec = _normals_shade(wrinkle * 2.5, s.light, 20)
        shade = (0.75 + 0.25 * np.clip(lamb, 0, 1.4)) * (1 - 0.25 * zone)
        z = zone[..., None]
        s.colour[:] = s.colour * (1 - z) + (moved * shade[..., None] + 60 * np.clip(spec, 0, 1)[..., None]) * z
        creases = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(2, 5))):
            t = rng.uniform(0.1, 0.9)
            p = np.float32([[cx + sx * size * t, cy], [cx, cy + sy * size * (1 - t) * rng.uniform(0.6, 1.3)]])
            _poly(creases, p, 255, 1)
        cr = creases.astype(np.float32) / 255
        lit = np.clip(_shift(cr, s.light.x, s.light.y) - cr, 0, 1)
        s.colour *= 1 - 0.5 * cr[..., None]
        s.colour += lit[..., None] * (255 - s.colour) * 0.4
        s.alpha *= 1 - cut
        return _support(zone, cut, grow=2)
    if mode == 1:  # puncture: a jagged hole with petals pushed inwards and a bulge round it
        cx, cy = _inside_point(rng, s, 0.15)
        r = rng.uniform(4, 12)
        hole = _blob(rng, (h, w), cx, cy, r, r * rng.uniform(0.6, 1.0), rough=0.7, n=20)
        rr = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        bulge = -1.5 * r * 0.3 * np.exp(-((rr - r * 1.3) / (r * 0.9)) ** 2)
        lamb, spec = _normals_shade(bulge, s.light, 30)
        near = (rr < r * 3.2).astype(np.float32)[..., None]
        s.colour[:] = s.colour * (1 - near) + s.colour * lamb[..., None] * near
        petals = np.zeros((h, w), np.float32)
        for i in range(int(rng.integers(3, 7))):
            a = rng.uniform(0, 2 * np.pi)
            tri = np.float32([[cx + r * 1.1 * math.cos(a - 0.4), cy + r * 1.1 * math.sin(a - 0.4)],
                              [cx + r * 1.1 * math.cos(a + 0.4), cy + r * 1.1 * math.sin(a + 0.4)],
                              [cx + r * 0.2 * math.cos(a), cy + r * 0.2 * math.sin(a)]])
            p = np.zeros((h, w), np.uint8)
            cv2.fillPoly(p, [np.round(tri * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
            facing = 0.5 + 0.5 * (math.cos(a) * s.light.x + math.sin(a) * s.light.y)
            petals = np.maximum(petals, p.astype(np.float32) / 255 * (0.3 + 0.7 * facing))
        a = hole[..., None]
        s.colour[:] = s.colour * (1 - a) + np.float32([18, 20, 24]) * a
        pm = (petals > 0).astype(np.float32)[..., None]
        s.colour[:] = s.colour * (1 - pm) + (s.colour * 0.5 + 120 * petals[..., None]) * pm
        return _support(hole, petals, near[..., 0] * (np.abs(bulge) > 0.05), grow=2)
    # split seam along an edge: a lens-shaped dark slit, one lip lit
    edge = int(rng.integers(0, 4))
    length = rng.uniform(0.3, 0.7) * ((x1 - x0) if edge < 2 else (y1 - y0))
    open_w = rng.uniform(2.5, 6)
    if edge < 2:
        ex = rng.uniform(x0, x1 - length)
        ey = (y0 + 1, y1 - 2)[edge]
        t = np.clip((xx - ex) / length, 0, 1)
        across = np.abs(yy - ey)
        inside = (xx >= ex) & (xx <= ex + length)
    else:
        ey = rng.uniform(y0, y1 - length)
        ex = (x0 + 1, x1 - 2)[edge - 2]
        t = np.clip((yy - ey) / length, 0, 1)
        across = np.abs(xx - ex)
        inside = (yy >= ey) & (yy <= ey + length)
    half = open_w * np.clip(np.sin(np.pi * t), 0, 1) ** 0.7
    slit = np.clip(half - across + 0.5, 0, 1) * inside
    lip = np.clip(half + 2.0 - across, 0, 1) * inside - slit
    a = slit[..., None]
    s.colour[:] = s.colour * (1 - a) + np.float32([20, 22, 26]) * a
    s.colour += np.clip(lip, 0, 1)[..., None] * (255 - s.colour) * 0.35
    return _support(slit, lip, grow=2)


SURFACE_PAINTERS = {
    "scratch": paint_scratch, "dent": paint_dent, "crack": paint_crack, "tear": paint_tear,
    "stain": paint_stain, "wear": paint_wear, "seal_broken": paint_seal_broken,
    "package_damage": paint_package_damage,
}
