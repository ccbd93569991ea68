"""Training samples from real photos: defects composited onto real packaging, and real undamaged negatives.

A detector trained on one renderer's products learns that renderer: on real photos it takes print, logos and
barcodes for defects. These samples put real product surfaces in front of it, undamaged (every box on them
would be a false alarm) and with defects painted onto them and then photographed again: the defect goes
through the same blur, noise, colour cast, perspective and JPEG as the photo around it, so its edges are no
sharper than the print's.

The base photos come from ``models.real_photos`` (only a set whose licence allows training).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vision.synth import PaintedDefect, RenderedItem, labelled_change, paint_defect

# Classes that can be painted onto a photo of packaging; seal_broken is painted on a strip along the top of
# the product, leak runs down from it.
COMPOSITE_CLASSES = ("scratch", "dent", "crack", "tear", "stain", "leak", "wear", "seal_broken",
                     "package_damage", "foreign_object")


def load_bases(folder: Path, limit_side: int = 900) -> list[np.ndarray]:
    """The base photos of ``folder`` (jpg/jpeg/png, name order), bounded to ``limit_side`` px; unreadable files
    are an error naming the file."""
    out = []
    for path in sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{path}: not a readable image")
        s = limit_side / max(img.shape[:2])
        if s < 1:
            img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        out.append(img)
    if not out:
        raise ValueError(f"{folder}: no images (extract them with python -m models.real_photos)")
    return out


def _crop(rng: np.random.Generator, base: np.ndarray, size: int) -> np.ndarray:
    """A random square crop of 45-100 % of the short side, flipped or turned, resized to ``size``."""
    h, w = base.shape[:2]
    side = int(min(h, w) * rng.uniform(0.45, 1.0))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    img = base[y:y + side, x:x + side]
    img = np.rot90(img, int(rng.integers(0, 4)))
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return cv2.resize(np.ascontiguousarray(img), (size, size), interpolation=cv2.INTER_AREA)


def _bench(rng: np.random.Generator, bases: list[np.ndarray], size: int) -> np.ndarray:
    """A background: a plain bench with grain, or another photo blurred out of focus."""
    if rng.random() < 0.5:
        grey = rng.uniform(90, 220)
        tint = rng.uniform(-12, 12, 3)
        bg = np.full((size, size, 3), grey, np.float32) + tint
        bg += cv2.GaussianBlur(rng.normal(0, 10, (size, size)).astype(np.float32), (0, 0), 2)[..., None]
        return np.clip(bg, 0, 255).astype(np.uint8)
    other = _crop(rng, bases[int(rng.integers(0, len(bases)))], size)
    return cv2.GaussianBlur(other, (0, 0), rng.uniform(6, 14))


def _place_on_bench(rng: np.random.Generator, product_img: np.ndarray, bg: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The product photo shrunk into a rounded box on the bench, with a soft shadow; (image, product mask)."""
    size = bg.shape[0]
    scale = rng.uniform(0.5, 0.85)
    pw, ph = int(size * scale * rng.uniform(0.75, 1.0)), int(size * scale * rng.uniform(0.75, 1.0))
    small = cv2.resize(product_img, (pw, ph), interpolation=cv2.INTER_AREA)
    x = int(rng.integers(0, size - pw + 1))
    y = int(rng.integers(0, size - ph + 1))
    mask = np.zeros((size, size), np.uint8)
    r = int(min(pw, ph) * rng.uniform(0.0, 0.12))
    cv2.rectangle(mask, (x + r, y), (x + pw - 1 - r, y + ph - 1), 255, -1)
    cv2.rectangle(mask, (x, y + r), (x + pw - 1, y + ph - 1 - r), 255, -1)
    for cx, cy in ((x + r, y + r), (x + pw - 1 - r, y + r), (x + r, y + ph - 1 - r), (x + pw - 1 - r, y + ph - 1 - r)):
        cv2.circle(mask, (cx, cy), r, 255, -1)
    img = bg.astype(np.float32)
    shadow = cv2.GaussianBlur(np.roll(mask, (int(rng.integers(3, 10)),) * 2, axis=(0, 1)).astype(np.float32) / 255,
                              (0, 0), rng.uniform(3, 8))
    img *= 1 - 0.4 * shadow[..., None] * (mask[..., None] == 0)
    canvas = np.zeros_like(bg)
    canvas[y:y + ph, x:x + pw] = small
    sel = mask > 0
    img[sel] = canvas[sel]
    return img.astype(np.uint8), mask


