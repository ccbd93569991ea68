"""A bench scale speaking MT-SICS (Mettler Toledo Standard Interface Command Set, levels 0 and 1) over a port
opened by URL, as the conveyor is: ``/dev/ttyUSB0``, a pty path, ``loop://``, ``socket://host:port``.

The codec is pure functions (``encode_command``, ``parse_reply``, ``LineDecoder``), apart from the transport;
:class:`MtSicsScale` is the client: one command at a time, each answered by one line, every wait bounded.

On the wire (ASCII, every line ends CR LF)::

    S            -> S S     100.00 g      stable weight (the scale waits for stability itself)
                 -> S I                   not executable: busy, or no stability within the scale's own timeout
                 -> S +  /  S -           overload / underload
    SI           -> S S ... / S D ...     the weight now, stable or dynamic
    Z            -> Z A  (Z I, Z +, Z -)  zero
    T            -> T S     12.30 g       tare with the stable weight (T I, T +, T -)
    TA           -> TA A    12.30 g       the tare weight held
    TAC          -> TAC A                 clear the tare
    @            -> I4 A "0123456789"     reset; answers the serial number
    I4           -> I4 A "0123456789"     serial number
    any          -> ES / ET / EL          syntax error / transmission error / logical error

Weights are converted to grams; a reply in a unit without a fixed factor to grams is refused.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Callable

from hardware.serial_link import LinkError, SerialTransport, Transport

log = logging.getLogger(__name__)

CRLF = b"\r\n"
MAX_LINE = 128  # MT-SICS lines are short; anything longer is noise on the wire, not a reply
# Units a weight reply may carry, in grams (lb and oz are the avoirdupois definitions).
GRAMS_PER_UNIT = {"g": 1.0, "kg": 1000.0, "mg": 0.001, "ct": 0.2, "lb": 453.59237, "oz": 28.349523125}


class ScaleProtocolError(ValueError):
    """A line that is not an MT-SICS reply; the message says what is wrong with it."""


class ReplyStatus(StrEnum):
    STABLE = "S"  # a stable weight (S S, T S)
    DYNAMIC = "D"  # a weight taken while the load still moves (S D, SI only)
    ACK = "A"  # command carried out (Z A, TAC A, I4 A)
    NOT_EXECUTABLE = "I"  # busy, or no stability within the scale's own timeout
    OVERLOAD = "+"
    UNDERLOAD = "-"
    SYNTAX_ERROR = "ES"  # the scale did not recognise the command
    TRANSMISSION_ERROR = "ET"  # the command arrived garbled (parity, framing)
    LOGICAL_ERROR = "EL"  # the command cannot be carried out now


_ERRORS = {ReplyStatus.SYNTAX_ERROR, ReplyStatus.TRANSMISSION_ERROR, ReplyStatus.LOGICAL_ERROR}


@dataclass(frozen=True, slots=True)
class ScaleReply:
    """One reply line. ``command`` is the identifier the reply starts with ("S", "Z", "T", "TA", "I4"; empty for
    the general errors ES/ET/EL, which do not say which command they answer)."""

    command: str
    status: ReplyStatus
    grams: float | None = None
    unit: str | None = None
    text: str = ""  # the quoted text of an I4 A reply (the serial number)

    @property
    def is_error(self) -> bool:
        return self.status in _ERRORS


def encode_command(command: str, *params: str) -> bytes:
    """``command`` (upper-case letters and digits, or "@") and its parameters, space separated, CR LF closed."""
    if not command or not (command == "@" or (command.isascii() and command.isalnum() and command.upper() == command)):
        raise ScaleProtocolError(f"not an MT-SICS command name: {command!r}")
    text = " ".join((command, *params))
    if any(ord(c) < 32 or ord(c) > 126 for c in text):
        raise ScaleProtocolError(f"command {text!r} has characters outside printable ASCII")
    return text.encode("ascii") + CRLF


def parse_weight(value: str, unit: str) -> float:
    """Grams from an MT-SICS weight field and its unit."""
    try:
        number = float(value)
    except ValueError:
        raise ScaleProtocolError(f"weight {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ScaleProtocolError(f"weight {value!r} is not finite")
    factor = GRAMS_PER_UNIT.get(unit)
    if factor is None:
        raise ScaleProtocolError(f"weight unit {unit!r} has no fixed factor to grams: set the scale to g or kg")
    return number * factor


def parse_reply(line: bytes) -> ScaleReply:
    """One line (CR LF stripped or not) -> ScaleReply; ScaleProtocolError for anything else."""
    if len(line) > MAX_LINE:
        raise ScaleProtocolError(f"line of {len(line)} bytes is longer than any MT-SICS reply")
    try:
        text = line.decode("ascii").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ScaleProtocolError("line is not ASCII") from None
    parts = text.split()
    if not parts:
        raise ScaleProtocolError("empty line")
    if len(parts) == 1 and parts[0] in ("ES", "ET", "EL"):
        return ScaleReply("", ReplyStatus(parts[0]))
    if len(parts) < 2:
        raise ScaleProtocolError(f"reply {text!r} has no status")
    command, status = parts[0], parts[1]
    if not (command.isalnum() and command.isascii()):
        raise ScaleProtocolError(f"reply {text!r} does not start with a command identifier")
    if status in ("I", "+", "-") and len(parts) == 2:
        return ScaleReply(command, ReplyStatus(status))
    if status in ("S", "D"):
        if len(parts) != 4:
            raise ScaleProtocolError(f"weight reply {text!r} is not '<id> {status} <value> <unit>'")
        return ScaleReply(command, ReplyStatus(status), parse_weight(parts[2], parts[3]), parts[3])
    if status == "A":
        rest = text.split(None, 2)[2] if len(parts) > 2 else ""
        if rest.startswith('"'):
            if len(rest) < 2 or not rest.endswith('"'):
                raise ScaleProtocolError(f"reply {text!r} has an unterminated quoted text")
            return ScaleReply(command, ReplyStatus.ACK, text=rest[1:-1])
        if len(parts) == 4:  # TA A <value> <unit>
            return ScaleReply(command, ReplyStatus.ACK, parse_weight(parts[2], parts[3]), parts[3])
        if len(parts) == 2:
            return ScaleReply(command, ReplyStatus.ACK)
        raise ScaleProtocolError(f"acknowledgement {text!r} has unexpected fields")
    raise ScaleProtocolError(f"reply {text!r} has an unknown status {status!r}")


def format_weight_reply(command: str, status: ReplyStatus, grams: float, unit: str = "g", decimals: int = 2) -> bytes:
    """A weight reply as a balance sends it: the value right-aligned in ten characters."""
    value = grams / GRAMS_PER_UNIT[unit]
    return f"{command} {status.value} {value:>10.{decimals}f} {unit}".encode("ascii") + CRLF


class LineDecoder:
    """Bytes in any chunking -> complete lines (without CR LF). A line without CR LF longer than MAX_LINE is
    dropped whole (counted in ``overlong``), so noise never grows the buffer. Never raises."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False
        self.overlong = 0

    def reset(self) -> None:
        self._buf.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes]:
        lines = []
        for byte in data:
            if byte == 0x0A:  # LF ends a line; a CR before it is stripped
                if not self._discarding:
                    line = bytes(self._buf).rstrip(b"\r")
                    if line:
                        lines.append(line)
                self._buf.clear()
                self._discarding = False
                continue
            if self._discarding:
                continue
            self._buf.append(byte)
            if len(self._buf) > MAX_LINE:
                self._buf.clear()
                self._discarding = True
                self.overlong += 1
        return lines


