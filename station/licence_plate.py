"""Licence-plate labels: every inspected unit gets a label the next station (or this one) scans.

- ``zpl_for(plate)``: the label as ZPL II for a 203 dpi thermal printer, 4 x 2 inch (812 x 406 dots): a
  Code128 of the record id and the grade, disposition, lane, SKU, order and date as text.
- ``render_zpl(zpl)``: our raster of that ZPL (the subset ``zpl_for`` writes; anything else is refused, so
  the raster never silently differs from what a printer prints). It feeds the PDF fallback and the read-back
  check: render -> vision/scanner.py -> record id.
- ``pdf_for(raster)``: a one-page PDF with the raster as an image XObject (no PDF library needed).
- Printers by URL: ``tcp://host:9100`` (raw port 9100, the Zebra default), ``serial:/dev/ttyUSB0?baudrate=9600``
  (anything pyserial's ``serial_for_url`` opens: a pty path, ``loop://``, ``rfc2217://``), ``file:///spool/dir``
  (a spool folder another process prints from).
- ``LabelSpool``: ``<data_dir>/labels.db``; a label that could not be printed stays ``unprinted`` with the
  printer's error, for a retry. Printing never raises into the caller's decision path (``print_label``).

The barcode carries ``LP`` + the 128-bit record id as 40 decimal digits (Code128 subset C): the 32 hex
characters as they are need up to 387 modules, more than 4 inches at 2 dots a module with its quiet zones;
the digits need 288. The full hex id is printed under the bars for people.
The code's grammar (``plate_code``, ``record_id_from_code``) is station/labels.py's, with every other label's.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import sqlite3
import time
import zlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, Mapping, Union
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from station.dbhandle import SqliteHandle, private_sqlite_files
from station.domain import InspectionRecord
# The code grammar (LP + 40 digits) lives with every other label grammar; re-exported for callers here.
from station.labels import PLATE_PREFIX, LabelError, plate_code, record_id_from_code  # noqa: F401

DPI = 203
LABEL_WIDTH_DOTS = 812  # 4 inch at 203 dpi
LABEL_HEIGHT_DOTS = 406  # 2 inch
MODULE_DOTS = 2  # 0.25 mm bars: what handheld and fixed scanners read reliably
BAR_HEIGHT_DOTS = 150


class PrinterError(RuntimeError):
    """The printer did not take the label (refused, timed out, reported a fault); the message names it."""


# ----------------------------------------------------------------------------------------- the plate


@dataclass(frozen=True, slots=True)
class Plate:
    """What a licence-plate label shows, taken from a record."""

    record_id: str
    grade: str
    disposition: str
    lane: int
    sku: str
    order_id: str
    created_at: str  # ISO 8601 as the store keeps it
    station_id: str = ""

    @classmethod
    def from_record(cls, record: InspectionRecord) -> "Plate":
        d = record.decision
        return cls(record.record_id, d.grade.value, d.disposition.value, int(record.lane), record.request.sku,
                   record.request.order_id, record.created_at, record.station_id)

    @classmethod
    def from_row(cls, row: Mapping) -> "Plate":
        """A row of the store's ``inspections`` table (sqlite3.Row or dict)."""
        return cls(str(row["record_id"]), str(row["grade"]), str(row["disposition"]), int(row["lane"]),
                   str(row["sku"]), str(row["order_id"]), str(row["created_at"]), str(row["station_id"] or ""))

    @property
    def date(self) -> str:
        return self.created_at[:10]


# ----------------------------------------------------------------------------------------- ZPL


