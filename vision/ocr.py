"""Text on the item, offline: serial numbers, IMEI, lot codes and expiry / best-before dates.

The engine is RapidOCR (PP-OCR detector and recogniser on ONNX Runtime). Its wheel ships the ONNX models; this
module points the engine at those files explicitly and refuses any download, so a station without network reads
text exactly as one with it, and a broken install fails with one clear line (:class:`OcrUnavailable`).

Reading (``TextReader``) and parsing (``parse_lines``, ``parse_lots``) are separate: the parser is plain Python
on the text lines and is what the rules rest on (serials, lot codes, dates with their kind, each with the view
and box it was read in).
"""

from __future__ import annotations

import calendar
import re
import threading
import time
import unicodedata
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from station.domain import Frame

# The models inside the rapidocr 3.10 wheel (rapidocr/models/); checked before the engine is built.
_DET_MODEL = "PP-OCRv6_det_small.onnx"
_REC_MODEL = "PP-OCRv6_rec_small.onnx"
_CLS_MODEL = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"
MAX_SIDE_PX = 960  # the detector's input: long side at most this (a 640x480 view is read at its own size)


class OcrUnavailable(RuntimeError):
    """The OCR engine cannot run here; the message says what to install or fix."""


class DateKind(StrEnum):
    EXPIRY = "expiry"
    BEST_BEFORE = "best_before"
    PRODUCTION = "production"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class TextLine:
    """One line the engine read: its text, recognition score, axis-aligned box in view pixels, view."""

    text: str
    score: float
    box_xyxy: tuple[float, float, float, float]
    view: str = ""

    def to_json(self) -> dict:
        return {"text": self.text, "score": round(self.score, 4),
                "box_xyxy": [round(v, 1) for v in self.box_xyxy], "view": self.view}


@dataclass(frozen=True, slots=True)
class SerialRead:
    """A serial number read on the item. ``label``: the field label it followed (S/N, SN, Serial, IMEI) or
    ``pattern`` when it matched the catalogue's ``serial_pattern`` without one."""

    value: str
    label: str
    text: str
    score: float
    view: str
    box_xyxy: tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class LotRead:
    """A lot (batch) code read on the item: the value after LOT, L, BATCH or B:, with the label it followed."""

    value: str
    label: str
    text: str
    score: float
    view: str
    box_xyxy: tuple[float, float, float, float]

    def to_json(self) -> dict:
        return {"lot": self.value, "label": self.label, "text": self.text, "score": round(self.score, 4),
                "view": self.view, "box_xyxy": [round(v, 1) for v in self.box_xyxy]}


@dataclass(frozen=True, slots=True)
class DateRead:
    kind: DateKind
    date: date
    text: str
    score: float
    view: str
    box_xyxy: tuple[float, float, float, float]
    year_inferred: bool = False  # printed as day and month only ("04 NOV"): the year nearest the reading day

    def to_json(self) -> dict:
        out = {"kind": self.kind.value, "date": self.date.isoformat(), "text": self.text,
               "score": round(self.score, 4), "view": self.view, "box_xyxy": [round(v, 1) for v in self.box_xyxy]}
        if self.year_inferred:
            out["year_inferred"] = True
        return out


@dataclass(frozen=True, slots=True)
class TextReading:
    """Everything read on an item's views."""

    lines: tuple[TextLine, ...]
    serials: tuple[SerialRead, ...]
    dates: tuple[DateRead, ...]
    views: tuple[str, ...] = ()
    elapsed_ms: float = 0.0
    lots: tuple[LotRead, ...] = ()

    def to_json(self) -> dict:
        """The ``station read-text --json`` contract: texts, serials (strings), dates; plus lots (strings) and
        detail fields."""
        return {
            "texts": [ln.to_json() for ln in self.lines],
            "serials": list(dict.fromkeys(s.value for s in self.serials)),
            "dates": [d.to_json() for d in self.dates],
            "lots": list(dict.fromkeys(lot.value for lot in self.lots)),
            "lot_reads": [lot.to_json() for lot in self.lots],
            "serial_reads": [{"serial": s.value, "label": s.label, "text": s.text, "score": round(s.score, 4),
                              "view": s.view, "box_xyxy": [round(v, 1) for v in s.box_xyxy]} for s in self.serials],
            "views": list(self.views),
            "elapsed_ms": round(self.elapsed_ms, 1),
        }


