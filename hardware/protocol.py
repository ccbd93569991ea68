"""The station's own conveyor protocol: framing and message codecs as pure functions (spec:
docs/conveyor-protocol.md).

Frame on the wire::

    STX(0x02) LEN ~LEN SEQ TYPE PAYLOAD[LEN] CRC16_HI CRC16_LO

``LEN`` is the payload length (0..MAX_PAYLOAD), ``~LEN`` its one's complement (a header check, so a
corrupted length is rejected at once instead of swallowing the next frames), ``CRC16`` is
CRC-16/CCITT-FALSE over ``LEN ~LEN SEQ TYPE PAYLOAD``. Nothing here does I/O; :class:`StreamDecoder` turns
any byte stream into frames and decode errors and never raises.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import ClassVar, Union

STX = 0x02
MAX_PAYLOAD = 240
HEADER_LEN = 5  # STX LEN ~LEN SEQ TYPE
FRAME_OVERHEAD = HEADER_LEN + 2


class ProtocolError(ValueError):
    """A frame or payload that does not follow docs/conveyor-protocol.md; the message says what is wrong."""


class MsgType(IntEnum):
    """Wire codes (one byte). Link-level frames first, then commands (station -> line), then events."""

    ACK = 0x06
    NAK = 0x15
    HEARTBEAT = 0x10
    BELT = 0x11
    DIVERT = 0x12
    RESET = 0x13
    ITEM_ENTERED = 0x20
    ITEM_AT_GATE = 0x21
    ITEM_EXITED = 0x22
    ESTOP = 0x23
    JAM = 0x24
    SIM_FAULT = 0x40


class AckStatus(IntEnum):
    """Second byte of an ACK: the frame arrived intact; did the receiver carry it out?"""

    OK = 0
    TOO_LATE = 1  # divert for an item already past its gate
    UNKNOWN_ITEM = 2
    BAD_LANE = 3
    REFUSED = 4  # e-stop active, belt jammed, or not allowed now
    UNSUPPORTED = 5


class NakReason(IntEnum):
    BAD_CRC = 1
    BAD_PAYLOAD = 2
    UNKNOWN_TYPE = 3


class DecodeErrorKind(StrEnum):
    GARBAGE = "garbage"  # bytes outside any frame, skipped while hunting for STX
    BAD_HEADER = "bad_header"  # LEN and ~LEN disagree, or LEN above MAX_PAYLOAD
    BAD_CRC = "bad_crc"


# ------------------------------------------------------------------------------------------- CRC


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_ccitt_false(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no xorout (check("123456789") = 0x29B1)."""
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


# ------------------------------------------------------------------------------------------- frames


@dataclass(frozen=True, slots=True)
class Frame:
    seq: int
    type: int  # a MsgType value, or an unknown code (the link layer NAKs those)
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class DecodeError:
    kind: DecodeErrorKind
    skipped: int  # bytes dropped from the stream


def encode_frame(seq: int, msg_type: int, payload: bytes = b"") -> bytes:
    if not 0 <= seq <= 255:
        raise ProtocolError(f"sequence number {seq} out of range 0..255")
    if not 0 <= int(msg_type) <= 255:
        raise ProtocolError(f"message type {msg_type} out of range 0..255")
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    n = len(payload)
    body = bytes((n, n ^ 0xFF, seq, int(msg_type))) + bytes(payload)
    return bytes((STX,)) + body + crc16_ccitt_false(body).to_bytes(2, "big")


def decode_frame(data: bytes) -> Frame:
    """Exactly one frame, nothing before or after it; raises ProtocolError with the reason otherwise."""
    frames, errors, rest = decode_stream(data)
    if errors:
        raise ProtocolError(f"not a valid frame: {errors[0].kind.value}")
    if rest or len(frames) != 1:
        raise ProtocolError("not exactly one complete frame")
    return frames[0]


def decode_stream(data: bytes) -> tuple[list[Frame], list[DecodeError], bytes]:
    """Pure: every complete frame and error in ``data``, plus the undecided tail (an incomplete frame)."""
    frames: list[Frame] = []
    errors: list[DecodeError] = []
    buf = bytes(data)
    i = 0
    n = len(buf)
    while i < n:
        if buf[i] != STX:
            j = buf.find(STX, i)
            j = n if j < 0 else j
            errors.append(DecodeError(DecodeErrorKind.GARBAGE, j - i))
            i = j
            continue
        if n - i < 3:
            break
        length, check = buf[i + 1], buf[i + 2]
        if length ^ check != 0xFF or length > MAX_PAYLOAD:
            errors.append(DecodeError(DecodeErrorKind.BAD_HEADER, 1))
            i += 1  # resynchronise on the next STX, which may sit inside this false start
            continue
        end = i + FRAME_OVERHEAD + length
        if end > n:
            break
        body = buf[i + 1:end - 2]
        if crc16_ccitt_false(body) != int.from_bytes(buf[end - 2:end], "big"):
            errors.append(DecodeError(DecodeErrorKind.BAD_CRC, 1))
            i += 1
            continue
        frames.append(Frame(body[2], body[3], bytes(body[4:])))
        i = end
    return frames, errors, buf[i:]