def _zpl_field(text: str) -> str:
    """Field data for ``^FH_^FD``: ``^``, ``~``, ``_`` and anything outside printable ASCII as _XX hex of
    its UTF-8 bytes (``^CI28``), so a SKU can never end the field or start a command."""
    out = []
    for ch in text:
        if 32 <= ord(ch) < 127 and ch not in "^~_":
            out.append(ch)
        else:
            out.extend(f"_{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


def zpl_for(plate: Plate | InspectionRecord) -> str:
    """The ZPL II of the plate's label (pure)."""
    if isinstance(plate, InspectionRecord):
        plate = Plate.from_record(plate)
    code = plate_code(plate.record_id)
    bar_x = (LABEL_WIDTH_DOTS - _code128_modules(code) * MODULE_DOTS) // 2
    headline = f"GRADE {plate.grade}  {plate.disposition.upper()}  LANE {plate.lane}"
    lines = [
        "^XA", "^CI28", f"^PW{LABEL_WIDTH_DOTS}", f"^LL{LABEL_HEIGHT_DOTS}", "^LH0,0",
        f"^FO24,18^A0N,44,40^FH_^FD{_zpl_field(_clip(headline, 34))}^FS",
        f"^FO24,70^A0N,28,26^FH_^FD{_zpl_field(_clip('SKU ' + plate.sku, 52))}^FS",
        f"^FO24,104^A0N,24,22^FH_^FD{_zpl_field(_clip(f'ORDER {plate.order_id}  {plate.date}', 60))}^FS",
        f"^FO{bar_x},138^BY{MODULE_DOTS},3,{BAR_HEIGHT_DOTS}^BCN,{BAR_HEIGHT_DOTS},N,N,N,A^FD{code}^FS",
        f"^FO24,300^A0N,26,20^FH_^FD{_zpl_field(plate.record_id)}^FS",
        f"^FO24,336^A0N,22,20^FH_^FD{_zpl_field(_clip(f'STATION {plate.station_id}', 60))}^FS",
        "^FO16,10^GB780,384,3^FS",
        "^XZ",
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- raster


def _code128_row(text: str) -> np.ndarray:
    """One row of the symbol, one pixel a module, 0 = bar, 255 = space (zxing-cpp's encoder), no quiet zone."""
    import zxingcpp

    try:
        code = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.Code128)
    except Exception as exc:  # noqa: BLE001 - zxing says why (character set, length)
        raise LabelError(f"cannot encode {text!r} as Code128: {exc}") from None
    image = np.asarray(code.to_image(scale=1, add_quiet_zones=False), dtype=np.uint8)
    return image[image.shape[0] // 2].copy()


def _code128_modules(text: str) -> int:
    return int(_code128_row(text).shape[0])


_COMMAND = re.compile(r"([\^~])([A-Z@][A-Z0-9@]?)([^\^~]*)")
_FH_ESCAPE = re.compile(r"_([0-9A-Fa-f]{2})")


def _ints(args: str, n: int, defaults: tuple) -> list:
    parts = [p.strip() for p in args.split(",")] + [""] * n
    out = []
    for i in range(n):
        p = parts[i]
        out.append(defaults[i] if p == "" else (int(p) if p.lstrip("-").isdigit() else p))
    return out


def _put_text(canvas: np.ndarray, text: str, x: int, y: int, h: int, w: int) -> None:
    """ZPL font 0 of cell height ``h`` at ``(x, y)`` (top left), drawn with OpenCV's Hershey font.
    Only people read the text; what a machine reads is the barcode."""
    import cv2

    text = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)  # Hershey has ASCII only
    if not text:
        return
    font = cv2.FONT_HERSHEY_SIMPLEX
    (_, th), _ = cv2.getTextSize("H", font, 1.0, 2)
    scale = 0.72 * h / th  # cap height of ZPL font 0 is about 0.72 of its cell
    thickness = max(1, round(h / 14))
    tw = cv2.getTextSize(text, font, scale, thickness)[0][0]
    wanted = len(text) * w * 0.56  # font 0's average advance at width w
    sx = min(1.6, max(0.6, wanted / tw)) if tw else 1.0
    strip = np.full((h + 8, int(tw * 1.05) + 8), 255, np.uint8)
    cv2.putText(strip, text, (2, int(0.72 * h) + 2), font, scale, 0, thickness, cv2.LINE_AA)
    strip = cv2.resize(strip, (max(1, int(strip.shape[1] * sx)), strip.shape[0]), interpolation=cv2.INTER_AREA)
    H, W = canvas.shape
    y0, x0 = max(0, y), max(0, x)
    y1, x1 = min(H, y + strip.shape[0]), min(W, x + strip.shape[1])
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] = np.minimum(canvas[y0:y1, x0:x1], strip[y0 - y:y1 - y, x0 - x:x1 - x])