# ------------------------------------------------------------------------------------------ client


class ScaleState(StrEnum):
    """What one weighing came to. Only STABLE gives a weight; every other state leaves the item ungraded on
    weight (the decision goes on without it)."""

    STABLE = "stable"
    ABSENT = "absent"  # the port cannot be opened, or the scale does not answer
    UNSTABLE = "unstable"  # no stable weight within the station's timeout
    OVERLOAD = "overload"
    UNDERLOAD = "underload"
    EMPTY = "empty"  # below the minimum load: nothing on the pan
    FAULT = "fault"  # the scale answers, but with errors or lines that are not MT-SICS


class ScaleError(RuntimeError):
    """A scale command failed; ``state`` says how (absent, unstable, overload, ...)."""

    def __init__(self, state: ScaleState, message: str) -> None:
        super().__init__(message)
        self.state = state


@dataclass(frozen=True, slots=True)
class WeightMeasurement:
    """One weighing of an item: the state, the stable net weight in grams when there is one, and a sentence
    for the record and the inspector."""

    state: ScaleState
    grams: float | None
    detail: str
    elapsed_ms: float = 0.0

    @property
    def available(self) -> bool:
        return self.state is ScaleState.STABLE and self.grams is not None

    def to_json(self) -> dict:
        return {"state": "measured" if self.available else "unavailable", "scale_state": self.state.value,
                "grams": None if self.grams is None else round(self.grams, 3), "detail": self.detail,
                "elapsed_ms": round(self.elapsed_ms, 1)}