def _regions(mask: np.ndarray, rng: np.random.Generator) -> dict[str, tuple[int, int, int, int]]:
    ys, xs = np.nonzero(mask)
    x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    bw, bh = x2 - x1, y2 - y1
    strip_h = max(6, int(bh * rng.uniform(0.06, 0.1)))
    sy = y1 + int(bh * rng.uniform(0.03, 0.1))
    regions = {"body": (x1, y1, x2, y2), "seal_strip": (x1 + bw // 8, sy, x2 - bw // 8, sy + strip_h),
               "seal": (x1 + bw // 4, sy, x2 - bw // 4, sy + strip_h)}
    corner = int(rng.integers(0, 4))  # the painter creases the box's lower-right corner: turn the photo later
    regions["corner"] = (x2 - bw // 4, y2 - bh // 4, x2, y2)
    regions["_turn"] = (corner, 0, 0, 0)
    return regions


def _photograph(rng: np.random.Generator, img: np.ndarray, masks: list[np.ndarray]
                ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The camera after compositing: perspective, lighting gradient and cast, gamma, blur, noise, JPEG."""
    h, w = img.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = src + rng.uniform(-0.06, 0.06, (4, 2)).astype(np.float32) * np.float32([w, h])
    mtx = cv2.getPerspectiveTransform(src, dst)
    img = cv2.warpPerspective(img, mtx, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    masks = [cv2.warpPerspective(m, mtx, (w, h), flags=cv2.INTER_NEAREST) for m in masks]
    f = img.astype(np.float32) / 255
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(ang) * (xx / w - 0.5) + np.sin(ang) * (yy / h - 0.5)) * rng.uniform(0, 0.5)
    f *= (1 + ramp)[..., None] * rng.uniform(0.7, 1.2) * (1 + rng.uniform(-0.12, 0.12, 3))
    f = np.clip(f, 0, 1) ** rng.uniform(0.8, 1.25)
    img = (f * 255).astype(np.uint8)
    sigma = rng.uniform(0, 1.6)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img = np.clip(img.astype(np.float32) + rng.normal(0, rng.uniform(0, 7), img.shape), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(45, 96))])
    if ok:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img, masks


def composite_sample(rng: np.random.Generator, bases: list[np.ndarray], defects: tuple[str, ...],
                     size: int = 416) -> RenderedItem:
    """One real photo with ``defects`` painted on (none: a real undamaged negative), photographed again.

    Half the samples are the photo filling the frame (a close-up of the package), half the photo as a product
    on a bench. Labels are the pixels each defect changed, as for rendered samples.
    """
    product_img = _crop(rng, bases[int(rng.integers(0, len(bases)))], size)
    if rng.random() < 0.5:
        img, product = product_img, np.full((size, size), 255, np.uint8)
    else:
        img, product = _place_on_bench(rng, product_img, _bench(rng, bases, size))
    img = np.ascontiguousarray(img)
    regions = _regions(product, rng)
    turn = regions.pop("_turn")[0]
    painted: list[PaintedDefect] = []
    for name in defects:
        before = img.copy()
        mask = paint_defect(rng, name, img, product, regions)
        if mask is None:
            continue
        # Feather the paint into the photo: the print's texture shows through a defect's soft edge.
        soft = cv2.GaussianBlur((mask > 0).astype(np.float32), (0, 0), 0.8)[..., None]
        img = np.clip(before * (1 - soft) + img * soft, 0, 255).astype(np.uint8)
        labelled = labelled_change(name, mask, before, img)
        if labelled is not None:
            painted.append(labelled)
    if turn:
        img = np.ascontiguousarray(np.rot90(img, turn))
        product = np.ascontiguousarray(np.rot90(product, turn))
        for d in painted:
            d.mask = np.ascontiguousarray(np.rot90(d.mask, turn))
    img, warped = _photograph(rng, img, [product] + [d.mask for d in painted])
    product = warped[0]
    for d, m in zip(painted, warped[1:]):
        d.mask = m
    return RenderedItem(image=img, product_mask=product, defects=[d for d in painted if d.mask.any()])