def render_zpl(zpl: str) -> np.ndarray:
    """A grayscale raster (dots, 0 black / 255 white) of a label in the ZPL subset ``zpl_for`` writes:
    ^XA ^XZ ^CI ^PW ^LL ^LH ^FO ^A0 ^FH ^FD ^FS ^BY ^BC ^GB. Raises LabelError on anything else."""
    text = zpl.strip()
    if not text.startswith("^XA") or not text.endswith("^XZ"):
        raise LabelError("not a ZPL label: it must start with ^XA and end with ^XZ")
    width, height = LABEL_WIDTH_DOTS, LABEL_HEIGHT_DOTS
    ops: list[tuple[str, str]] = []
    for m in _COMMAND.finditer(text):
        ops.append((m.group(1) + m.group(2), m.group(3).rstrip("\r\n")))
        if m.group(2) == "PW":
            width = int(m.group(3))
        elif m.group(2) == "LL":
            height = int(m.group(3))
    if not (1 <= width <= 4000 and 1 <= height <= 8000):
        raise LabelError(f"label size {width} x {height} dots is out of range")
    canvas = np.full((height, width), 255, np.uint8)
    home = (0, 0)
    origin = (0, 0)
    font = (30, 30)
    by = (2, 3, 10)
    field: tuple | None = None  # ("text",) / ("code128", height) / ("box", w, h, t)
    hex_escape = False
    data: str | None = None
    for op, args in ops:
        if op in ("^XA", "^XZ", "^CI", "^PW", "^LL"):
            continue
        if op == "^LH":
            hx, hy = _ints(args, 2, (0, 0))
            home = (int(hx), int(hy))
        elif op == "^FO":
            fx, fy = _ints(args, 2, (0, 0))
            origin = (home[0] + int(fx), home[1] + int(fy))
            field, hex_escape, data = ("text",), False, None
        elif op == "^A0":
            orient, fh, fw = _ints(args.lstrip(","), 3, ("N", 30, 0))
            if orient != "N":
                raise LabelError(f"^A0 orientation {orient!r} is not supported here (only N)")
            font = (int(fh), int(fw) or int(fh))
        elif op == "^FH":
            hex_escape = True
        elif op == "^FD":
            data = _FH_ESCAPE.sub(lambda e: chr(int(e.group(1), 16)), args) if hex_escape else args
            if hex_escape:  # the _XX bytes are UTF-8
                data = data.encode("latin-1", "replace").decode("utf-8", "replace")
        elif op == "^BY":
            mw, ratio, bh = _ints(args, 3, (by[0], by[1], by[2]))
            by = (int(mw), ratio, int(bh))
        elif op == "^BC":
            orient, bh, *_ = _ints(args, 6, ("N", by[2], "Y", "N", "N", "N"))
            if orient != "N":
                raise LabelError(f"^BC orientation {orient!r} is not supported here (only N)")
            field = ("code128", int(bh))
        elif op == "^GB":
            bw, bh, t = _ints(args, 3, (1, 1, 1))
            field = ("box", int(bw), int(bh), int(t))
        elif op == "^FS":
            _draw_field(canvas, field, origin, font, by, data)
            field, hex_escape, data = None, False, None
        else:
            raise LabelError(f"ZPL command {op} is not supported by this renderer")
    return canvas


