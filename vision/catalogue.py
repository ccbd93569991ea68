"""Catalogue store: SKU -> reference images, colour, dimensions, category flags.

A catalogue is a folder with ``catalogue.csv`` (one row per reference image; columns ``sku, category,
brand, image`` and optional ``name, lab_l, lab_a, lab_b, width_mm, height_mm, depth_mm, weight_g, hygiene,
safety, liquid, serial_pattern, shelf_life_days, text_views``; vision.catalogue_columns validates them) and the
images it names by relative path. The built-in sample catalogue is rendered by code (``build_sample_catalogue``),
never shipped as binary files.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Callable, Sequence

import cv2
import numpy as np

from calibration.colour import bgr_to_lab_d50
from station.domain import CatalogueItem, DimensionsMm, LabColour
from vision.catalogue_columns import (MAX_SERIAL_PATTERN_CHARS, MAX_SHELF_LIFE_DAYS, MAX_UNIT_WEIGHT_G,  # noqa: F401
                                      TEXT_VIEW_SEPARATOR, CatalogueError, flag, number, one_per_sku,
                                      serial_pattern, shelf_life, text_views_parser, unit_weight)
from vision.synth import ProductLook, ProductShape, SceneStyle, render_item

REQUIRED_COLUMNS = ("sku", "category", "brand", "image")
MAX_FIELD_CHARS = 4096  # any one CSV value
MAX_CSV_BYTES = 64 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000  # a reference view larger than this only slows every inspection down
MAX_IMAGE_BYTES = 128 * 1024 * 1024


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
    # SKU -> unit weight in grams (column weight_g), for the SKUs that have one.
    unit_weights_g: dict[str, float] = field(default_factory=dict)
    # SKU -> regex of its serial numbers (column serial_pattern) and shelf life in days (shelf_life_days): the
    # SKUs that carry printed text the station reads (vision.ocr); other SKUs are never read.
    serial_patterns: dict[str, str] = field(default_factory=dict)
    shelf_lives_days: dict[str, int] = field(default_factory=dict)
    # SKU -> the views its serial or date is printed on (column text_views, "back|bottom"): OCR reads only those.
    text_views_by_sku: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def unit_weight_g(self, sku: str) -> float | None:
        return self.unit_weights_g.get(sku)

    def serial_pattern(self, sku: str) -> str | None:
        return self.serial_patterns.get(sku)

    def shelf_life_days(self, sku: str) -> int | None:
        return self.shelf_lives_days.get(sku)

    def text_views(self, sku: str) -> tuple[str, ...] | None:
        """The views OCR reads for this SKU; None: every view (the catalogue does not say where the text is)."""
        return self.text_views_by_sku.get(sku)

    def expects_text(self, sku: str) -> bool:
        """Whether the SKU carries a serial or a date the station must read."""
        return sku in self.serial_patterns or sku in self.shelf_lives_days

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
    def load(cls, root: Path, image_check: Callable[[str, Path], None] | None = None,
             csv_bytes: bytes | None = None, views: Sequence[str] | None = None) -> "Catalogue":
        """Load and validate a catalogue folder. ``image_check(rel, path)`` (used by :func:`stage_import`)
        replaces the plain "is a file" check of each image and raises ValueError with what is wrong;
        ``csv_bytes`` is catalogue.csv's content when the caller has read it already; ``views``: the station's
        views, when known (a text_views name outside them is refused)."""
        root = Path(root)
        csv_path = root / "catalogue.csv"
        if csv_bytes is None:
            if not csv_path.exists():
                raise CatalogueError(f"{csv_path} not found: a catalogue folder needs a catalogue.csv")
            try:
                csv_bytes = csv_path.read_bytes()
            except OSError as exc:
                raise CatalogueError(f"{csv_path}: cannot read it ({exc.strerror or exc})") from None
        try:
            text = csv_bytes.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CatalogueError(f"{csv_path}: not UTF-8 text ({exc.reason})") from None
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise CatalogueError(f"{csv_path}: missing columns {missing} (has {columns})")
            for c in columns:
                if len(c) > MAX_FIELD_CHARS:
                    raise CatalogueError(f"{csv_path}:1: a column name longer than {MAX_FIELD_CHARS} characters: "
                                         f"fix the header row")
            rows = []
            for row in reader:
                # DictReader puts extra values in a list under the key None: name the line, no traceback
                if None in row:
                    raise CatalogueError(
                        f"{csv_path}:{reader.line_num}: {len(columns) + len(row[None])} values but the header "
                        f"has {len(columns)} columns: quote values that contain commas")
                for k, v in row.items():
                    if v is not None and len(v) > MAX_FIELD_CHARS:
                        raise CatalogueError(
                            f"{csv_path}:{reader.line_num}: column {(k or '').strip()!r} is {len(v)} characters "
                            f"long, over the limit of {MAX_FIELD_CHARS}: shorten it")
                rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})
        except csv.Error as exc:
            why = (f"a value longer than {MAX_FIELD_CHARS} characters: shorten it" if "field larger" in str(exc)
                   else f"not valid CSV ({exc}): fix the file")
            # line_num counts the lines read before the one that failed
            raise CatalogueError(f"{csv_path}:{reader.line_num + 1}: {why}") from None
        grouped: dict[str, list[tuple[int, dict[str, str]]]] = {}
        for line, row in enumerate(rows, start=2):
            if not row.get("sku"):
                raise CatalogueError(f"{csv_path}:{line}: empty sku")
            grouped.setdefault(row["sku"], []).append((line, row))
        items = {sku: _item_from_rows(csv_path, root, sku, group, image_check) for sku, group in grouped.items()}

        def per_sku(column: str, parse) -> dict:
            return {sku: v for sku, group in grouped.items()
                    if (v := one_per_sku(csv_path, sku, group, column, parse)) is not None}

        return cls(root, items, per_sku("weight_g", unit_weight), per_sku("serial_pattern", serial_pattern),
                   per_sku("shelf_life_days", shelf_life), per_sku("text_views", text_views_parser(views)))


def confined_path(rel: str) -> str | None:
    """Why an image path from a catalogue CSV may not be used, or None: it must be relative and stay inside
    the catalogue folder (no absolute path, no '..', no drive or NUL)."""
    if "\0" in rel:
        return "contains a NUL character"
    pure = PurePath(rel)
    if pure.is_absolute() or rel.startswith(("/", "\\")) or pure.drive:
        return "is an absolute path: give a path relative to the catalogue folder"
    if any(part == ".." for part in PurePath(rel.replace("\\", "/")).parts):
        return "leaves the catalogue folder ('..'): give a path inside it"
    return None


def _item_from_rows(csv_path: Path, root: Path, sku: str, group: list[tuple[int, dict[str, str]]],
                    image_check: Callable[[str, Path], None] | None = None) -> CatalogueItem:
    line, first = group[0]
    images = []
    for ln, row in group:
        rel = row["image"]
        if not rel:
            raise CatalogueError(f"{csv_path}:{ln}: empty image path for SKU {sku!r}")
        problem = confined_path(rel)
        if problem:
            raise CatalogueError(f"{csv_path}:{ln}: image {rel!r} for SKU {sku!r} {problem}")
        if image_check is not None:
            try:
                image_check(rel, root / rel)
            except ValueError as exc:
                raise CatalogueError(f"{csv_path}:{ln}: image {rel!r} for SKU {sku!r} {exc}") from None
        elif not (root / rel).is_file():
            raise CatalogueError(f"{csv_path}:{ln}: image {rel!r} for SKU {sku!r} not found under {root}")
        images.append(rel)
    lab_vals = [number(csv_path, line, first, c) for c in ("lab_l", "lab_a", "lab_b")]
    lab = LabColour(*lab_vals) if all(v is not None for v in lab_vals) else None
    w, h, d = (number(csv_path, line, first, c) for c in ("width_mm", "height_mm", "depth_mm"))
    dims = DimensionsMm(w, h, d) if w is not None and h is not None else None
    return CatalogueItem(
        sku=sku, category=first["category"], brand=first["brand"], name=first.get("name", ""),
        reference_images=tuple(images), reference_lab=lab, dimensions_mm=dims,
        hygiene=flag(csv_path, line, first, "hygiene"), safety=flag(csv_path, line, first, "safety"),
        liquid=flag(csv_path, line, first, "liquid"),
    )


# ----------------------------------------------------------------------------------------- import


def image_header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from a PNG, JPEG, BMP or WebP header without decoding the pixels; None when the
    bytes are none of these (or the header is broken)."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data[:2] == b"BM" and len(data) >= 26:
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            chunk = data[12:16]
            if chunk == b"VP8X":
                return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
            if chunk == b"VP8L" and data[20] == 0x2F:
                bits = int.from_bytes(data[21:25], "little")
                return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
            if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
                w, h = struct.unpack("<HH", data[26:30])
                return w & 0x3FFF, h & 0x3FFF
            return None
        if data[:2] == b"\xff\xd8":
            i = 2
            while i + 4 <= len(data):
                if data[i] != 0xFF:
                    return None
                marker = data[i + 1]
                if marker == 0xFF:  # fill byte
                    i += 1
                    continue
                if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                    i += 2
                    continue
                (length,) = struct.unpack(">H", data[i + 2:i + 4])
                if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                    h, w = struct.unpack(">HH", data[i + 5:i + 9])
                    return w, h
                if marker == 0xDA or length < 2:
                    return None  # image data before any frame header
                i += 2 + length
    except (struct.error, IndexError):
        return None
    return None


def _read_private(path: Path, max_bytes: int, what: str) -> bytes:
    """The bytes of a regular file, never through a symbolic link, never from a fifo or device (read without
    blocking on one); ValueError naming what is wrong."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise ValueError("not found: add the file or fix the path") from None
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISLNK(st.st_mode):
        raise ValueError(f"is a symbolic link: put the {what} itself in the catalogue folder")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a fifo" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or
                stat.S_ISBLK(st.st_mode) else "a folder" if stat.S_ISDIR(st.st_mode) else "a socket or special file")
        raise ValueError(f"is {kind}, not a file: put the {what} itself in the catalogue folder")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())  # what was opened, in case the name was swapped after the lstat
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"is not a regular file: put the {what} itself in the catalogue folder")
        if st.st_size > max_bytes:
            raise ValueError(f"is {st.st_size // (1024 * 1024)} MiB, over the limit of "
                             f"{max_bytes // (1024 * 1024)} MiB: make it smaller")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"is over the limit of {max_bytes // (1024 * 1024)} MiB: make it smaller")
    return data