class StreamDecoder:
    """Incremental decoder: feed it whatever the port delivered; it never raises and never grows unbounded."""

    def __init__(self) -> None:
        self._tail = b""
        self.errors: dict[DecodeErrorKind, int] = {k: 0 for k in DecodeErrorKind}

    def feed(self, data: bytes) -> tuple[list[Frame], list[DecodeError]]:
        frames, errors, self._tail = decode_stream(self._tail + bytes(data))
        for e in errors:
            self.errors[e.kind] += 1
        return frames, errors

    def pending(self) -> int:
        return len(self._tail)

    def reset(self) -> None:
        self._tail = b""


# ------------------------------------------------------------------------------------------- messages


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(f"{what} is not UTF-8") from None


def _need(payload: bytes, size: int, what: str, exact: bool = True) -> None:
    if (len(payload) != size) if exact else (len(payload) < size):
        raise ProtocolError(f"{what} payload must be {'' if exact else 'at least '}{size} bytes, got {len(payload)}")


class BeltCommand(IntEnum):
    STOP = 0
    START = 1
    SET_SPEED = 2


class SimFault(IntEnum):
    """Faults the simulator injects on command (SIM_FAULT); a real line answers UNSUPPORTED."""

    DROP_BYTES = 1
    CORRUPT_BYTES = 2
    UNPLUG = 3
    JAM = 4
    ESTOP = 5
    LATE_ITEM = 6
    ITEMS_TOO_CLOSE = 7


@dataclass(frozen=True, slots=True)
class Ack:
    TYPE: ClassVar[MsgType] = MsgType.ACK
    acked_seq: int
    status: AckStatus = AckStatus.OK

    def payload(self) -> bytes:
        return bytes((self.acked_seq, int(self.status)))

    @classmethod
    def parse(cls, p: bytes) -> "Ack":
        _need(p, 2, "ACK")
        try:
            return cls(p[0], AckStatus(p[1]))
        except ValueError:
            raise ProtocolError(f"unknown ACK status {p[1]}") from None


@dataclass(frozen=True, slots=True)
class Nak:
    TYPE: ClassVar[MsgType] = MsgType.NAK
    nacked_seq: int
    reason: int

    def payload(self) -> bytes:
        return bytes((self.nacked_seq, int(self.reason)))

    @classmethod
    def parse(cls, p: bytes) -> "Nak":
        _need(p, 2, "NAK")
        return cls(p[0], p[1])


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Both directions. From the line it carries its clock and state; the station sends zeros."""

    TYPE: ClassVar[MsgType] = MsgType.HEARTBEAT
    t_ms: int = 0  # the line's belt clock
    running: bool = False
    estop: bool = False
    jammed: bool = False
    speed_mm_s: int = 0

    def belt_clock_after(self, elapsed_s: float, time_scale: float = 1.0) -> float:
        """The line's belt clock ``elapsed_s`` wall seconds after this heartbeat: it only runs while moving."""
        moving = self.running and not self.estop and not self.jammed
        return self.t_ms + (elapsed_s * 1000 * time_scale if moving else 0.0)

    def payload(self) -> bytes:
        flags = self.running | (self.estop << 1) | (self.jammed << 2)
        return struct.pack(">IBH", self.t_ms & 0xFFFFFFFF, flags, self.speed_mm_s)

    @classmethod
    def parse(cls, p: bytes) -> "Heartbeat":
        _need(p, 7, "HEARTBEAT")
        t, flags, speed = struct.unpack(">IBH", p)
        return cls(t, bool(flags & 1), bool(flags & 2), bool(flags & 4), speed)


@dataclass(frozen=True, slots=True)
class Belt:
    TYPE: ClassVar[MsgType] = MsgType.BELT
    command: BeltCommand
    speed_mm_s: int = 0

    def payload(self) -> bytes:
        return struct.pack(">BH", int(self.command), self.speed_mm_s)

    @classmethod
    def parse(cls, p: bytes) -> "Belt":
        _need(p, 3, "BELT")
        cmd, speed = struct.unpack(">BH", p)
        try:
            return cls(BeltCommand(cmd), speed)
        except ValueError:
            raise ProtocolError(f"unknown belt command {cmd}") from None


@dataclass(frozen=True, slots=True)
class Divert:
    TYPE: ClassVar[MsgType] = MsgType.DIVERT
    item_seq: int
    lane: int

    def payload(self) -> bytes:
        return struct.pack(">IB", self.item_seq, self.lane)

    @classmethod
    def parse(cls, p: bytes) -> "Divert":
        _need(p, 5, "DIVERT")
        return cls(*struct.unpack(">IB", p))