def _draw_field(canvas: np.ndarray, field: tuple | None, origin: tuple[int, int], font: tuple[int, int],
                by: tuple, data: str | None) -> None:
    x, y = origin
    if field is None:
        return
    if field[0] == "box":
        _, bw, bh, t = field
        t = max(1, min(t, bw, bh))  # ZPL draws the border only; a thickness of half the size fills it
        canvas[y:y + t, x:x + bw] = 0
        canvas[y + bh - t:y + bh, x:x + bw] = 0
        canvas[y:y + bh, x:x + t] = 0
        canvas[y:y + bh, x + bw - t:x + bw] = 0
    elif field[0] == "code128":
        if not data:
            raise LabelError("^BC field without data")
        row = np.repeat(_code128_row(data), by[0])
        H, W = canvas.shape
        if x + row.shape[0] > W:
            raise LabelError(f"the barcode ({row.shape[0]} dots) does not fit the label's {W} dots from x={x}")
        canvas[y:y + field[1], x:x + row.shape[0]] = row[None, :]
    elif data:
        _put_text(canvas, data, x, y, font[0], font[1])


def render_plate(plate: Plate | InspectionRecord) -> np.ndarray:
    return render_zpl(zpl_for(plate))


# ----------------------------------------------------------------------------------------- PDF


def pdf_for(raster: np.ndarray, dpi: int = DPI) -> bytes:
    """One page the raster's size at ``dpi``, the raster as an 8-bit DeviceGray image XObject (Flate)."""
    if raster.ndim != 2 or raster.dtype != np.uint8 or raster.size == 0:
        raise LabelError("pdf_for needs a grayscale uint8 raster")
    h, w = raster.shape
    pw, ph = w * 72.0 / dpi, h * 72.0 / dpi
    image = zlib.compress(np.ascontiguousarray(raster).tobytes(), 9)
    content = f"q {pw:.2f} 0 0 {ph:.2f} 0 0 cm /Im0 Do Q\n".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {pw:.2f} {ph:.2f}] "
         f"/Resources << /XObject << /Im0 5 0 R >> >> /Contents 4 0 R >>").encode("ascii"),
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        (f"<< /Type /XObject /Subtype /Image /Width {w} /Height {h} /ColorSpace /DeviceGray "
         f"/BitsPerComponent 8 /Filter /FlateDecode /Length {len(image)} >>\nstream\n").encode("ascii")
        + image + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def raster_from_pdf(data: bytes) -> np.ndarray:
    """The label raster back out of a PDF ``pdf_for`` wrote (follows its xref: a wrong offset fails)."""
    try:
        start = int(data[data.rindex(b"startxref") + 9:].split()[0])
        table = data[start:].split(b"trailer")[0].split(b"\n")
        if not table[0].startswith(b"xref"):
            raise ValueError("startxref does not point at the xref table")
        first, count = (int(v) for v in table[1].split())
        for entry in table[2 + 1:2 + count - first]:  # object 0 is the free head
            off = int(entry.split()[0])
            head = data[off:off + 4096]
            if not re.match(rb"\d+ 0 obj", head):
                raise ValueError(f"xref offset {off} is not an object")
            if b"/Subtype /Image" not in head.split(b"stream")[0]:
                continue
            meta = head.split(b"stream")[0].decode("ascii")
            w, h, n = (int(re.search(rf"/{k} (\d+)", meta).group(1)) for k in ("Width", "Height", "Length"))
            body_at = off + head.index(b"stream\n") + 7
            pixels = zlib.decompress(data[body_at:body_at + n])
            return np.frombuffer(pixels, np.uint8).reshape(h, w).copy()
    except (ValueError, IndexError, AttributeError, zlib.error) as exc:
        raise LabelError(f"not a label PDF this station wrote: {exc}") from None
    raise LabelError("the PDF holds no image")


# ----------------------------------------------------------------------------------------- read-back


def record_id_from_label_image(path: Path | str) -> str:
    """The record id of the licence plate in an image file (a photo or scan of a label, or a rendered one):
    what ``station history --scan IMAGE`` opens. LabelError with what to do when there is none."""
    import cv2

    path = Path(path)
    if path.suffix.lower() == ".pdf" and path.is_file():
        image = raster_from_pdf(path.read_bytes())
    else:
        if not path.is_file():
            raise LabelError(f"label image {path} not found")
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None or image.size == 0:
            raise LabelError(f"{path} is not a readable image (PNG or JPEG, or a label PDF)")
    return record_id_from_raster(image, source=str(path))


