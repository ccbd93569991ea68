"""Code scanners: barcodes in camera frames (zxing-cpp: QR, Code128, EAN-13, DataMatrix), keyboard-wedge
readers (they type the code and press Enter) and serial scanners (a port opened by URL).

Every source gives raw text as a :class:`Scan`; what the text means (a return label, a unit code) is decided
by the caller (station/ parses labels), through :func:`parse_payload`, which turns a parser's complaint into
an error that names the source, the symbology, what was read and what was expected.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Callable, TypeVar

import numpy as np

T = TypeVar("T")


class ScannerError(RuntimeError):
    """A scanner could not deliver a code; the message says what to check."""


class NoCodeFound(ScannerError):
    pass


class PayloadError(ValueError):
    """A code was read but its text is not what was expected."""


class Symbology(StrEnum):
    QR = "qr"
    CODE128 = "code128"
    EAN13 = "ean13"
    DATAMATRIX = "datamatrix"
    UNKNOWN = "unknown"  # keyboard-wedge and serial scanners do not say


_ZX_NAMES = {Symbology.QR: "QRCode", Symbology.CODE128: "Code128", Symbology.EAN13: "EAN13",
             Symbology.DATAMATRIX: "DataMatrix"}
DEFAULT_SYMBOLOGIES = (Symbology.QR, Symbology.CODE128, Symbology.EAN13, Symbology.DATAMATRIX)


@dataclass(frozen=True, slots=True)
class Scan:
    text: str
    symbology: Symbology
    source: str  # "camera:<view>", "keyboard", "serial:<url>"
    at: float  # wall-clock time it was read
    corners: tuple[tuple[int, int], ...] = ()  # in the frame, for a camera read


def _zx_format(symbology: Symbology):
    import zxingcpp

    return getattr(zxingcpp.BarcodeFormat, _ZX_NAMES[symbology])


def _symbology_of(fmt) -> Symbology:
    name = str(getattr(fmt, "name", fmt)).split(".")[-1]
    for sym, zx in _ZX_NAMES.items():
        if zx == name:
            return sym
    return Symbology.UNKNOWN


def render_code(text: str, symbology: Symbology, scale: int = 4) -> np.ndarray:
    """A grayscale image of the code with its quiet zone, drawn by zxing-cpp's writer (labels, tests)."""
    import zxingcpp

    try:
        code = zxingcpp.create_barcode(text, _zx_format(symbology))
    except Exception as exc:  # noqa: BLE001 - zxing says why (length, character set, check digit)
        raise PayloadError(f"cannot encode {text!r} as {symbology.value}: {exc}") from None
    return np.ascontiguousarray(np.asarray(code.to_image(scale=scale)), dtype=np.uint8)


class FrameScanner:
    """Decodes codes in camera images; ``scan`` returns every code, ``scan_one`` exactly the first or
    NoCodeFound."""

    def __init__(self, symbologies: tuple[Symbology, ...] = DEFAULT_SYMBOLOGIES, try_harder: bool = True) -> None:
        if not symbologies or Symbology.UNKNOWN in symbologies:
            raise ValueError("name the symbologies to look for (qr, code128, ean13, datamatrix)")
        self.symbologies = tuple(symbologies)
        self.try_harder = try_harder

    def scan(self, image: np.ndarray, source: str = "camera") -> list[Scan]:
        import zxingcpp

        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
            raise ScannerError(f"{source}: not an image (expected a grayscale or BGR array)")
        if image.ndim == 3:
            image = image[:, :, :3] if image.shape[2] in (3, 4) else image[:, :, 0]
        formats = zxingcpp.BarcodeFormats([_zx_format(sym) for sym in self.symbologies])
        found = zxingcpp.read_barcodes(np.ascontiguousarray(image), formats=formats, try_rotate=self.try_harder,
                                       try_downscale=self.try_harder, text_mode=zxingcpp.TextMode.Plain)
        now = time.time()
        out = []
        for b in found:
            p = b.position
            corners = tuple((pt.x, pt.y) for pt in (p.top_left, p.top_right, p.bottom_right, p.bottom_left))
            out.append(Scan(b.text, _symbology_of(b.format), source, now, corners))
        return out

    def scan_one(self, image: np.ndarray, source: str = "camera") -> Scan:
        found = self.scan(image, source)
        if not found:
            names = ", ".join(s.value for s in self.symbologies)
            raise NoCodeFound(f"{source}: no code found (looked for {names}); turn the label to the camera, "
                              "check focus and glare, or scan it by hand")
        return found[0]

    def scan_frame(self, frame) -> Scan:
        """A station.domain.Frame: the source is named after its view."""
        return self.scan_one(frame.image, f"camera:{frame.view}")


def parse_payload(scan: Scan, parser: Callable[[str], T], expected: str) -> T:
    """``parser(scan.text)``; a parser error becomes a PayloadError naming the source, what was read and what
    was expected (e.g. ``expected="a return label RMA1;o=<order>;s=<sku>;r=<reason>"``)."""
    try:
        return parser(scan.text)
    except (ValueError, KeyError, TypeError) as exc:
        shown = scan.text if len(scan.text) <= 60 else scan.text[:57] + "..."
        raise PayloadError(f"{scan.source} read {shown!r} ({scan.symbology.value}), expected {expected}: {exc}") \
            from None