# ----------------------------------------------------------------------------------------------- parsing

def luhn_ok(digits: str) -> bool:
    """The Luhn check an IMEI's 15th digit carries."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def normalise_serial(text: str) -> str:
    """Serials compare without case, spaces or dashes (a label prints ``AB-12 34``, an RMA stores ``AB1234``)."""
    return re.sub(r"[\s\-_.]", "", text).upper()


_B = r"(?<![A-Z0-9])"  # a label starts a word ("SN" inside "ASN" is not one)
# Labels as OCR misreads them too: I as 1 or l, O as 0, S as 5 (a "PR0D" or "IME1" is still the label).
_IMEI = re.compile(_B + r"IME[I1L|]\s*(?:NO\.?|1|2)?\s*[:#.]?\s*((?:[\dO][\s\-]?){14}[\dO])(?![\dO])", re.I)
_SERIAL = re.compile(
    _B + r"([S5]\s?/\s?N|[S5]N|SER[I1L]AL(?:\s*(?:NO\.?|NUMBER|NUM|#))?|SER\.?\s*NO\.?)\s*[:#.]?\s*([A-Z0-9][A-Z0-9\-]{3,39})",
    re.I)
# Lot codes: LOT (No.), BATCH (No., code), B: (only with its colon: "B 12" is no label) and L, the EU's lot mark,
# alone or run into its code ("L2389A"). The code holds a digit (a "LOT: see base" names none).
_LOT = re.compile(
    _B + r"(L[O0]T(?:\s*(?:NO\.?|NUMBER|#))?|BATCH(?:\s*(?:NO\.?|NUMBER|CODE|#))?|B(?=\s*:)|L(?=[\s:.#\-]|\d))"
    r"\s*[:#.\-]?\s*([A-Z0-9][A-Z0-9\-]{2,23})", re.I)
# a date or serial label the code ran into where OCR lost the space ("6021BEXP14"): the code ends there
_RUN_ON = re.compile(r"(?:EXP|BBE?|MFG|MFD|PR[O0]D|USE|BEST|SN|IMEI)(?=[\d:./\-]|$)")
_DIGIT_LOOKALIKES = str.maketrans({"O": "0", "Q": "0", "I": "1"})
_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_MONTHS["SEPT"] = 9
_MONTHS.update({name.replace("O", "0"): n for name, n in list(_MONTHS.items()) if "O" in name})  # "0CT", "N0V"
_MONTH_NAMES = "|".join(sorted(_MONTHS, key=len, reverse=True))
# Field labels of dates, longest first so "BEST BEFORE END" wins over "BB".
_DATE_LABELS: tuple[tuple[re.Pattern, DateKind], ...] = tuple(
    (re.compile(_B + p + r"(?![A-Z])", re.I), k) for p, k in (
        (r"BEST\s*BEFORE(?:\s*END)?", DateKind.BEST_BEFORE),
        (r"BB(?:E|D)?", DateKind.BEST_BEFORE),
        (r"USE\s*BY", DateKind.EXPIRY),
        (r"EXP(?:[I1]RY|[I1]RES|[I1]RAT[I1][O0]N)?(?:\s*DATE)?\.?", DateKind.EXPIRY),
        (r"EXD", DateKind.EXPIRY),
        (r"(?:MFG|MFD|MFR|PR[O0]D(?:UCTION|UCED)?|MANUFACTURED|MANUF\.?|MADE\s*ON)(?:\s*DATE)?\.?", DateKind.PRODUCTION),
    ))
_SEP = r"[/\-.]"
_DATE_FORMS: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"(?<!\d)(\d{4})\s?" + _SEP + r"\s?(\d{1,2})\s?" + _SEP + r"\s?(\d{1,2})(?!\d)"), "ymd"),
    (re.compile(r"(?<!\d)(\d{1,2})\s?" + _SEP + r"\s?(\d{1,2})\s?" + _SEP + r"\s?(\d{4})(?!\d)"), "dmy"),
    (re.compile(r"(?<!\d)(\d{1,2})\s?" + _SEP + r"\s?(\d{1,2})\s?" + _SEP + r"\s?(\d{2})(?!\d)"), "dmyy"),
    # a year is never followed by ":" (that is a time: "01 SEP 12:10")
    (re.compile(r"(?<!\d)(\d{1,2})\s?[\-./ ]?\s?(" + _MONTH_NAMES + r")\.?\s?[\-./ ]?\s?(\d{4}|\d{2})(?![\d:])",
                re.I), "dmony"),
    # day and month only, as short-life food prints its use-by ("Use by / 04 NOV"): the year is inferred
    (re.compile(r"(?<!\d)(\d{1,2})\s?[\-./ ]?\s?(" + _MONTH_NAMES + r")(?![A-Z])", re.I), "dmon"),
    # a year runs into no word ("8400kJ/2000kcal" is no January 2000)
    (re.compile(r"(?<![\d/.\-])(\d{1,2})\s?[/\-.]\s?(\d{4})(?![\d/.\-A-Za-z])"), "my"),
)


def _date_of(form: str, m: re.Match, kind: DateKind, today: date | None = None) -> date | None:
    try:
        if form == "dmon":
            # the occurrence of that day and month nearest ``today`` (a short-life date is within months of it)
            if today is None:
                return None
            month = _MONTHS[m[2].upper()]
            options = [date(y, month, int(m[1])) for y in (today.year - 1, today.year, today.year + 1)
                       if int(m[1]) <= calendar.monthrange(y, month)[1]]
            return min(options, key=lambda d: abs((d - today).days)) if options else None
        if form == "ymd":
            return date(int(m[1]), int(m[2]), int(m[3]))
        if form == "dmy":
            return date(int(m[3]), int(m[2]), int(m[1]))
        if form == "dmyy":
            return date(2000 + int(m[3]), int(m[2]), int(m[1]))
        if form == "dmony":
            month = _MONTHS.get(m[2].upper())
            if month is None:
                return None
            year = int(m[3]) + (2000 if len(m[3]) == 2 else 0)
            return date(year, month, int(m[1]))
        # MM/YYYY: a month printed alone means its last day for a use-by, its first for a production date
        year, month = int(m[2]), int(m[1])
        if not 1 <= month <= 12:
            return None
        day = 1 if kind is DateKind.PRODUCTION else calendar.monthrange(year, month)[1]
        return date(year, month, day)
    except ValueError:
        return None


def _dates_in(text: str) -> list[tuple[int, int, date | None, str]]:
    """(start, end, date or None, form) of every date-shaped span, earlier forms first, no overlaps."""
    taken: list[tuple[int, int, re.Match, str]] = []
    for pattern, form in _DATE_FORMS:
        for m in pattern.finditer(text):
            if any(m.start() < e and s < m.end() for s, e, _, _ in taken):
                continue
            taken.append((m.start(), m.end(), m, form))
    return [(s, e, m, form) for s, e, m, form in sorted(taken, key=lambda t: t[0])]  # type: ignore[misc]


def _merge_rows(lines: Sequence[TextLine]) -> list[TextLine]:
    """Lines of one view that sit on one row, joined left to right: a label printed as "S/N" and its value a
    gap away are often two boxes to the detector."""
    out: list[TextLine] = []
    by_view: dict[str, list[TextLine]] = {}
    for ln in lines:
        by_view.setdefault(ln.view, []).append(ln)
    for view, group in by_view.items():
        rows: list[list[TextLine]] = []
        for ln in sorted(group, key=lambda t: (t.box_xyxy[1] + t.box_xyxy[3]) / 2):
            cy = (ln.box_xyxy[1] + ln.box_xyxy[3]) / 2
            h = ln.box_xyxy[3] - ln.box_xyxy[1]
            for row in rows:
                r = row[0].box_xyxy
                # side by side, not stacked: a rotated label's boxes overlap vertically, but also in x
                beside = all(min(ln.box_xyxy[2], t.box_xyxy[2]) - max(ln.box_xyxy[0], t.box_xyxy[0])
                             < 0.2 * min(ln.box_xyxy[2] - ln.box_xyxy[0], t.box_xyxy[2] - t.box_xyxy[0])
                             for t in row)
                if beside and abs((r[1] + r[3]) / 2 - cy) < 0.5 * max(h, r[3] - r[1]):
                    row.append(ln)
                    break
            else:
                rows.append([ln])
        for row in rows:
            row.sort(key=lambda t: t.box_xyxy[0])
            box = (min(t.box_xyxy[0] for t in row), min(t.box_xyxy[1] for t in row),
                   max(t.box_xyxy[2] for t in row), max(t.box_xyxy[3] for t in row))
            out.append(TextLine(" ".join(t.text for t in row), min(t.score for t in row), box, view))
    return out


def parse_lines(lines: Sequence[TextLine], serial_pattern: str | None = None,
                today: date | None = None) -> tuple[list[SerialRead], list[DateRead]]:
    """Serials and dates in the text lines of an item's views.

    Serial: the value after a field label S/N, SN, Serial (No.), or an IMEI (15 digits that pass the Luhn
    check; one that fails is not taken), or a token matching ``serial_pattern`` (the catalogue's regex, matched
    whole). Dates: YYYY-MM-DD, DD/MM/YYYY, DD.MM.YY, MM/YYYY and "12 MAR 2027"; the kind is that of the label
    before it on the row (EXP / Use by: expiry; BB / Best before: best_before; MFG / PROD: production) or, with
    no label on its row, a label alone on the row above; else unknown. ``today``: the reading day, for dates
    printed without a year ("Use by 04 NOV": the nearest 4 November); without it such dates are not taken."""
    pattern = re.compile(serial_pattern) if serial_pattern else None
    serials: list[SerialRead] = []
    dates: list[DateRead] = []
    rows = _merge_rows(lines)
    # rows that hold a date label and no date ("Use by" above "04 NOV"): (view, kind, box)
    alone: list[tuple[str, DateKind, tuple[float, float, float, float]]] = []
    for row in rows:
        if not _dates_in(row.text):
            kinds = sorted(((m.start(), k) for p, k in _DATE_LABELS for m in p.finditer(row.text)), key=lambda t: t[0])
            if kinds:
                alone.append((row.view, kinds[-1][1], row.box_xyxy))

    def label_above(row: TextLine) -> DateKind | None:
        """The label alone on a row just above this one and overlapping it left to right."""
        x1, y1, x2, y2 = row.box_xyxy
        h = y2 - y1
        near = [(y1 - b[3], k) for v, k, b in alone
                if v == row.view and -0.5 * h <= y1 - b[3] < 2.5 * h and b[1] < y1
                and min(x2, b[2]) - max(x1, b[0]) > 0]
        return min(near, key=lambda t: t[0])[1] if near else None

    for row in sorted(rows, key=lambda r: (r.view, r.box_xyxy[1])):
        text = row.text
        upper = text.upper()

        def add_serial(value: str, label: str) -> None:
            v = normalise_serial(value)
            if v and all(s.value != v or s.view != row.view for s in serials):
                serials.append(SerialRead(v, label, text, row.score, row.view, row.box_xyxy))

        for m in _IMEI.finditer(upper):
            digits = re.sub(r"\D", "", m[1].replace("O", "0"))
            if len(digits) == 15 and luhn_ok(digits):
                add_serial(digits, "IMEI")
        for m in _SERIAL.finditer(upper):
            value = m[2]
            if pattern is not None and not pattern.fullmatch(value):
                # OCR joins what follows the value when the gap is small ("A1B2C3EXP"): take the longest
                # prefix the catalogue's pattern accepts, else the value as read
                fixed = value.translate(_DIGIT_LOOKALIKES)  # O read for 0, I for 1, where the pattern has no letters
                value = next((v[:n] for v in (value, fixed) for n in range(len(v), 3, -1) if pattern.fullmatch(v[:n])),
                             value)
            add_serial(value, re.sub(r"\s", "", m[1]).rstrip(".:#"))
        if pattern is not None:
            for token in re.split(r"[\s:#,;]+", text):
                if token and pattern.fullmatch(token):
                    add_serial(token, "pattern")
        labels = sorted(((m.start(), m.end(), k) for p, k in _DATE_LABELS for m in p.finditer(text)),
                        key=lambda t: t[0])
        found = _dates_in(text)
        for start, end, m, form in found:
            before = [lab for lab in labels if lab[1] <= start]
            kind = before[-1][2] if before else (label_above(row) or DateKind.UNKNOWN)
            when = _date_of(form, m, kind, today)
            if when is not None and 1990 <= when.year <= 2100:
                dates.append(DateRead(kind, when, text, row.score, row.view, row.box_xyxy, form == "dmon"))
    return serials, dates


def parse_lots(lines: Sequence[TextLine]) -> list[LotRead]:
    """Lot codes in the text lines of an item's views: the value after LOT, LOT No., BATCH (No.), B: or the EU's
    L ("L 2389A", "L2389A"), holding at least one digit, 3 to 24 letters, digits and dashes. A span a serial
    label (S/N, IMEI) or a date takes is neither ("Serial No. L4ND1E" is a serial; "L 12/03/27" a date)."""
    lots: list[LotRead] = []
    for row in sorted(_merge_rows(lines), key=lambda r: (r.view, r.box_xyxy[1])):
        upper = row.text.upper()
        taken = [(m.start(), m.end()) for p in (_SERIAL, _IMEI) for m in p.finditer(upper)]
        taken += [(start, end) for start, end, dm, form in _dates_in(upper)
                  if form == "dmon" or _date_of(form, dm, DateKind.UNKNOWN) is not None]
        for m in _LOT.finditer(upper):
            if any(s <= m.start(2) < e for s, e in taken):
                continue  # the value is a serial's or a date
            # a date or serial OCR ran on into the code without a space ends it
            end = min([s for s, e in taken if m.start(2) < s < m.end(2)], default=m.end(2))
            value = upper[m.start(2):end].strip("-")
            cut = next((r.start() for r in _RUN_ON.finditer(value) if r.start() >= 3), None)
            if cut is not None and any(ch.isdigit() for ch in value[:cut]):
                value = value[:cut]
            if len(value) < 3 or not any(ch.isdigit() for ch in value):
                continue
            label = "LOT" if m[1][1:2] in ("O", "0") else "BATCH" if m[1].startswith("BATCH") else m[1]
            if all(lot.value != value or lot.view != row.view for lot in lots):
                lots.append(LotRead(value, label, row.text, row.score, row.view, row.box_xyxy))
    return lots


# ----------------------------------------------------------------------------------------------- engine

def bundled_model_dir() -> Path:
    """Where the rapidocr wheel keeps its ONNX models; OcrUnavailable when it is not installed or lacks them."""
    try:
        import rapidocr
    except ImportError:
        raise OcrUnavailable("OCR needs the rapidocr package: install it with `pip install rapidocr==3.10.0` "
                             "(its wheel ships the models; nothing is downloaded)") from None
    root = Path(rapidocr.__file__).resolve().parent / "models"
    missing = [n for n in (_DET_MODEL, _REC_MODEL, _CLS_MODEL) if not (root / n).is_file()]
    if missing:
        raise OcrUnavailable(f"the rapidocr install lacks its bundled models {missing} in {root}: reinstall "
                             f"rapidocr==3.10.0 from its wheel (the station never downloads models)")
    return root


class _NoDownload:
    """While the engine is built, any download it attempts is refused: the station reads offline or not at all."""

    _lock = threading.Lock()

    def __enter__(self):
        from rapidocr.utils import download_file

        self._lock.acquire()
        self._cls = download_file.DownloadFile
        self._run = self._cls.__dict__["run"]

        def refuse(cls, params):
            raise OcrUnavailable(f"rapidocr tried to download {params.file_url}: the station reads text offline "
                                 f"only; reinstall rapidocr==3.10.0 so its bundled models are used")

        self._cls.run = classmethod(refuse)
        return self

    def __exit__(self, *exc) -> None:
        self._cls.run = self._run
        self._lock.release()


def recognised_text(raw) -> str:
    """The recogniser's text in the forms the parsers read: its dictionary is Chinese-first and often gives
    full-width forms ("B\uff1a7769B", "\uff2c\uff2f\uff34"), which NFKC folds to ASCII."""
    return unicodedata.normalize("NFKC", str(raw)).strip()


def _box_xyxy(poly) -> tuple[float, float, float, float]:
    p = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    return (float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max()))


class TextReader:
    """OCR of the views of an item. Nothing is loaded until the first read (no I/O in the constructor).

    ``min_score``: lines the recogniser scored below this are dropped. ``threads``: ONNX Runtime intra-op
    threads. ``use_angle_cls``: the 0/180 degree line classifier (labels upside down on the bench)."""

    def __init__(self, min_score: float = 0.5, threads: int = 2, use_angle_cls: bool = True,
                 max_side_px: int = MAX_SIDE_PX) -> None:
        self.min_score = min_score
        self.threads = threads
        self.use_angle_cls = use_angle_cls
        self.max_side_px = max_side_px
        self._engine = None
        self._lock = threading.Lock()

    def _build(self):
        root = bundled_model_dir()
        try:
            import onnxruntime  # noqa: F401 - the engine the station already runs its detector on
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise OcrUnavailable(f"OCR cannot start: {exc}: install the project's dependencies") from None
        params = {
            "Global.log_level": "error",
            "Global.use_cls": self.use_angle_cls,
            "Global.text_score": self.min_score,
            "Global.model_root_dir": str(root),
            "Det.model_path": str(root / _DET_MODEL),
            "Rec.model_path": str(root / _REC_MODEL),
            "Cls.model_path": str(root / _CLS_MODEL),
            "Det.limit_type": "max",
            "Det.limit_side_len": self.max_side_px,
            "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
        with _NoDownload():
            engine = RapidOCR(params=params)
            # the sessions load lazily: run once on a blank so a missing model fails here, not mid-inspection
            engine(np.full((64, 256, 3), 255, np.uint8))
        return engine

    def engine(self):
        with self._lock:
            if self._engine is None:
                try:
                    self._engine = self._build()
                except OcrUnavailable:
                    raise
                except Exception as exc:  # noqa: BLE001 - a broken model file or runtime: one clear line
                    raise OcrUnavailable(f"OCR engine failed to start ({type(exc).__name__}: {exc}): reinstall "
                                         f"rapidocr==3.10.0 and check onnxruntime") from None
            return self._engine

    def read_image(self, image: np.ndarray, view: str = "") -> list[TextLine]:
        """Text lines in one BGR image."""
        if image is None or image.ndim not in (2, 3) or image.size == 0:
            raise ValueError("not an image: give a BGR uint8 array")
        result = self.engine()(np.ascontiguousarray(image))
        if result.txts is None or result.boxes is None:
            return []
        return [TextLine(recognised_text(t), float(s), _box_xyxy(b), view)
                for t, s, b in zip(result.txts, result.scores, result.boxes)
                if str(t).strip() and float(s) >= self.min_score]

    def read_frames(self, frames: Iterable[Frame], serial_pattern: str | None = None,
                    today: date | None = None) -> TextReading:
        t0 = time.perf_counter()
        frames = list(frames)
        lines = [ln for f in frames for ln in self.read_image(f.image, f.view)]
        serials, dates = parse_lines(lines, serial_pattern, today)
        return TextReading(tuple(lines), tuple(serials), tuple(dates), tuple(f.view for f in frames),
                           (time.perf_counter() - t0) * 1000, tuple(parse_lots(lines)))