def record_id_from_raster(image: np.ndarray, source: str = "label") -> str:
    from vision.scanner import FrameScanner, ScannerError, Symbology

    try:
        scans = FrameScanner((Symbology.CODE128,)).scan(image, source)
    except ScannerError as exc:
        raise LabelError(str(exc)) from None
    problems = []
    for scan in scans:
        try:
            return record_id_from_code(scan.text)
        except LabelError as exc:
            problems.append(str(exc))
    if problems:
        raise LabelError(f"{source}: a Code128 was read but {problems[0]}")
    raise LabelError(f"{source}: no licence plate found (no Code128 in the image); photograph the whole label, "
                     "in focus, or type the record id")


def history_for_label(store, path: Path | str) -> tuple[str, list[dict]]:
    """``station history --scan IMAGE``: the label's record id, and the rows to show (``store.rows`` dicts):
    every inspection and override of its unit, or, for a unit without a unit code, the record and the
    overrides that point at it. LabelError when the label names no record of this station."""
    record_id = record_id_from_label_image(path)
    row = store.get(record_id)
    if row is None:
        raise LabelError(f"the label names record {record_id}, which is not in this station's database "
                         "(labelled at another station?)")
    if row["unit_code"]:
        return record_id, store.history(row["unit_code"])
    return record_id, list(store.rows("WHERE record_id = ? OR overrides = ?", (record_id, record_id)))


# ----------------------------------------------------------------------------------------- printers


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """Zebra ``~HS`` host status, the flags that stop a label from coming out."""

    paper_out: bool
    paused: bool
    head_open: bool
    ribbon_out: bool

    def problems(self) -> list[str]:
        names = (("paper_out", "paper out"), ("paused", "paused"), ("head_open", "print head open"),
                 ("ribbon_out", "ribbon out"))
        return [text for attr, text in names if getattr(self, attr)]


def parse_host_status(raw: bytes) -> PrinterStatus:
    """The three STX...ETX strings a ZPL printer answers to ``~HS``."""
    frames = re.findall(rb"\x02([^\x03]*)\x03", raw)
    if len(frames) < 2:
        raise PrinterError(f"the printer's ~HS answer is not host status: {raw[:60]!r}")
    s1 = frames[0].decode("ascii", "replace").split(",")
    s2 = frames[1].decode("ascii", "replace").split(",")
    if len(s1) < 3 or len(s2) < 4:
        raise PrinterError(f"the printer's ~HS answer is too short: {raw[:60]!r}")
    flag = lambda v: v.strip() == "1"  # noqa: E731
    return PrinterStatus(paper_out=flag(s1[1]), paused=flag(s1[2]), head_open=flag(s2[2]), ribbon_out=flag(s2[3]))


class Printer:
    """A label printer reached by URL; ``send`` delivers bytes or raises PrinterError. Nothing is opened
    before ``send``."""

    url: str

    def send(self, data: bytes, name: str) -> None:  # pragma: no cover - every transport defines it
        raise NotImplementedError