# ----------------------------------------------------------------------------------------- keyboard wedge


class KeyboardWedgeParser:
    """Turns the keystrokes a keyboard-wedge scanner types into codes; pure (no I/O, no clock): the UI feeds
    each key event's text, with its time if it wants typing told apart from scanning.

    A code ends at Enter (``"\\r"``, ``"\\n"``, or ``feed_key("", enter=True)``). Keys more than
    ``max_key_gap_s`` apart (a person typing, not a scanner) start the code afresh; ``None`` turns that off.
    """

    def __init__(self, max_len: int = 512, max_key_gap_s: float | None = None) -> None:
        self.max_len = max_len
        self.max_key_gap_s = max_key_gap_s
        self._buf: list[str] = []
        self._last_at: float | None = None
        self.rejected: list[str] = []  # why input was dropped, newest last

    def feed(self, text: str, at: float | None = None) -> list[Scan]:
        """Characters typed (one key or a burst); returns the codes completed by them."""
        out = []
        for ch in text:
            if ch in "\r\n":
                scan = self._finish(at)
                if scan is not None:
                    out.append(scan)
            else:
                self._key(ch, at)
        return out

    def feed_key(self, text: str, enter: bool = False, at: float | None = None) -> Scan | None:
        """One key event as a UI delivers it: its text, and whether it was Enter/Return."""
        if enter:
            return self._finish(at)
        for ch in text:
            self._key(ch, at)
        return None

    def reset(self) -> None:
        self._buf.clear()
        self._last_at = None

    def _key(self, ch: str, at: float | None) -> None:
        if at is not None and self.max_key_gap_s is not None and self._last_at is not None \
                and at - self._last_at > self.max_key_gap_s and self._buf:
            self.rejected.append(f"typed, not scanned: dropped {''.join(self._buf)[:40]!r}")
            self._buf.clear()
        self._last_at = at
        if not ch.isprintable():
            return  # Tab, Shift and other control keys some scanners send
        if len(self._buf) >= self.max_len:
            self.rejected.append(f"longer than {self.max_len} characters without Enter: dropped")
            self._buf.clear()
        self._buf.append(ch)

    def _finish(self, at: float | None) -> Scan | None:
        text = "".join(self._buf).strip()
        self.reset()
        if not text:
            return None
        return Scan(text, Symbology.UNKNOWN, "keyboard", at if at is not None else time.time())


# ----------------------------------------------------------------------------------------- serial scanner


class SerialScanner:
    """A scanner on a serial port (RS-232, USB CDC-ACM), opened by URL with ``serial_for_url`` (a pty path,
    ``loop://``, ``/dev/ttyACM0``); codes end with CR, LF or CRLF. Nothing is opened before ``open()``."""

    def __init__(self, url: str, baudrate: int = 9600, max_len: int = 512, encoding: str = "utf-8") -> None:
        self.url = url
        self.baudrate = baudrate
        self.max_len = max_len
        self.encoding = encoding
        self._port = None
        self._buf = bytearray()

    def open(self) -> "SerialScanner":
        import serial

        try:
            self._port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0.05)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ScannerError(f"cannot open scanner port {self.url!r}: {exc}") from None
        return self

    @property
    def port(self):
        return self._port

    def read(self, timeout_s: float = 1.0) -> Scan | None:
        """The next code, or None when none is complete within ``timeout_s``."""
        import serial

        if self._port is None:
            raise ScannerError(f"scanner {self.url} is not open")
        deadline = time.monotonic() + timeout_s
        while True:
            scan = self._take()
            if scan is not None:
                return scan
            if time.monotonic() >= deadline:
                return None
            try:
                data = self._port.read(max(1, self._port.in_waiting))
            except (serial.SerialException, OSError) as exc:
                self.close()
                raise ScannerError(f"scanner {self.url} went away: {exc}") from None
            self._buf += data
            if len(self._buf) > self.max_len and not any(b in self._buf for b in b"\r\n"):
                self._buf.clear()
                raise ScannerError(f"scanner {self.url}: more than {self.max_len} bytes without CR/LF; "
                                   "set the scanner's suffix to CR or LF")

    def _take(self) -> Scan | None:
        while True:
            ends = [i for i in (self._buf.find(b"\r"), self._buf.find(b"\n")) if i >= 0]
            if not ends:
                return None
            end = min(ends)
            raw = bytes(self._buf[:end])
            del self._buf[:end + 1]
            if not raw.strip():
                continue  # the LF of a CRLF, or an empty line
            try:
                text = raw.decode(self.encoding).strip()
            except UnicodeDecodeError:
                raise PayloadError(f"scanner {self.url} sent bytes that are not {self.encoding}: {raw[:40]!r}; "
                                   "check the scanner's baud rate and character set") from None
            return Scan(text, Symbology.UNKNOWN, f"serial:{self.url}", time.time())

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception:  # noqa: BLE001 - closing a port that is already gone
                pass