@dataclass(frozen=True, slots=True)
class Reset:
    """Clear e-stop / jam after the operator has made the line safe."""

    TYPE: ClassVar[MsgType] = MsgType.RESET

    def payload(self) -> bytes:
        return b""

    @classmethod
    def parse(cls, p: bytes) -> "Reset":
        _need(p, 0, "RESET")
        return cls()


@dataclass(frozen=True, slots=True)
class ItemEntered:
    """The inspection photo-eye saw an item: trigger the camera. ``code`` is what the tunnel scanner read."""

    TYPE: ClassVar[MsgType] = MsgType.ITEM_ENTERED
    item_seq: int
    t_ms: int
    gap_mm: int  # free belt between this item and the one before it
    code: str = ""

    def payload(self) -> bytes:
        return struct.pack(">IIH", self.item_seq, self.t_ms & 0xFFFFFFFF, min(self.gap_mm, 0xFFFF)) + self.code.encode()

    @classmethod
    def parse(cls, p: bytes) -> "ItemEntered":
        _need(p, 10, "ITEM_ENTERED", exact=False)
        seq, t, gap = struct.unpack(">IIH", p[:10])
        return cls(seq, t, gap, _text(p[10:], "item code"))


@dataclass(frozen=True, slots=True)
class ItemAtGate:
    TYPE: ClassVar[MsgType] = MsgType.ITEM_AT_GATE
    item_seq: int
    lane: int
    t_ms: int

    def payload(self) -> bytes:
        return struct.pack(">IBI", self.item_seq, self.lane, self.t_ms & 0xFFFFFFFF)

    @classmethod
    def parse(cls, p: bytes) -> "ItemAtGate":
        _need(p, 9, "ITEM_AT_GATE")
        return cls(*struct.unpack(">IBI", p))


@dataclass(frozen=True, slots=True)
class ItemExited:
    """Where the item physically left the line (the gate it was pushed through, or the end of the belt)."""

    TYPE: ClassVar[MsgType] = MsgType.ITEM_EXITED
    item_seq: int
    lane: int
    t_ms: int
    by_hand: bool = False  # taken off the belt by an operator (jam clearing)

    def payload(self) -> bytes:
        return struct.pack(">IBIB", self.item_seq, self.lane, self.t_ms & 0xFFFFFFFF, int(self.by_hand))

    @classmethod
    def parse(cls, p: bytes) -> "ItemExited":
        _need(p, 10, "ITEM_EXITED")
        seq, lane, t, hand = struct.unpack(">IBIB", p)
        return cls(seq, lane, t, bool(hand))


@dataclass(frozen=True, slots=True)
class EStop:
    TYPE: ClassVar[MsgType] = MsgType.ESTOP
    active: bool
    t_ms: int

    def payload(self) -> bytes:
        return struct.pack(">BI", int(self.active), self.t_ms & 0xFFFFFFFF)

    @classmethod
    def parse(cls, p: bytes) -> "EStop":
        _need(p, 5, "ESTOP")
        a, t = struct.unpack(">BI", p)
        return cls(bool(a), t)


@dataclass(frozen=True, slots=True)
class Jam:
    TYPE: ClassVar[MsgType] = MsgType.JAM
    active: bool
    t_ms: int

    def payload(self) -> bytes:
        return struct.pack(">BI", int(self.active), self.t_ms & 0xFFFFFFFF)

    @classmethod
    def parse(cls, p: bytes) -> "Jam":
        _need(p, 5, "JAM")
        a, t = struct.unpack(">BI", p)
        return cls(bool(a), t)


@dataclass(frozen=True, slots=True)
class SimFaultCommand:
    TYPE: ClassVar[MsgType] = MsgType.SIM_FAULT
    fault: SimFault
    arg: int = 0  # count of frames for byte faults, belt ms for durations

    def payload(self) -> bytes:
        return struct.pack(">BI", int(self.fault), self.arg)

    @classmethod
    def parse(cls, p: bytes) -> "SimFaultCommand":
        _need(p, 5, "SIM_FAULT")
        f, arg = struct.unpack(">BI", p)
        try:
            return cls(SimFault(f), arg)
        except ValueError:
            raise ProtocolError(f"unknown simulator fault {f}") from None


Message = Union[Ack, Nak, Heartbeat, Belt, Divert, Reset, ItemEntered, ItemAtGate, ItemExited, EStop, Jam,
                SimFaultCommand]
MESSAGE_TYPES: dict[int, type] = {cls.TYPE: cls for cls in (Ack, Nak, Heartbeat, Belt, Divert, Reset, ItemEntered,
                                                           ItemAtGate, ItemExited, EStop, Jam, SimFaultCommand)}


def encode_message(seq: int, msg: Message) -> bytes:
    return encode_frame(seq, msg.TYPE, msg.payload())


def parse_message(frame: Frame) -> Message:
    """The typed message in a frame; ProtocolError for an unknown type or a malformed payload."""
    cls = MESSAGE_TYPES.get(frame.type)
    if cls is None:
        raise ProtocolError(f"unknown message type 0x{frame.type:02x}")
    return cls.parse(frame.payload)