class TcpPrinter(Printer):
    """Raw TCP (port 9100, JetDirect style). With ``check_status`` it first asks ``~HS`` and refuses to send
    to a printer that is out of paper, paused or open (bytes sent there would wait, unseen)."""

    def __init__(self, url: str, host: str, port: int, timeout_s: float, check_status: bool) -> None:
        self.url, self.host, self.port, self.timeout_s, self.check_status = url, host, port, timeout_s, check_status

    def _read_status(self, sock: socket.socket) -> PrinterStatus:
        sock.sendall(b"~HS")
        raw = b""
        deadline = time.monotonic() + self.timeout_s
        while raw.count(b"\x03") < 3:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            sock.settimeout(left)
            chunk = sock.recv(1024)
            if not chunk:
                break
            raw += chunk
        return parse_host_status(raw)

    def send(self, data: bytes, name: str) -> None:
        where = f"printer {self.host}:{self.port}"
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout_s) as sock:
                if self.check_status:
                    problems = self._read_status(sock).problems()
                    if problems:
                        raise PrinterError(f"{where} reports {', '.join(problems)}: fix it, the label is kept "
                                           "for a retry")
                sock.settimeout(self.timeout_s)
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
        except ConnectionRefusedError:
            raise PrinterError(f"{where} refused the connection: is it on and is raw port {self.port} "
                               "enabled?") from None
        except (socket.timeout, TimeoutError):
            raise PrinterError(f"{where} did not answer within {self.timeout_s:g} s: check its network "
                               "cable and IP address") from None
        except OSError as exc:
            raise PrinterError(f"{where}: {exc.strerror or exc}") from None


class SerialPrinter(Printer):
    def __init__(self, url: str, port_url: str, baudrate: int, timeout_s: float) -> None:
        self.url, self.port_url, self.baudrate, self.timeout_s = url, port_url, baudrate, timeout_s

    def send(self, data: bytes, name: str) -> None:
        import serial

        try:
            port = serial.serial_for_url(self.port_url, baudrate=self.baudrate, write_timeout=self.timeout_s)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PrinterError(f"cannot open printer port {self.port_url!r}: {exc}") from None
        try:
            port.write(data)
            port.flush()
        except serial.SerialTimeoutException:
            raise PrinterError(f"printer port {self.port_url} took no data within {self.timeout_s:g} s: "
                               "check the cable, baud rate and flow control") from None
        except (serial.SerialException, OSError) as exc:
            raise PrinterError(f"printer port {self.port_url}: {exc}") from None
        finally:
            port.close()


class SpoolFolderPrinter(Printer):
    """Writes each label as ``<name>`` into a folder (atomically: a spooler never sees half a file)."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url, self.folder = url, folder

    def send(self, data: bytes, name: str) -> None:
        if not self.folder.is_dir():
            raise PrinterError(f"spool folder {self.folder} does not exist: create it or fix the printer URL")
        final = self.folder / name
        tmp = self.folder / f".{name}.tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except OSError as exc:
            raise PrinterError(f"cannot write {final}: {exc.strerror or exc}") from None


class PdfFolderPrinter(Printer):
    """The fallback without a label printer: each label as ``<record id>.pdf`` in a folder (our raster of the
    same ZPL), for any office printer."""

    def __init__(self, folder: Path) -> None:
        self.url, self.folder = folder.as_uri(), folder

    def send(self, data: bytes, name: str) -> None:
        try:
            pdf = pdf_for(render_zpl(data.decode("utf-8")))
        except (LabelError, UnicodeDecodeError) as exc:
            raise PrinterError(f"cannot make a PDF of label {name}: {exc}") from None
        SpoolFolderPrinter(self.url, self.folder).send(pdf, Path(name).with_suffix(".pdf").name)


def printer_for_url(url: str, timeout_s: float = 5.0, check_status: bool = False) -> Printer:
    """``tcp://host[:9100]``, ``serial:PORT[?baudrate=N]`` or ``file:///folder``; LabelError when the URL is
    none of them."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "tcp":
        if not parts.hostname:
            raise LabelError(f"printer URL {url!r} has no host: use tcp://HOST:9100")
        try:
            port = parts.port or 9100
        except ValueError:
            raise LabelError(f"printer URL {url!r}: the port must be a number (Zebra raw port: 9100)") from None
        return TcpPrinter(url, parts.hostname, port, timeout_s, check_status)
    if scheme == "serial":
        rest = url[len("serial:"):]
        port_url, _, query = rest.partition("?")
        params = parse_qs(query)
        try:
            baud = int(params.get("baudrate", ["9600"])[0])
        except ValueError:
            raise LabelError(f"printer URL {url!r}: baudrate must be a number, e.g. ?baudrate=9600") from None
        if not port_url:
            raise LabelError(f"printer URL {url!r} names no port: use serial:/dev/ttyUSB0?baudrate=9600")
        return SerialPrinter(url, port_url, baud, timeout_s)
    if scheme == "file":
        folder = Path(unquote(parts.path))
        if not parts.path:
            raise LabelError(f"printer URL {url!r} names no folder: use file:///var/spool/labels")
        return SpoolFolderPrinter(url, folder)
    raise LabelError(f"printer URL {url!r}: use tcp://HOST:9100, serial:/dev/ttyUSB0?baudrate=9600 or "
                     "file:///spool/folder")