def checked_image_bytes(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode a reference image after checking its size from the header; ValueError saying what is wrong."""
    size = image_header_size(data)
    if size is None:
        raise ValueError("is not a PNG, JPEG, BMP or WebP image: convert it to PNG or JPEG")
    w, h = size
    if w <= 0 or h <= 0:
        raise ValueError(f"has an invalid size {w}x{h} in its header: save it again")
    if w * h > max_pixels:
        raise ValueError(f"is {w}x{h} pixels ({w * h / 1e6:.0f} megapixels), over the limit of "
                         f"{max_pixels / 1e6:.0f} megapixels: scale it down")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ValueError("cannot be decoded as an image (corrupt or truncated): save it again")
    return image


PRIVATE_FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """``mkdir -p`` where every folder it creates is 0700 whatever the umask (station.dbhandle does the same for
    the station's data; vision may not import it)."""
    path = Path(path)
    missing = []
    p = path
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a folder")
    return path


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def stage_import(source: Path, staging: Path, max_pixels: int = MAX_IMAGE_PIXELS,
                 views: Sequence[str] | None = None) -> "Catalogue":
    """Validate a catalogue folder for `station catalogue import` and copy what it names (catalogue.csv and
    the images its rows name, nothing else) into ``staging``, a new folder; returns the staged catalogue.

    Refused with a CatalogueError naming the row or file: symbolic links, fifos, devices and other special
    files (for catalogue.csv, an image, or a folder on an image's path), image paths that are absolute or leave
    the folder, files that are not decodable images or are larger than ``max_pixels`` (checked from the header
    before decoding), non-finite numbers and over-long values, text_views outside ``views`` (the station's
    ``[station] views``, when given). On any failure ``staging`` is removed."""
    source = Path(source)
    staging = Path(staging)
    csv_path = source / "catalogue.csv"
    if not source.is_dir():
        raise CatalogueError(f"{source}: not a folder: give the folder that holds catalogue.csv")
    try:
        csv_bytes = _read_private(csv_path, MAX_CSV_BYTES, "catalogue.csv")
    except ValueError as exc:
        raise CatalogueError(f"{csv_path} {exc}") from None
    real_root = source.resolve()
    written: set[str] = set()

    def check(rel: str, path: Path) -> None:
        parts = PurePath(rel).parts
        for i in range(1, len(parts)):  # no folder on the way may be a link out (or back in)
            sub = source.joinpath(*parts[:i])
            if sub.is_symlink():
                raise ValueError(f"lies under {sub.name!r}, a symbolic link: use a real folder")
        if os.path.realpath(path.parent) != os.path.normpath(real_root.joinpath(*parts[:-1])):
            raise ValueError("leaves the catalogue folder: give a path inside it")
        data = _read_private(path, MAX_IMAGE_BYTES, "image")
        checked_image_bytes(data, max_pixels)
        norm = os.path.normpath(rel)
        if norm not in written:  # the very bytes checked are the ones staged
            written.add(norm)
            dest = staging / norm
            private_dir(dest.parent)
            _write_new(dest, data)

    try:
        private_dir(staging.parent)
        os.mkdir(staging, 0o700)
        os.chmod(staging, 0o700)
    except OSError as exc:
        raise CatalogueError(f"cannot stage the catalogue in {staging}: {exc.strerror or exc}: remove it or check "
                             f"the data folder") from None
    try:
        Catalogue.load(source, image_check=check, csv_bytes=csv_bytes, views=views)
        _write_new(staging / "catalogue.csv", csv_bytes)  # last: a half-staged folder has no catalogue.csv
        return Catalogue.load(staging, views=views)  # the copy must load too before it replaces the active one
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise CatalogueError(f"cannot stage the catalogue in {staging}: {exc.strerror or exc}: free space or "
                             f"check the data folder; nothing was changed") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------------------- sample


@dataclass(frozen=True, slots=True)
class SampleSku:
    sku: str
    name: str
    category: str
    brand: str
    look: ProductLook
    weight_g: float | None = None  # the packed unit, as the bench scale weighs it
    serial_pattern: str | None = None  # regex of the unit's printed serial (the station reads and checks it)
    shelf_life_days: int | None = None  # a dated product: its printed expiry is read and checked
    text_views: tuple[str, ...] = ()  # where the serial or date is printed (OCR reads only these); (): every view
    hygiene: bool = False
    safety: bool = False
    liquid: bool = False


SAMPLE_SKUS: tuple[SampleSku, ...] = (
    SampleSku("BTL-FEED-240", "Anti-colic feeding bottle 240 ml", "infant_feeding", "mamacare",
              ProductLook(ProductShape.BOTTLE, (235, 225, 215), (200, 140, 60), 101, 0.45), weight_g=110.0,
              hygiene=True),
    SampleSku("SEAT-CAR-G1", "Group 1 child car seat", "infant_safety", "saferide",
              ProductLook(ProductShape.CAR_SEAT, (70, 60, 55), (60, 60, 190), 202, 0.8), weight_g=9400.0,
              safety=True),
    SampleSku("GAD-EARBUD-X2", "Wireless earbuds X2 (boxed)", "electronics", "soundbee",
              ProductLook(ProductShape.CARTON, (40, 40, 45), (0, 200, 255), 303, 1.1), weight_g=180.0,
              serial_pattern=r"SB[0-9A-HJ-NPR-Z]{8}", text_views=("front",)),
    SampleSku("APP-TEE-M", "Cotton T-shirt, size M", "apparel", "urbanwear",
              ProductLook(ProductShape.GARMENT, (150, 110, 40), (240, 240, 240), 404, 0.9), weight_g=210.0),
    SampleSku("COS-LOTION-200", "Body lotion 200 ml", "cosmetics", "glowlab",
              ProductLook(ProductShape.BOTTLE, (180, 200, 240), (120, 60, 160), 505, 0.4), weight_g=235.0,
              hygiene=True, liquid=True),
    SampleSku("TOY-BEAR-S", "Plush bear, small (3+)", "toys", "funpals",
              ProductLook(ProductShape.TOY, (60, 120, 170), (130, 180, 220), 606, 0.8), weight_g=165.0),
    SampleSku("CARE-BIB-01", "Baby bib, cotton", "infant_care", "mamacare",
              ProductLook(ProductShape.GARMENT, (200, 200, 120), (90, 160, 90), 707, 0.95), weight_g=45.0,
              hygiene=True),
    SampleSku("HH-KETTLE-1L", "Electric kettle 1 l (boxed)", "household", "homechef",
              ProductLook(ProductShape.CARTON, (235, 215, 185), (40, 120, 40), 808, 1.3), weight_g=1150.0),
    SampleSku("GAD-SPEAKER-M", "Bluetooth speaker (bare)", "electronics", "soundbee",
              ProductLook(ProductShape.GADGET, (90, 80, 70), (0, 140, 255), 909, 0.9), weight_g=540.0),
    SampleSku("FORM-TIN-800", "Infant formula 800 g tin", "infant_feeding", "mamacare",
              ProductLook(ProductShape.BOTTLE, (215, 235, 240), (60, 150, 220), 1010, 0.8), weight_g=980.0,
              shelf_life_days=540, text_views=("front",), hygiene=True),
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
    private_dir(root / "images")  # the data dir too, when this creates it (first start): 0700
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
                         "weight_g": "" if s.weight_g is None else f"{s.weight_g:g}",
                         "serial_pattern": s.serial_pattern or "",
                         "shelf_life_days": "" if s.shelf_life_days is None else str(s.shelf_life_days),
                         "text_views": TEXT_VIEW_SEPARATOR.join(s.text_views),
                         "hygiene": str(s.hygiene).lower(), "safety": str(s.safety).lower(),
                         "liquid": str(s.liquid).lower()})
    tmp = csv_path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(csv_path)  # the CSV appears last, so a half-built catalogue is never loaded
    return Catalogue.load(root)
