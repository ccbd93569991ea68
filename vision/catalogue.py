"""Catalogue store: SKU -> reference images, colour, dimensions, category flags.

A catalogue is a folder with ``catalogue.csv`` (one row per reference image; columns ``sku, category,
brand, image`` and optional ``name, lab_l, lab_a, lab_b, width_mm, height_mm, depth_mm, hygiene,
safety, liquid``) and the images it names by relative path. The built-in sample catalogue is rendered
by code (``build_sample_catalogue``), never shipped as binary files.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from calibration.colour import bgr_to_lab_d50
from station.domain import CatalogueItem, DimensionsMm, LabColour
from vision.synth import ProductLook, ProductShape, SceneStyle, render_item

REQUIRED_COLUMNS = ("sku", "category", "brand", "image")
_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"", "0", "false", "no", "n"}


class CatalogueError(ValueError):
    """The catalogue folder or CSV is invalid; the message names the file, row and column."""


class UnknownSkuError(KeyError):
    def __init__(self, sku: str, known: list[str]) -> None:
        self.sku = sku
        hint = ", ".join(known[:8]) + (" ..." if len(known) > 8 else "")
        super().__init__(f"unknown SKU {sku!r}: not in the catalogue (known: {hint}); "
                         f"import it with `station catalogue import DIR`")

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class Catalogue:
    root: Path
    items: dict[str, CatalogueItem]

    def get(self, sku: str) -> CatalogueItem:
        try:
            return self.items[sku]
        except KeyError:
            raise UnknownSkuError(sku, sorted(self.items)) from None

    def image_path(self, item: CatalogueItem, index: int = 0) -> Path:
        return self.root / item.reference_images[index]

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def load(cls, root: Path) -> "Catalogue":
        root = Path(root)
        csv_path = root / "catalogue.csv"
        if not csv_path.exists():
            raise CatalogueError(f"{csv_path} not found: a catalogue folder needs a catalogue.csv")
        try:
            with open(csv_path, newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                columns = [c.strip() for c in reader.fieldnames or []]
                missing = [c for c in REQUIRED_COLUMNS if c not in columns]
                if missing:
                    raise CatalogueError(f"{csv_path}: missing columns {missing} (has {columns})")
                rows = []
                for row in reader:
                    # DictReader puts extra values in a list under the key None: name the line, no traceback
                    if None in row:
                        raise CatalogueError(
                            f"{csv_path}:{reader.line_num}: {len(columns) + len(row[None])} values but the header "
                            f"has {len(columns)} columns: quote values that contain commas")
                    rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})
        except UnicodeDecodeError as exc:
            raise CatalogueError(f"{csv_path}: not UTF-8 text ({exc.reason})") from None
        grouped: dict[str, list[tuple[int, dict[str, str]]]] = {}
        for line, row in enumerate(rows, start=2):
            if not row.get("sku"):
                raise CatalogueError(f"{csv_path}:{line}: empty sku")
            grouped.setdefault(row["sku"], []).append((line, row))
        items = {sku: _item_from_rows(csv_path, root, sku, group) for sku, group in grouped.items()}
        return cls(root, items)


def _flag(csv_path: Path, line: int, row: dict[str, str], column: str) -> bool:
    value = row.get(column, "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise CatalogueError(f"{csv_path}:{line}: column {column!r} must be true/false, got {row[column]!r}")


def _number(csv_path: Path, line: int, row: dict[str, str], column: str) -> float | None:
    value = row.get(column, "")
    if value == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise CatalogueError(f"{csv_path}:{line}: column {column!r} must be a number, got {value!r}") from None


def _item_from_rows(csv_path: Path, root: Path, sku: str, group: list[tuple[int, dict[str, str]]]) -> CatalogueItem:
    line, first = group[0]
    images = []
    for ln, row in group:
        rel = row["image"]
        if not rel:
            raise CatalogueError(f"{csv_path}:{ln}: empty image path for SKU {sku!r}")
        if not (root / rel).is_file():
            raise CatalogueError(f"{csv_path}:{ln}: image {rel!r} for SKU {sku!r} not found under {root}")
        images.append(rel)
    lab_vals = [_number(csv_path, line, first, c) for c in ("lab_l", "lab_a", "lab_b")]
    lab = LabColour(*lab_vals) if all(v is not None for v in lab_vals) else None
    w, h, d = (_number(csv_path, line, first, c) for c in ("width_mm", "height_mm", "depth_mm"))
    dims = DimensionsMm(w, h, d) if w is not None and h is not None else None
    return CatalogueItem(
        sku=sku, category=first["category"], brand=first["brand"], name=first.get("name", ""),
        reference_images=tuple(images), reference_lab=lab, dimensions_mm=dims,
        hygiene=_flag(csv_path, line, first, "hygiene"), safety=_flag(csv_path, line, first, "safety"),
        liquid=_flag(csv_path, line, first, "liquid"),
    )


# ----------------------------------------------------------------------------------------- sample


@dataclass(frozen=True, slots=True)
class SampleSku:
    sku: str
    name: str
    category: str
    brand: str
    look: ProductLook
    hygiene: bool = False
    safety: bool = False
    liquid: bool = False


SAMPLE_SKUS: tuple[SampleSku, ...] = (
    SampleSku("BTL-FEED-240", "Anti-colic feeding bottle 240 ml", "infant_feeding", "mamacare",
              ProductLook(ProductShape.BOTTLE, (235, 225, 215), (200, 140, 60), 101, 0.45), hygiene=True),
    SampleSku("SEAT-CAR-G1", "Group 1 child car seat", "infant_safety", "saferide",
              ProductLook(ProductShape.CAR_SEAT, (70, 60, 55), (60, 60, 190), 202, 0.8), safety=True),
    SampleSku("GAD-EARBUD-X2", "Wireless earbuds X2 (boxed)", "electronics", "soundbee",
              ProductLook(ProductShape.CARTON, (40, 40, 45), (0, 200, 255), 303, 1.1)),
    SampleSku("APP-TEE-M", "Cotton T-shirt, size M", "apparel", "urbanwear",
              ProductLook(ProductShape.GARMENT, (150, 110, 40), (240, 240, 240), 404, 0.9)),
    SampleSku("COS-LOTION-200", "Body lotion 200 ml", "cosmetics", "glowlab",
              ProductLook(ProductShape.BOTTLE, (180, 200, 240), (120, 60, 160), 505, 0.4), hygiene=True, liquid=True),
    SampleSku("TOY-BEAR-S", "Plush bear, small (3+)", "toys", "funpals",
              ProductLook(ProductShape.TOY, (60, 120, 170), (130, 180, 220), 606, 0.8)),
    SampleSku("CARE-BIB-01", "Baby bib, cotton", "infant_care", "mamacare",
              ProductLook(ProductShape.GARMENT, (200, 200, 120), (90, 160, 90), 707, 0.95), hygiene=True),
    SampleSku("HH-KETTLE-1L", "Electric kettle 1 l (boxed)", "household", "homechef",
              ProductLook(ProductShape.CARTON, (235, 215, 185), (40, 120, 40), 808, 1.3)),
    SampleSku("GAD-SPEAKER-M", "Bluetooth speaker (bare)", "electronics", "soundbee",
              ProductLook(ProductShape.GADGET, (90, 80, 70), (0, 140, 255), 909, 0.9)),
)
SAMPLE_VIEWS = ("front", "side", "top")
REFERENCE_SIZE = (480, 480)
# Known scale of the generated reference shots, so dimensions in the CSV are consistent.
REFERENCE_MM_PER_PX = 0.5


def sample_sku(sku: str) -> SampleSku:
    for s in SAMPLE_SKUS:
        if s.sku == sku:
            return s
    raise UnknownSkuError(sku, [s.sku for s in SAMPLE_SKUS])


def product_lab(image: np.ndarray, mask: np.ndarray, max_pixels: int = 4000) -> np.ndarray:
    """Dominant CIELAB (D50) colour of the product: the largest of three k-means clusters, so print,
    labels and highlights do not pull it the way a mean or a per-channel median would."""
    pixels = image[mask > 0].reshape(-1, 3)
    if len(pixels) > max_pixels:  # a fixed-step subsample keeps it deterministic and fast
        pixels = pixels[:: len(pixels) // max_pixels + 1]
    lab = bgr_to_lab_d50(pixels).astype(np.float32)
    if len(lab) < 3:
        return lab.mean(axis=0).astype(np.float64)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    cv2.setRNGSeed(0)
    _, labels, centres = cv2.kmeans(lab, 3, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    counts = np.bincount(labels.ravel(), minlength=3)
    return np.median(lab[labels.ravel() == int(counts.argmax())], axis=0).astype(np.float64)


def build_sample_catalogue(root: Path) -> Catalogue:
    """Render the sample catalogue's reference images and CSV into ``root`` (deterministic; idempotent)."""
    return build_catalogue(root, SAMPLE_SKUS)