# ----------------------------------------------------------------------------------------- configuration


class ZplLabelsConfig(BaseModel):
    """``[labels] type = "zpl"``: a ZPL printer by URL."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["zpl"] = "zpl"
    printer: str = Field(..., pattern=r"^(tcp://|serial:|file://)",
                         description="tcp://HOST:9100, serial:/dev/ttyUSB0?baudrate=9600 or file:///spool/folder")
    timeout_s: float = Field(5.0, gt=0, le=120)
    check_status: bool = Field(False, description="ask ~HS first (tcp): refuse a printer out of paper or paused")


class PdfLabelsConfig(BaseModel):
    """``[labels] type = "pdf"``: the fallback, one PDF a label in a folder."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["pdf"] = "pdf"
    folder: Path | None = Field(None, description="default: <data_dir>/labels")


class OffLabelsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["off"] = "off"


LabelsConfig = Annotated[Union[ZplLabelsConfig, PdfLabelsConfig, OffLabelsConfig], Field(discriminator="type")]


def printer_for_config(cfg: ZplLabelsConfig | PdfLabelsConfig | OffLabelsConfig, data_dir: Path) -> Printer | None:
    """The configured printer (None when labels are off). Opens nothing; a PDF folder is created here."""
    if isinstance(cfg, OffLabelsConfig):
        return None
    if isinstance(cfg, PdfLabelsConfig):
        from station.dbhandle import private_dir

        folder = Path(cfg.folder) if cfg.folder is not None else Path(data_dir) / "labels"
        try:
            private_dir(folder)
        except OSError as exc:
            raise LabelError(f"cannot make the label folder {folder}: {exc}") from None
        return PdfFolderPrinter(folder)
    return printer_for_url(cfg.printer, cfg.timeout_s, cfg.check_status)


# ----------------------------------------------------------------------------------------- spool state


class LabelState(StrEnum):
    PRINTED = "printed"
    UNPRINTED = "unprinted"


