"""The catalogue CSV's optional columns, parsed and validated: flags and numbers of a row, and the per-SKU
columns (``weight_g``, ``serial_pattern``, ``shelf_life_days``, ``text_views``) that must agree on every row of
their SKU. Each error names the file, the line and the column (vision.catalogue loads the file)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable, Sequence, TypeVar

_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"", "0", "false", "no", "n"}
# A unit's weight as packed (grams), checked on the bench scale. Above half a tonne it is a typo (kg for g),
# not a parcel a bench weighs.
MAX_UNIT_WEIGHT_G = 500_000.0
# A serial_pattern is a Python regex matched whole against what is read after S/N, SN, Serial or IMEI, or any
# token on the item; capped so a catalogue cannot make every read slow.
MAX_SERIAL_PATTERN_CHARS = 200
MAX_SHELF_LIFE_DAYS = 20 * 366  # longer than any dated product's shelf life: a typo (hours, or a date)
# text_views: the views printed text is on, "back|bottom"; a view name as the station's config names views.
TEXT_VIEW_SEPARATOR = "|"
VIEW_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

Row = dict[str, str]
T = TypeVar("T")


class CatalogueError(ValueError):
    """The catalogue folder or CSV is invalid; the message names the file, row and column."""


def flag(csv_path: Path, line: int, row: Row, column: str) -> bool:
    value = row.get(column, "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise CatalogueError(f"{csv_path}:{line}: column {column!r} must be true/false, got {row[column]!r}")


def number(csv_path: Path, line: int, row: Row, column: str) -> float | None:
    value = row.get(column, "")
    if value == "":
        return None
    try:
        parsed = float(value)
    except ValueError:
        raise CatalogueError(f"{csv_path}:{line}: column {column!r} must be a number, got {value!r}") from None
    if not math.isfinite(parsed):  # nan compares false with everything: a colour check would always pass
        raise CatalogueError(f"{csv_path}:{line}: column {column!r} must be a finite number, got {value!r}: "
                             f"give the measured value or leave it empty")
    return parsed


def unit_weight(csv_path: Path, line: int, value: str) -> float:
    """weight_g: finite, above 0, at most MAX_UNIT_WEIGHT_G."""
    grams = number(csv_path, line, {"weight_g": value}, "weight_g")
    assert grams is not None  # only called on a non-empty value
    if not 0 < grams <= MAX_UNIT_WEIGHT_G:
        raise CatalogueError(f"{csv_path}:{line}: column 'weight_g' must be above 0 and at most "
                             f"{MAX_UNIT_WEIGHT_G:g} g, got {value!r}: give the packed unit's weight "
                             f"in grams or leave it empty")
    return grams


def serial_pattern(csv_path: Path, line: int, value: str) -> str:
    if len(value) > MAX_SERIAL_PATTERN_CHARS:
        raise CatalogueError(f"{csv_path}:{line}: column 'serial_pattern' is longer than {MAX_SERIAL_PATTERN_CHARS} "
                             f"characters: give a shorter regex")
    try:
        compiled = re.compile(value)
    except re.error as exc:
        raise CatalogueError(f"{csv_path}:{line}: column 'serial_pattern' {value!r} is not a valid regex ({exc}): "
                             f"fix it, e.g. SB[0-9A-Z]{{8}}") from None
    if compiled.fullmatch("") is not None:
        raise CatalogueError(f"{csv_path}:{line}: column 'serial_pattern' {value!r} matches an empty serial: give a "
                             f"pattern of the serial itself, e.g. SB[0-9A-Z]{{8}}")
    return value


def shelf_life(csv_path: Path, line: int, value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise CatalogueError(f"{csv_path}:{line}: column 'shelf_life_days' must be a whole number of days, got "
                             f"{value!r}") from None
    if not 1 <= days <= MAX_SHELF_LIFE_DAYS:
        raise CatalogueError(f"{csv_path}:{line}: column 'shelf_life_days' must be between 1 and "
                             f"{MAX_SHELF_LIFE_DAYS} days, got {value!r}: give the shelf life in days or leave it empty")
    return days


def text_views_parser(known_views: Sequence[str] | None) -> Callable[[Path, int, str], tuple[str, ...]]:
    """A parser of text_views ("back|bottom"): view names, each once. With ``known_views`` (the station's
    ``[station] views``) a name the station does not capture is refused: OCR would never see that text."""

    def parse(csv_path: Path, line: int, value: str) -> tuple[str, ...]:
        names = tuple(v.strip() for v in value.split(TEXT_VIEW_SEPARATOR))
        bad = next((v for v in names if not VIEW_NAME.fullmatch(v)), None)
        if bad is not None:
            raise CatalogueError(f"{csv_path}:{line}: column 'text_views' {value!r} has the view name {bad!r}: "
                                 f"give view names separated by '|', e.g. back|bottom")
        twice = sorted({v for v in names if names.count(v) > 1})
        if twice:
            raise CatalogueError(f"{csv_path}:{line}: column 'text_views' {value!r} names {', '.join(twice)} twice: "
                                 f"list each view once")
        if known_views is not None:
            unknown = [v for v in names if v not in known_views]
            if unknown:
                raise CatalogueError(f"{csv_path}:{line}: column 'text_views' names the view "
                                     f"{', '.join(map(repr, unknown))}, which this station does not capture (its "
                                     f"views: {', '.join(known_views)}): use those names or add the view to "
                                     f"[station] views")
        return names

    return parse


def one_per_sku(csv_path: Path, sku: str, group: list[tuple[int, Row]], column: str,
                parse: Callable[[Path, int, str], T]) -> T | None:
    """A per-SKU column: parsed and the same on every row that gives it (else the check depends on row order)."""
    found: tuple[int, T] | None = None
    for line, row in group:
        raw = row.get(column, "")
        if raw == "":
            continue
        value = parse(csv_path, line, raw)
        if found is not None and found[1] != value:
            kept = found[1]
            shown = (TEXT_VIEW_SEPARATOR.join(kept) if isinstance(kept, tuple) else f"{kept:g}"
                     if isinstance(kept, float) else kept)
            raise CatalogueError(f"{csv_path}:{line}: {column} {raw!r} for SKU {sku!r} differs from {shown} on "
                                 f"line {found[0]}: give one value per SKU")
        found = found or (line, value)
    return None if found is None else found[1]