class ScalePort(SerialTransport):
    """The conveyor's pyserial transport at MT-SICS defaults (9600 8N1), whose reads wait as long as the
    command allows (the scale answers once, within its command timeout)."""

    def __init__(self, url: str, baudrate: int = 9600) -> None:
        super().__init__(url, baudrate, device="scale")
        self._timeout = 0.02

    def open(self) -> None:
        super().open()
        self._timeout = 0.02  # what SerialTransport.open sets on the port

    def read(self, max_bytes: int, timeout: float) -> bytes:
        import serial

        port = self._port
        if port is None:
            raise LinkError(f"scale port {self.url} is closed")
        try:
            if timeout != self._timeout:  # 0 drains what is waiting without blocking
                port.timeout = self._timeout = timeout
            return port.read(max(1, min(max_bytes, port.in_waiting)))
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            raise LinkError(f"scale port {self.url} went away: {exc}") from None


class MtSicsScale:
    """The station's side of an MT-SICS scale. Nothing is opened before the first command; a port that went
    away is reopened on the next one, so a scale plugged in later just starts answering.

    ``measure()`` never raises and never waits longer than ``stable_timeout_s`` plus one command timeout: an
    inspection goes on without a weight rather than wait for a scale."""

    def __init__(self, url: str, baudrate: int = 9600, command_timeout_s: float = 0.5,
                 stable_timeout_s: float = 1.5, min_load_g: float = 2.0,
                 transport_factory: Callable[[], Transport] | None = None, retry_interval_s: float = 0.05) -> None:
        self.url = url
        self.command_timeout_s = command_timeout_s
        self.stable_timeout_s = stable_timeout_s
        self.min_load_g = min_load_g
        self.retry_interval_s = retry_interval_s
        self._factory = transport_factory or (lambda: ScalePort(url, baudrate))
        self._transport: Transport | None = None
        self._decoder = LineDecoder()
        self._lock = threading.Lock()
        self.serial_number: str | None = None
        self.last_error = ""
        self.garbled_lines = 0
        self.last_measurement: WeightMeasurement | None = None  # what the status bar shows

    # ------------------------------------------------------------------------------------ transport

    @property
    def connected(self) -> bool:
        return self._transport is not None

    def _ensure_open(self) -> Transport:
        if self._transport is None:
            t = self._factory()
            try:
                t.open()
            except LinkError as exc:
                self.last_error = str(exc)
                raise ScaleError(ScaleState.ABSENT, f"{exc}: check the cable and scale.url") from None
            self._transport = t
            self._decoder.reset()
        return self._transport

    def _drop(self, why: str) -> None:
        t, self._transport = self._transport, None
        self.last_error = why
        if t is not None:
            t.close()

    def close(self) -> None:
        with self._lock:
            self._drop("closed")

    def request(self, command: str, *params: str, timeout_s: float | None = None) -> ScaleReply:
        """Send one command and return its reply (or a general error ES/ET/EL); ScaleError ABSENT when the port
        cannot be opened or nothing answers in time, FAULT when only garbage comes back."""
        data = encode_command(command, *params)
        timeout = self.command_timeout_s if timeout_s is None else timeout_s
        with self._lock:
            t = self._ensure_open()
            try:
                stale = t.read(4096, 0)  # a late reply to an earlier, timed-out command is not this one's
                while stale:
                    stale = t.read(4096, 0)
                self._decoder.reset()
                t.write(data)
                deadline = time.monotonic() + timeout
                garbled = 0
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    for line in self._decoder.feed(t.read(256, min(left, 0.05))):
                        try:
                            reply = parse_reply(line)
                        except ScaleProtocolError as exc:
                            garbled += 1
                            self.garbled_lines += 1
                            log.debug("scale %s: %s", self.url, exc)
                            continue
                        if reply.is_error or _answers(command, reply):
                            return reply
            except LinkError as exc:
                self._drop(str(exc))
                raise ScaleError(ScaleState.ABSENT, f"{exc}: check the cable and scale.url") from None
        if garbled:
            self.last_error = f"{garbled} unreadable line(s) from the scale on {self.url}"
            raise ScaleError(ScaleState.FAULT, f"the scale on {self.url} answered {command} with lines that are "
                                               f"not MT-SICS: check the baud rate and that it is set to MT-SICS")
        self.last_error = f"no answer to {command} within {timeout:g} s"
        raise ScaleError(ScaleState.ABSENT, f"no answer from the scale on {self.url} within {timeout:g} s: check "
                                            f"that it is on, its interface is set to MT-SICS, and the baud rate")

    # ------------------------------------------------------------------------------------ commands

    def read_stable(self, timeout_s: float | None = None) -> float:
        """The stable net weight in grams. ``S I`` (not yet stable, busy) is asked again until ``timeout_s``."""
        timeout = self.stable_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        last = "no reply"
        while True:
            left = deadline - time.monotonic()
            # the scale may hold its reply until stable: give it the whole remaining time, at least one timeout
            reply = self.request("S", timeout_s=max(self.command_timeout_s, left))
            if reply.status is ReplyStatus.STABLE and reply.grams is not None:
                return reply.grams
            if reply.status is ReplyStatus.OVERLOAD:
                raise ScaleError(ScaleState.OVERLOAD, "the scale is overloaded: the item is heavier than its range")
            if reply.status is ReplyStatus.UNDERLOAD:
                raise ScaleError(ScaleState.UNDERLOAD, "the scale reads below zero: clear the pan and zero it")
            if reply.status is ReplyStatus.SYNTAX_ERROR:
                raise ScaleError(ScaleState.FAULT, "the scale does not know the S command: is it set to MT-SICS?")
            last = {ReplyStatus.NOT_EXECUTABLE: "busy or not stable", ReplyStatus.TRANSMISSION_ERROR:
                    "transmission error", ReplyStatus.LOGICAL_ERROR: "logical error"}.get(reply.status, reply.status.value)
            if time.monotonic() + self.retry_interval_s >= deadline:
                raise ScaleError(ScaleState.UNSTABLE, f"no stable weight within {timeout:g} s ({last}): the load "
                                                      f"kept moving, or the bench vibrates")
            time.sleep(self.retry_interval_s)

    def read_immediate(self) -> ScaleReply:
        """The weight now (``SI``), stable or dynamic."""
        reply = self.request("SI")
        if reply.status in (ReplyStatus.STABLE, ReplyStatus.DYNAMIC):
            return reply
        raise _command_error("SI", reply)

    def tare(self, timeout_s: float | None = None) -> float:
        """Tare with the stable weight on the pan (an empty box, a tray); returns the tare weight in grams."""
        reply = self._until_done("T", timeout_s)
        if reply.status is ReplyStatus.STABLE and reply.grams is not None:
            return reply.grams
        raise _command_error("T", reply)

    def clear_tare(self) -> None:
        reply = self.request("TAC")
        if reply.status is not ReplyStatus.ACK:
            raise _command_error("TAC", reply)

    def tare_weight(self) -> float:
        reply = self.request("TA")
        if reply.status is ReplyStatus.ACK and reply.grams is not None:
            return reply.grams
        raise _command_error("TA", reply)

    def zero(self, timeout_s: float | None = None) -> None:
        """Set the empty pan to zero (needs a stable pan)."""
        reply = self._until_done("Z", timeout_s)
        if reply.status is not ReplyStatus.ACK:
            raise _command_error("Z", reply)

    def reset(self) -> str:
        """``@``: the scale as after switching on (tare cleared, no zeroing); returns its serial number."""
        reply = self.request("@")
        if reply.status is not ReplyStatus.ACK:
            raise _command_error("@", reply)
        self.serial_number = reply.text
        return reply.text

    def identify(self) -> str:
        reply = self.request("I4")
        if reply.status is not ReplyStatus.ACK:
            raise _command_error("I4", reply)
        self.serial_number = reply.text
        return reply.text

    def _until_done(self, command: str, timeout_s: float | None) -> ScaleReply:
        deadline = time.monotonic() + (self.stable_timeout_s if timeout_s is None else timeout_s)
        while True:
            reply = self.request(command, timeout_s=max(self.command_timeout_s, deadline - time.monotonic()))
            if reply.status is not ReplyStatus.NOT_EXECUTABLE or time.monotonic() + self.retry_interval_s >= deadline:
                return reply
            time.sleep(self.retry_interval_s)

    # ------------------------------------------------------------------------------------ station

    def measure(self) -> WeightMeasurement:
        """One weighing for an inspection. Never raises: a scale that is absent, unstable, overloaded or
        answering nonsense gives a measurement without grams and a sentence saying why."""
        t0 = time.perf_counter()

        def done(state: ScaleState, grams: float | None, detail: str) -> WeightMeasurement:
            self.last_measurement = WeightMeasurement(state, grams, detail, (time.perf_counter() - t0) * 1000)
            return self.last_measurement

        try:
            grams = self.read_stable()
        except ScaleError as exc:
            self.last_error = str(exc)
            return done(exc.state, None, str(exc))
        except Exception as exc:  # noqa: BLE001 - a scale bug must never stop an inspection
            log.exception("scale %s: unexpected failure", self.url)
            return done(ScaleState.FAULT, None, f"scale failure: {exc}")
        if grams < self.min_load_g:
            return done(ScaleState.EMPTY, grams, f"{grams:.1f} g on the scale, below its minimum load of "
                                                 f"{self.min_load_g:g} g: the item is not on the pan")
        self.last_error = ""
        return done(ScaleState.STABLE, grams, f"stable {grams:.2f} g")


def _answers(command: str, reply: ScaleReply) -> bool:
    """Whether ``reply`` is the answer to ``command`` (S and SI replies start "S", @ answers as I4)."""
    expected = {"SI": "S", "@": "I4"}.get(command, command)
    return reply.command == expected


def _command_error(command: str, reply: ScaleReply) -> ScaleError:
    state = {ReplyStatus.OVERLOAD: ScaleState.OVERLOAD, ReplyStatus.UNDERLOAD: ScaleState.UNDERLOAD,
             ReplyStatus.NOT_EXECUTABLE: ScaleState.UNSTABLE}.get(reply.status, ScaleState.FAULT)
    what = {ReplyStatus.NOT_EXECUTABLE: "not executable now (busy, or the pan is not stable)",
            ReplyStatus.OVERLOAD: "refused: above the scale's range", ReplyStatus.UNDERLOAD: "refused: below range",
            ReplyStatus.SYNTAX_ERROR: "not known to this scale (ES)", ReplyStatus.TRANSMISSION_ERROR:
            "garbled on the wire (ET)", ReplyStatus.LOGICAL_ERROR: "cannot be carried out now (EL)"}.get(
        reply.status, f"answered {reply.status.value}")
    return ScaleError(state, f"scale command {command}: {what}")