@dataclass(frozen=True, slots=True)
class LabelRow:
    record_id: str
    state: LabelState
    attempts: int
    last_error: str | None
    printer: str | None
    created_at: str
    printed_at: str | None

    def to_json(self) -> dict:
        return {"record_id": self.record_id, "state": self.state.value, "attempts": self.attempts,
                "last_error": self.last_error, "printer": self.printer, "created_at": self.created_at,
                "printed_at": self.printed_at}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class LabelSpool(SqliteHandle):
    """``<data_dir>/labels.db``: every label the station made, printed or not, with its ZPL for a retry.
    Its own file: a stuck printer never holds a lock on the station's records."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def open(self) -> "LabelSpool":
        try:
            private_sqlite_files(self.path)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("""CREATE TABLE IF NOT EXISTS labels (
                record_id TEXT PRIMARY KEY, zpl TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL,
                last_error TEXT, printer TEXT, created_at TEXT NOT NULL, printed_at TEXT)""")
        except (OSError, sqlite3.Error) as exc:
            raise LabelError(f"cannot open the label spool {self.path}: {exc}") from None
        self._db = db
        return self

    def add(self, record_id: str, zpl: str) -> None:
        """Queue a label (again: a no-op when the record already has one)."""
        self.db.execute("INSERT OR IGNORE INTO labels(record_id, zpl, state, attempts, created_at) "
                        "VALUES (?,?,?,0,?)", (record_id, zpl, LabelState.UNPRINTED.value, _now()))

    def zpl(self, record_id: str) -> str | None:
        row = self.db.execute("SELECT zpl FROM labels WHERE record_id=?", (record_id,)).fetchone()
        return None if row is None else row[0]

    def mark(self, record_id: str, printer: str, error: str | None) -> None:
        if error is None:
            self.db.execute("UPDATE labels SET state=?, attempts=attempts+1, last_error=NULL, printer=?, "
                            "printed_at=? WHERE record_id=?", (LabelState.PRINTED.value, printer, _now(), record_id))
        else:
            self.db.execute("UPDATE labels SET state=?, attempts=attempts+1, last_error=?, printer=? "
                            "WHERE record_id=?", (LabelState.UNPRINTED.value, error, printer, record_id))

    def get(self, record_id: str) -> LabelRow | None:
        rows = self._rows("WHERE record_id=?", (record_id,))
        return rows[0] if rows else None

    def unprinted(self) -> list[LabelRow]:
        return self._rows("WHERE state=? ORDER BY created_at", (LabelState.UNPRINTED.value,))

    def _rows(self, where: str, params: tuple) -> list[LabelRow]:
        cur = self.db.execute("SELECT record_id, state, attempts, last_error, printer, created_at, printed_at "
                              f"FROM labels {where}", params)
        return [LabelRow(r[0], LabelState(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in cur]

    def status(self) -> dict:
        counts = dict(self.db.execute("SELECT state, COUNT(*) FROM labels GROUP BY state").fetchall())
        return {"printed": counts.get(LabelState.PRINTED.value, 0),
                "unprinted": counts.get(LabelState.UNPRINTED.value, 0),
                "unprinted_labels": [r.to_json() for r in self.unprinted()[:20]]}


@dataclass(frozen=True, slots=True)
class PrintOutcome:
    record_id: str
    printed: bool
    error: str | None = None


def print_label(spool: LabelSpool, printer: Printer, plate: Plate | InspectionRecord) -> PrintOutcome:
    """Queue the plate's label and try to print it once. Never raises for a printer fault: the outcome says
    what happened and the label stays unprinted for ``retry_unprinted``. Call it after the record is
    durable; the decision does not depend on it."""
    if isinstance(plate, InspectionRecord):
        plate = Plate.from_record(plate)
    spool.add(plate.record_id, zpl_for(plate))
    return _attempt(spool, printer, plate.record_id)


def retry_unprinted(spool: LabelSpool, printer: Printer) -> list[PrintOutcome]:
    """Every unprinted label, oldest first; stops at the first failure (the printer is still away)."""
    out = []
    for row in spool.unprinted():
        outcome = _attempt(spool, printer, row.record_id)
        out.append(outcome)
        if not outcome.printed:
            break
    return out


def print_forever(spool: LabelSpool, printer: Printer, stop, idle_s: float = 5.0) -> None:
    """The printing thread: prints what is queued (``spool.add`` from the inspection path, which never waits
    on a printer) until ``stop`` (a threading.Event) is set; a failure waits ``idle_s`` and tries again."""
    while not stop.is_set():
        retry_unprinted(spool, printer)
        stop.wait(idle_s)


def _attempt(spool: LabelSpool, printer: Printer, record_id: str) -> PrintOutcome:
    zpl = spool.zpl(record_id)
    if zpl is None:
        return PrintOutcome(record_id, False, f"no label queued for {record_id}")
    try:
        printer.send(zpl.encode("utf-8"), f"{record_id}.zpl")
    except PrinterError as exc:
        spool.mark(record_id, printer.url, str(exc))
        return PrintOutcome(record_id, False, str(exc))
    spool.mark(record_id, printer.url, None)
    return PrintOutcome(record_id, True)


def labels_status(path: Path) -> dict:
    """``sync --status``'s label block, read without creating the spool when there is none yet."""
    path = Path(path)
    if not path.exists():
        return {"printed": 0, "unprinted": 0, "unprinted_labels": []}
    with LabelSpool(path) as spool:
        return spool.status()