def build_catalogue(root: Path, skus: tuple[SampleSku, ...] | list[SampleSku]) -> Catalogue:
    """Render reference images (one per SAMPLE_VIEWS view) and the CSV for any list of generated SKUs
    into ``root`` (deterministic; idempotent: an existing catalogue.csv is loaded, not rebuilt)."""
    root = Path(root)
    csv_path = root / "catalogue.csv"
    if csv_path.exists():
        return Catalogue.load(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for s in skus:
        lab = None
        dims = None
        for v, view in enumerate(SAMPLE_VIEWS):
            rng = np.random.default_rng([s.look.print_seed, v])
            item = render_item(rng, s.look, (), SceneStyle(size=REFERENCE_SIZE), view, clean_reference=True)
            rel = f"images/{s.sku}_{view}.png"
            cv2.imwrite(str(root / rel), item.image)
            if lab is None:
                lab = product_lab(item.image, item.product_mask)
                x, y, w, h = cv2.boundingRect(item.product_mask)
                dims = (w * REFERENCE_MM_PER_PX, h * REFERENCE_MM_PER_PX)
            rows.append({"sku": s.sku, "category": s.category, "brand": s.brand, "image": rel, "name": s.name,
                         "lab_l": f"{lab[0]:.2f}", "lab_a": f"{lab[1]:.2f}", "lab_b": f"{lab[2]:.2f}",
                         "width_mm": f"{dims[0]:.1f}", "height_mm": f"{dims[1]:.1f}", "depth_mm": "",
                         "hygiene": str(s.hygiene).lower(), "safety": str(s.safety).lower(),
                         "liquid": str(s.liquid).lower()})
    tmp = csv_path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(csv_path)  # the CSV appears last, so a half-built catalogue is never loaded
    return Catalogue.load(root)
