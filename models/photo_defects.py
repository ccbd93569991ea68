"""A third, independent defect generator for training: defects painted onto products cut from real photos.

    python -m models.photo_defects OUT --images N --seed S [--size 416] [--split train] --bases FOLDER

Each sample is one product (a crop of a real packaging photo, recoloured, shaped as a carton, pouch, bottle or
device, shaded by the scene light, placed with perspective and a contact shadow) on a bench (procedural wood,
fabric, concrete, metal, or a blurred photo crop), zero to three defects of classes plausible for that product,
then a camera pass. Each defect class has a painter of its own (``models.photo_defects_paint``). Print on the
photos (text, barcodes, red dots) and intact tamper strips or shrink-wrap sheen stay unlabelled: hard negatives.

Labels come from the difference between the scene rendered with and without the defects (before the camera
pass), restricted to the region each painter touched carried through the same placement warp: a defect's box is
the tight xyxy box (exclusive max) round the pixels it visibly changed, and one changing under
``MIN_CHANGED_PIXELS`` pixels is not labelled.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.photo_defects_paint import SURFACE_PAINTERS, Light, paint_leak_drip, paint_puddle
from models.photo_defects_scene import (PRODUCT_KINDS, camera, contact_shadow, make_bench, make_surface,
                                        paint_foreign_object, placement, shading, warp)

CLASSES: tuple[str, ...] = ("scratch", "dent", "crack", "tear", "stain", "leak", "wear", "seal_broken",
                            "package_damage", "foreign_object")
PLAUSIBLE: dict[str, tuple[str, ...]] = {
    "carton": ("scratch", "dent", "tear", "stain", "leak", "wear", "seal_broken", "package_damage", "foreign_object"),
    "pouch": ("scratch", "tear", "stain", "leak", "wear", "seal_broken", "package_damage", "foreign_object"),
    "bottle": ("scratch", "dent", "crack", "stain", "leak", "wear", "seal_broken", "foreign_object"),
    "device": ("scratch", "dent", "crack", "stain", "wear", "foreign_object"),
}
CLEAN_SHARE = 0.15
MIN_CHANGED_PIXELS = 6
CHANGE_LEVEL = 10.0  # a pixel counts as changed when a channel moves by more than this (of 255)
BASE_MAX_SIDE = 480  # bases are kept small: crops are resized to at most ~300 px anyway
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

Box = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class PhotoLayers:
    """A rendered scene before the camera pass, with and without its defects, and the labels."""

    clean: np.ndarray  # HxWx3 float32 BGR
    damaged: np.ndarray
    labels: tuple[tuple[str, Box], ...]
    kind: str


@dataclass(frozen=True, slots=True)
class PhotoSample:
    image: np.ndarray  # HxWx3 uint8 BGR
    labels: tuple[tuple[str, Box], ...]
    kind: str

    def boxes(self) -> list[tuple[str, Box]]:
        return list(self.labels)


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"bases folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"bases folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    return files


def load_photo_bases(folder: Path) -> list[np.ndarray]:
    """The product photos, BGR uint8, longest side at most BASE_MAX_SIDE; a clear error if there are none."""
    bases = []
    for path in _image_files(Path(folder)):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"bases image {path} cannot be read")
        k = BASE_MAX_SIDE / max(img.shape[:2])
        if k < 1:
            img = cv2.resize(img, (round(img.shape[1] * k), round(img.shape[0] * k)), interpolation=cv2.INTER_AREA)
        if min(img.shape[:2]) < 64:
            raise ValueError(f"bases image {path} is too small ({img.shape[1]}x{img.shape[0]}); need 64 px a side")
        bases.append(img)
    return bases


def _light(rng: np.random.Generator) -> Light:
    az, elev = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.2)
    return Light(float(np.cos(az) * np.cos(elev)), float(np.sin(az) * np.cos(elev)), float(np.sin(elev)))


def _pick_defects(rng: np.random.Generator, index: int) -> tuple[str, list[str]]:
    """Primary class cycles with index (equal shares); the product kind must suit it; 0-2 extras."""
    if rng.random() < CLEAN_SHARE:
        return PRODUCT_KINDS[int(rng.integers(0, len(PRODUCT_KINDS)))], []
    primary = CLASSES[index % len(CLASSES)]
    kinds = [k for k in PRODUCT_KINDS if primary in PLAUSIBLE[k]]
    kind = kinds[int(rng.integers(0, len(kinds)))]
    extra = int(rng.choice([0, 0, 1, 1, 2]))
    others = [c for c in PLAUSIBLE[kind] if c != primary]
    return kind, [primary, *(others[int(i)] for i in rng.choice(len(others), extra, replace=False))]


def _box(mask: np.ndarray) -> Box | None:
    if int(mask.sum()) < MIN_CHANGED_PIXELS:
        return None
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def render_layers(rng: np.random.Generator, bases: list[np.ndarray], size: int = 416, index: int = 0) -> PhotoLayers:
    """The scene with and without its defects (no camera pass) and the labels measured between them."""
    if not bases:
        raise ValueError("no base photos given")
    light = _light(rng)
    kind, defects = _pick_defects(rng, index)
    seal = "seal_broken" in defects
    strip = kind in ("carton", "bottle") and rng.random() < (0.55 if seal else 0.25)
    film = kind in ("carton", "pouch", "device") and rng.random() < (0.5 if seal else 0.2)
    bench_clean = make_bench(rng, bases, size)
    surf = make_surface(rng, bases, size, kind, light, strip, film)
    colour_clean, alpha_clean = surf.colour.copy(), surf.alpha.copy()
    supports: list[tuple[str, np.ndarray | None, np.ndarray | None]] = []  # (class, texture support, scene support)
    leak_ends: list[tuple[float, float]] = []
    for name in defects:
        if name in SURFACE_PAINTERS:
            supports.append((name, SURFACE_PAINTERS[name](rng, surf), None))
        elif name == "leak":
            sup, end = paint_leak_drip(rng, surf)
            supports.append((name, sup, None))
            if end is not None:
                leak_ends.append(end)
    hom = placement(rng, surf, size)
    bench_dmg = bench_clean.copy()
    for i, end in enumerate(leak_ends):
        p = cv2.perspectiveTransform(np.float32([[end]]), hom)[0, 0]
        puddle = paint_puddle(rng, bench_dmg, float(p[0]), float(p[1]), light)
        k = next(j for j, s in enumerate(supports) if s[0] == "leak" and s[2] is None)
        supports[k] = ("leak", supports[k][1], puddle)
    shade, spec = shading(rng, surf)
    shadow = contact_shadow(warp(alpha_clean, hom, size), light, rng)[..., None]

    def composite(bench: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        lit = colour * shade[..., None] + 255 * spec[..., None]
        a = warp(alpha, hom, size)[..., None]
        return bench * (1 - shadow) * (1 - a) + warp(lit, hom, size) * a

    clean = composite(bench_clean, colour_clean, alpha_clean)
    damaged = composite(bench_dmg, surf.colour, surf.alpha)
    if "foreign_object" in defects:
        scene_alpha = warp(surf.alpha, hom, size)
        if rng.random() < 0.6:
            x0, y0, x1, y1 = surf.body
            tp = np.float32([[[rng.uniform(x0 + 8, x1 - 8), rng.uniform(y0 + 8, y1 - 8)]]])
            at = tuple(float(v) for v in cv2.perspectiveTransform(tp, hom)[0, 0])
        else:  # beside the product, on the bench
            ys, xs = np.nonzero(cv2.dilate((scene_alpha > 0.05).astype(np.uint8), np.ones((61, 61), np.uint8))
                                & (scene_alpha < 0.05))
            j = int(rng.integers(0, len(ys))) if len(ys) else 0
            at = (float(xs[j]), float(ys[j])) if len(ys) else (size / 2, size / 2)
        supports.append(("foreign_object", None, paint_foreign_object(rng, damaged, at, light, bases)))
    damaged = np.clip(damaged, 0, 255)
    clean = np.clip(clean, 0, 255)
    changed = np.abs(damaged - clean).max(2) > CHANGE_LEVEL
    labels = []
    for name, tex, scene_sup in supports:
        region = np.zeros((size, size), bool)
        if tex is not None:
            region |= warp(tex.astype(np.float32), hom, size) > 0.02
        if scene_sup is not None:
            region |= scene_sup
        # the support is where the painter worked; a margin catches what resampling carried a pixel or two out
        region = cv2.dilate(region.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        box = _box(changed & region)
        if box is not None:
            labels.append((name, box))
    return PhotoLayers(clean=clean, damaged=damaged, labels=tuple(labels), kind=kind)


def photo_defect_sample(rng: np.random.Generator, bases: list[np.ndarray], size: int = 416,
                        index: int = 0) -> PhotoSample:
    """One training image; its primary class is CLASSES[index % 10] unless it is a clean sample (~15 %)."""
    layers = render_layers(rng, bases, size, index)
    return PhotoSample(image=camera(rng, layers.damaged), labels=layers.labels, kind=layers.kind)


def _folder_sha256(folder: Path) -> str:
    h = hashlib.sha256()
    for p in _image_files(folder):
        h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def write_dataset(out: Path, images: int, seed: int, bases_folder: Path, size: int = 416,
                  split: str = "train") -> dict:
    """Write a YOLO dataset and its manifest; returns the manifest."""
    bases = load_photo_bases(bases_folder)
    img_dir, lab_dir = out / "images" / split, out / "labels" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    lab_dir.mkdir(parents=True, exist_ok=True)
    content = hashlib.sha256()
    boxes_per_class = dict.fromkeys(CLASSES, 0)
    clean_images = 0
    for i in range(images):
        sample = photo_defect_sample(np.random.default_rng([seed, i]), bases, size, index=i)
        stem = f"photo_{seed}_{i:06d}"
        ok, jpg = cv2.imencode(".jpg", sample.image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {stem}")
        lines = []
        for name, (x0, y0, x1, y1) in sample.boxes():
            boxes_per_class[name] += 1
            lines.append(f"{CLASSES.index(name)} {(x0 + x1) / 2 / size:.6f} {(y0 + y1) / 2 / size:.6f} "
                         f"{(x1 - x0) / size:.6f} {(y1 - y0) / size:.6f}")
        clean_images += not lines
        text = "".join(line + "\n" for line in lines).encode()
        (img_dir / f"{stem}.jpg").write_bytes(jpg.tobytes())
        (lab_dir / f"{stem}.txt").write_bytes(text)
        content.update(stem.encode() + b"\0" + hashlib.sha256(jpg.tobytes()).digest() + hashlib.sha256(text).digest())
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(CLASSES))
    (out / "data.yaml").write_text(f"path: {out.resolve()}\ntrain: images/{split}\nval: images/{split}\n"
                                   f"names:\n{names}")
    manifest = {
        "generator": "models.photo_defects", "seed": seed, "images": images, "size": size, "split": split,
        "clean_images": clean_images, "boxes_per_class": boxes_per_class,
        "bases": {"folder": str(bases_folder), "files": len(bases), "sha256": _folder_sha256(bases_folder)},
        "content_sha256": content.hexdigest(),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.photo_defects", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--images", type=int, required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--split", default="train")
    ap.add_argument("--bases", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.images < 1 or args.size < 128:
        print("error: --images must be at least 1 and --size at least 128", file=sys.stderr)
        return 2
    if not args.split.isidentifier():
        print(f"error: --split {args.split!r} must be a plain name such as train or val", file=sys.stderr)
        return 2
    try:
        manifest = write_dataset(args.out, args.images, args.seed, args.bases, args.size, args.split)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(args.out), "images": manifest["images"], "clean_images": manifest["clean_images"],
                      "boxes_per_class": manifest["boxes_per_class"], "content_sha256": manifest["content_sha256"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
