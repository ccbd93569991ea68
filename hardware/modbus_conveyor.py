"""A PLC-driven conveyor over Modbus RTU (pymodbus): the register map (spec: docs/conveyor-modbus.md), pure
codecs for its event records, and the station side (``ModbusConveyor``, a Modbus master).

Same interface as hardware.conveyor (``divert``, ``close``) and, where it maps, the same behaviour and events
as hardware.serial_conveyor, so station/conveyor_mode.py drives either: the line's events (photo-eyes,
e-stop, jam, items leaving) arrive as the protocol's own dataclasses (ItemEntered, ItemAtGate, ItemExited,
EStop, Jam) and link changes as ``LinkState`` on ``events``. Modbus is master/slave, so the station polls: a
status block (belt clock, PLC heartbeat counter, flags, event counter) every ``poll_s``, then any new event
records from the PLC's event ring. A divert is one write of (item seq, lane, token) and one read of
(token echo, status): the token makes a retried write harmless (the PLC acts on a token once).

Nothing opens in the constructor: ``open()`` starts the poll thread, which (re)opens the port by URL
(``serial_for_url``: ``/dev/ttyUSB0``, a pty path, ``loop://``) after an unplug, every ``reconnect_s``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from enum import IntEnum

from hardware.conveyor import ConveyorError, DivertEvent
from hardware.protocol import AckStatus, EStop, Heartbeat, ItemAtGate, ItemEntered, ItemExited, Jam, MsgType, SimFault
from hardware.serial_conveyor import DivertRefused, LineEvent, LinkState

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------- register map
# Addresses are 0-based protocol addresses (PLC documentation often shows coil 0 as 00001, input register 0
# as 30001, holding register 0 as 40001).


class Coil(IntEnum):
    """Read/write bits (FC01 read, FC05/FC15 write)."""

    BELT_RUN = 0  # 1 start (refused during e-stop or jam: exception 04), 0 stop; reads the commanded state
    RESET = 1  # write 1 to acknowledge a cleared e-stop / jam (refused while still active); reads 0
    LANE_ENABLE_BASE = 16  # + lane: the lane's divert gate is in service (0: tote full / gate locked out)


class DiscreteInput(IntEnum):
    """Read-only bits (FC02)."""

    ESTOP = 0
    JAMMED = 1
    BELT_MOVING = 2
    WATCHDOG_TRIPPED = 3  # the station was silent too long: every armed divert was cleared
    INSPECTION_EYE = 4  # photo-eye at the camera blocked
    GATE_EYE_BASE = 16  # + lane: photo-eye at that lane's gate blocked (lane 0: end of belt)


class HoldingReg(IntEnum):
    """Read/write 16-bit registers (FC03 read, FC06/FC16 write)."""

    SPEED_MM_S = 0  # belt speed setpoint, 50..3000 (else exception 03)
    DIVERT_SEQ_HI = 1  # \
    DIVERT_SEQ_LO = 2  #  | written together with FC16 (4 registers); the PLC acts when TOKEN changes
    DIVERT_LANE = 3  #    |
    DIVERT_TOKEN = 4  # /  1..65535, a new one per divert
    DIVERT_RESULT_TOKEN = 5  # read-only: the token the PLC last acted on
    DIVERT_RESULT_STATUS = 6  # read-only: AckStatus code (0 ok, 1 too_late, 2 unknown_item, 3 bad_lane, 4 refused)
    SIM_FAULT_ARG_HI = 10  # simulator only (a PLC answers exception 02): arg u32, then the fault code
    SIM_FAULT_ARG_LO = 11
    SIM_FAULT_CODE = 12


class InputReg(IntEnum):
    """Read-only 16-bit registers (FC04). 0..15 is the status block the station reads every poll."""

    T_MS_HI = 0  # belt clock, ms, u32 (stops while the belt stands)
    T_MS_LO = 1
    HEARTBEAT = 2  # +1 every PLC scan tick (wraps): a stuck PLC is a dead link
    FLAGS = 3  # bit0 running, bit1 e-stop, bit2 jammed, bit3 watchdog tripped
    SPEED_MM_S = 4
    BOOT_ID = 5  # changes when the PLC restarts: event numbering starts again
    EVENT_COUNT = 6  # number of the newest event record (u16, wraps; 0 = none yet)
    EVENT_RING = 7  # slots in the event ring
    ENTERED_HI = 8
    ENTERED_LO = 9
    EXITED_HI = 10
    EXITED_LO = 11
    DIVERTED_HI = 12
    DIVERTED_LO = 13
    WATCHDOG_TRIPS = 14
    STATUS_END = 16
    EVENT_BASE = 100  # event headers: slot k at EVENT_BASE + EVENT_WORDS * k
    CODE_BASE = 1000  # event codes (what the tunnel scanner read): slot k at CODE_BASE + CODE_STRIDE * k


EVENT_WORDS = 10  # event_no, type, seq_hi, seq_lo, lane, t_hi, t_lo, arg, code_len, 0
EVENT_RING = 32
CODE_WORDS = 120  # 240 bytes of UTF-8 per code (longer codes are cut: the label then fails to parse)
CODE_STRIDE = 128
MAX_READ = 120  # registers per read request (the Modbus limit is 125)

FLAG_RUNNING, FLAG_ESTOP, FLAG_JAMMED, FLAG_WATCHDOG = 1, 2, 4, 8


class RegisterMapError(ValueError):
    """An event record that does not follow docs/conveyor-modbus.md; the message says what is wrong."""


# ----------------------------------------------------------------------------------------- pure codecs


def u32(hi: int, lo: int) -> int:
    return (hi & 0xFFFF) << 16 | (lo & 0xFFFF)


def split_u32(value: int) -> tuple[int, int]:
    value &= 0xFFFFFFFF
    return value >> 16, value & 0xFFFF


def encode_code(code: str) -> tuple[int, list[int]]:
    """(byte length, registers) for a code: UTF-8, two bytes a register, big-endian, cut at CODE_WORDS*2 bytes
    on a character boundary."""
    data = code.encode("utf-8")[: CODE_WORDS * 2]
    data = data.decode("utf-8", errors="ignore").encode("utf-8")
    padded = data + b"\0" * (len(data) % 2)
    return len(data), [padded[i] << 8 | padded[i + 1] for i in range(0, len(padded), 2)]


def decode_code(length: int, words: list[int]) -> str:
    if not 0 <= length <= CODE_WORDS * 2 or len(words) * 2 < length:
        raise RegisterMapError(f"code length {length} does not fit the {len(words)} registers read")
    data = b"".join(bytes((w >> 8 & 0xFF, w & 0xFF)) for w in words)[:length]
    return data.decode("utf-8", errors="replace")


def encode_event(event_no: int, event: LineEvent) -> tuple[list[int], list[int]]:
    """(header registers, code registers) of one event record."""
    code_len, code = 0, []
    if isinstance(event, ItemEntered):
        kind, seq, lane, t_ms, arg = MsgType.ITEM_ENTERED, event.item_seq, 0, event.t_ms, event.gap_mm
        code_len, code = encode_code(event.code)
    elif isinstance(event, ItemAtGate):
        kind, seq, lane, t_ms, arg = MsgType.ITEM_AT_GATE, event.item_seq, event.lane, event.t_ms, 0
    elif isinstance(event, ItemExited):
        kind, seq, lane, t_ms, arg = MsgType.ITEM_EXITED, event.item_seq, event.lane, event.t_ms, int(event.by_hand)
    elif isinstance(event, EStop):
        kind, seq, lane, t_ms, arg = MsgType.ESTOP, 0, 0, event.t_ms, int(event.active)
    elif isinstance(event, Jam):
        kind, seq, lane, t_ms, arg = MsgType.JAM, 0, 0, event.t_ms, int(event.active)
    else:
        raise RegisterMapError(f"{type(event).__name__} is not a line event")
    header = [event_no & 0xFFFF, int(kind), *split_u32(seq), lane & 0xFFFF, *split_u32(t_ms),
              min(arg, 0xFFFF), code_len, 0]
    return header, code


def decode_event(header: list[int], code: str = "") -> LineEvent:
    """The event of one header (``code`` only for ITEM_ENTERED); RegisterMapError on an unknown type."""
    if len(header) < EVENT_WORDS:
        raise RegisterMapError(f"event header has {len(header)} registers, expected {EVENT_WORDS}")
    _, kind, seq_hi, seq_lo, lane, t_hi, t_lo, arg = header[:8]
    seq, t_ms = u32(seq_hi, seq_lo), u32(t_hi, t_lo)
    if kind == MsgType.ITEM_ENTERED:
        return ItemEntered(seq, t_ms, arg, code)
    if kind == MsgType.ITEM_AT_GATE:
        return ItemAtGate(seq, lane, t_ms)
    if kind == MsgType.ITEM_EXITED:
        return ItemExited(seq, lane, t_ms, bool(arg))
    if kind == MsgType.ESTOP:
        return EStop(bool(arg), t_ms)
    if kind == MsgType.JAM:
        return Jam(bool(arg), t_ms)
    raise RegisterMapError(f"unknown event type {kind:#04x} in the PLC's event ring")


def new_events(last_no: int, count: int, ring: int = EVENT_RING) -> tuple[list[int], int]:
    """Event numbers to read after ``last_no`` up to ``count`` (u16 counters that wrap, 0 never used), and
    how many were overwritten in the ring before the station could read them."""
    pending = (count - last_no) & 0xFFFF
    if count < last_no:
        pending -= 1  # the counter skips 0 when it wraps
    lost = max(0, pending - ring)
    numbers = []
    n = last_no
    for _ in range(pending):
        n = n + 1 if n < 0xFFFF else 1
        numbers.append(n)
    return numbers[lost:], lost


# ----------------------------------------------------------------------------------------- station side


@dataclass(slots=True)
class ModbusStats:
    transactions: int = 0
    failures: int = 0  # requests with no valid answer after pymodbus' retries (timeouts, CRC errors)
    exceptions: int = 0  # Modbus exception responses (refusals)
    reconnects: int = 0
    events: int = 0
    events_lost: int = 0  # overwritten in the PLC's ring before they were read
    bad_events: int = 0


class ModbusLinkDown(ConveyorError):
    """No valid answer from the PLC (not connected, timeout, CRC errors on every retry)."""


class ModbusRefused(ConveyorError):
    """The PLC answered with a Modbus exception (e.g. 04: refused during an e-stop, 02: no such register)."""

    def __init__(self, what: str, code: int) -> None:
        self.code = code
        names = {1: "illegal function", 2: "illegal address (not supported by this PLC)", 3: "illegal value",
                 4: "refused (device failure)", 6: "busy"}
        super().__init__(f"the line refused to {what}: Modbus exception {code:02d} {names.get(code, '')}".rstrip())


class ModbusConveyor:
    def __init__(self, url: str, lanes: int = 8, baudrate: int = 115200, slave: int = 1, poll_s: float = 0.02,
                 timeout_s: float = 0.1, retries: int = 2, stale_s: float = 1.0, reconnect_s: float = 0.1) -> None:
        if not 1 <= slave <= 247:
            raise ValueError(f"Modbus slave id {slave} out of range 1..247")
        self.url = url
        self.lanes = lanes
        self.baudrate = baudrate
        self.slave = slave
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.retries = retries
        self.stale_s = stale_s
        self.reconnect_s = reconnect_s
        self.events: queue.Queue[LineEvent | LinkState] = queue.Queue()
        self.diverts: list[DivertEvent] = []
        self.stats = ModbusStats()
        self.last_heartbeat: Heartbeat | None = None
        self.last_heartbeat_at = 0.0
        self.last_error = ""
        self.inputs: dict[str, bool] = {}
        self.estop = False
        self.jammed = False
        self._client = None
        self._io = threading.RLock()
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_ok = 0.0
        self._plc_hb: int | None = None
        self._plc_hb_at = 0.0
        self._boot_id: int | None = None
        self._last_event = 0
        self._token = 0

    # ---------------------------------------------------------------------------------------- lifecycle

    def open(self, wait_s: float = 2.0) -> "ModbusConveyor":
        """Start polling; ConveyorError (with the port's own message) if the PLC does not answer in ``wait_s``."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"modbus {self.url}", daemon=True)
            self._thread.start()
        if not self._connected.wait(wait_s):
            reason = self.last_error or "no answer"
            self.close()
            raise ConveyorError(f"Modbus conveyor {self.url} (slave {self.slave}): {reason}")
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
            self._thread = None
        with self._io:
            self._drop("closed", notify=False)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def alive(self) -> bool:
        """Connected, answered within ``stale_s`` and the PLC's heartbeat counter moved within ``stale_s``."""
        now = time.monotonic()
        return self.connected and now - self._last_ok < self.stale_s and now - self._plc_hb_at < self.stale_s

    def belt_clock_ms(self, time_scale: float = 1.0) -> float | None:
        """The line's belt clock now, extrapolated from the last status poll; None before the first one."""
        hb = self.last_heartbeat
        if hb is None:
            return None
        return hb.belt_clock_after(time.monotonic() - self.last_heartbeat_at, time_scale)

    # ---------------------------------------------------------------------------------------- transport

    def _connect(self) -> bool:
        from pymodbus.client import ModbusSerialClient
        from pymodbus.framer import FramerType

        client = ModbusSerialClient(self.url, framer=FramerType.RTU, baudrate=self.baudrate, timeout=self.timeout_s,
                                    retries=self.retries)
        if not client.connect():
            self.last_error = f"cannot open conveyor port {self.url!r}"
            client.close()
            return False
        with self._io:
            self._client = client
            try:
                self._poll_status(catch_up=False)  # events after LinkState(True), in order
            except Exception as exc:  # noqa: BLE001 - a garbled first answer too: retry, never kill the thread
                self.last_error = f"port {self.url!r} opened but the PLC does not answer: {exc}"
                self._client = None
                client.close()
                return False
        self.stats.reconnects += 1
        self._connected.set()
        self.events.put(LinkState(True, time.monotonic()))
        log.info("modbus conveyor %s: link up", self.url)
        return True

    def _drop(self, why: str, notify: bool = True) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a port that is already gone
                pass
        if self._connected.is_set():
            self._connected.clear()
            self.last_error = why
            log.info("modbus conveyor %s: link down (%s)", self.url, why)
            if notify:
                self.events.put(LinkState(False, time.monotonic()))

    def _call(self, what: str, method: str, *args, **kwargs):
        """One Modbus transaction; ModbusLinkDown when there is no valid answer, ModbusRefused on an exception
        response. Drops the port on a dead link so the poll thread reopens it."""
        from pymodbus.exceptions import ModbusException

        with self._io:
            client = self._client
            if client is None:
                raise ModbusLinkDown(f"conveyor link down: {self.last_error or 'port not open'}")
            self.stats.transactions += 1
            try:
                rr = getattr(client, method)(*args, device_id=self.slave, **kwargs)
            except (ModbusException, OSError, ValueError, TypeError, AttributeError) as exc:
                # pyserial raises SerialException (an OSError) or worse from a port that went away
                self.stats.failures += 1
                self._drop(f"{what}: {exc}")
                raise ModbusLinkDown(f"conveyor link down: {what}: {exc}") from None
            if rr.isError():
                code = getattr(rr, "exception_code", None)
                if code:
                    self.stats.exceptions += 1
                    raise ModbusRefused(what, int(code))
                self.stats.failures += 1
                self._drop(f"{what}: {rr}")
                raise ModbusLinkDown(f"conveyor link down: {what}: {rr}")
            self._last_ok = time.monotonic()
            return rr

    # ---------------------------------------------------------------------------------------- polling

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.connected:
                if not self._connect():
                    self._stop.wait(self.reconnect_s)
                continue
            try:
                with self._io:
                    self._poll_status()
            except ConveyorError as exc:
                log.debug("modbus poll failed: %s", exc)
            except Exception as exc:  # noqa: BLE001 - the poll thread must never die: a dead one hung the station
                # A garbled answer (a short register block after pymodbus cleaned up a partial frame, a record
                # that does not decode): count and log it, then reopen the link so the run sees LinkState(False)
                # and the events are caught up from the PLC's ring after the reconnect.
                self.stats.bad_events += 1
                log.warning("modbus conveyor %s: bad answer from the PLC (%s: %s); reconnecting", self.url,
                            type(exc).__name__, exc)
                with self._io:
                    self._drop(f"bad answer from the PLC: {type(exc).__name__}: {exc}")
            self._stop.wait(self.poll_s)

    def _poll_status(self, catch_up: bool = True) -> None:
        regs = self._call("read the status block", "read_input_registers", 0, count=int(InputReg.STATUS_END)).registers
        now = time.monotonic()
        flags = regs[InputReg.FLAGS]
        self.last_heartbeat = Heartbeat(u32(regs[InputReg.T_MS_HI], regs[InputReg.T_MS_LO]), bool(flags & FLAG_RUNNING),
                                        bool(flags & FLAG_ESTOP), bool(flags & FLAG_JAMMED), regs[InputReg.SPEED_MM_S])
        self.last_heartbeat_at = now
        if regs[InputReg.HEARTBEAT] != self._plc_hb:
            self._plc_hb, self._plc_hb_at = regs[InputReg.HEARTBEAT], now
        self.estop, self.jammed = bool(flags & FLAG_ESTOP), bool(flags & FLAG_JAMMED)
        bits = self._call("read the discrete inputs", "read_discrete_inputs", 0,
                          count=DiscreteInput.GATE_EYE_BASE + self.lanes).bits
        self.inputs = {"estop": bits[DiscreteInput.ESTOP], "jammed": bits[DiscreteInput.JAMMED],
                       "belt_moving": bits[DiscreteInput.BELT_MOVING],
                       "watchdog_tripped": bits[DiscreteInput.WATCHDOG_TRIPPED],
                       "inspection_eye": bits[DiscreteInput.INSPECTION_EYE],
                       **{f"gate_eye_{lane}": bits[DiscreteInput.GATE_EYE_BASE + lane] for lane in range(self.lanes)}}
        count, boot = regs[InputReg.EVENT_COUNT], regs[InputReg.BOOT_ID]
        if self._boot_id is None or boot != self._boot_id:
            # first contact, or the PLC restarted: what is in its ring now is history, not news
            if self._boot_id is not None:
                log.warning("modbus conveyor %s: the PLC restarted (boot id %d -> %d)", self.url, self._boot_id, boot)
            self._boot_id, self._last_event = boot, count
            return
        if catch_up:
            self._read_events(count, regs[InputReg.EVENT_RING] or EVENT_RING)

    def _read_events(self, count: int, ring: int) -> None:
        numbers, lost = new_events(self._last_event, count, ring)
        if lost:
            self.stats.events_lost += lost
            log.warning("modbus conveyor %s: %d events overwritten before they were read", self.url, lost)
        i = 0
        while i < len(numbers):  # contiguous ring slots in one read
            first_slot = numbers[i] % ring
            n = 1
            while (i + n < len(numbers) and numbers[i + n] % ring == first_slot + n
                   and (n + 1) * EVENT_WORDS <= MAX_READ):
                n += 1
            regs = self._call("read event records", "read_input_registers", InputReg.EVENT_BASE + first_slot * EVENT_WORDS,
                              count=n * EVENT_WORDS).registers
            for k in range(n):
                header = regs[k * EVENT_WORDS:(k + 1) * EVENT_WORDS]
                self._deliver(numbers[i + k], header, ring)
            i += n

    def _deliver(self, number: int, header: list[int], ring: int) -> None:
        if header[0] != number:  # overwritten between the status read and this one
            self.stats.events_lost += 1
            self._last_event = number
            return
        code, code_regs = "", None
        if header[1] == MsgType.ITEM_ENTERED and header[8]:
            words = (header[8] + 1) // 2
            code_regs = self._call("read an item's code", "read_input_registers",
                                   InputReg.CODE_BASE + (number % ring) * CODE_STRIDE, count=min(words, CODE_WORDS)).registers
        try:
            # inside the try: a bad code length is a bad record (counted, skipped), not a dead poll thread
            if code_regs is not None:
                code = decode_code(header[8], code_regs)
            event = decode_event(header, code)
        except RegisterMapError as exc:
            self.stats.bad_events += 1
            log.warning("modbus conveyor %s: %s", self.url, exc)
            self._last_event = number
            return
        if isinstance(event, EStop):
            self.estop = event.active
        elif isinstance(event, Jam):
            self.jammed = event.active
        self._last_event = number
        self.stats.events += 1
        self.events.put(event)

    # ---------------------------------------------------------------------------------------- commands

    def divert(self, item_seq: int, lane: int) -> DivertEvent:
        if not 0 <= lane < self.lanes:
            raise ConveyorError(f"lane {lane} does not exist on this line (lanes 0..{self.lanes - 1})")
        if not 0 <= item_seq <= 0xFFFFFFFF:
            raise ConveyorError(f"item sequence {item_seq} does not fit the PLC's u32 register pair")
        with self._io:
            self._token = self._token % 0xFFFF + 1
            token = self._token
            self._call(f"divert item {item_seq} to lane {lane}", "write_registers", HoldingReg.DIVERT_SEQ_HI,
                       [*split_u32(item_seq), lane, token])
            echo, status = self._call("read the divert result", "read_holding_registers",
                                      HoldingReg.DIVERT_RESULT_TOKEN, count=2).registers
        if echo != token:
            raise ConveyorError(f"the PLC did not act on divert token {token} (it reports {echo}): check the "
                                "register map (docs/conveyor-modbus.md)")
        try:
            ack = AckStatus(status)
        except ValueError:
            raise ConveyorError(f"the PLC answered divert status {status}, not in the register map") from None
        if ack is not AckStatus.OK:
            raise DivertRefused(item_seq, lane, ack)
        event = DivertEvent(item_seq, lane, time.monotonic())
        self.diverts.append(event)
        return event

    def start_belt(self) -> None:
        self._call("start the belt (clear the e-stop or jam first)", "write_coil", Coil.BELT_RUN, True)

    def stop_belt(self) -> None:
        self._call("stop the belt", "write_coil", Coil.BELT_RUN, False)

    def set_speed(self, mm_s: int) -> None:
        if not 0 < mm_s <= 0xFFFF:
            raise ConveyorError(f"belt speed {mm_s} mm/s out of range")
        self._call(f"set the belt speed to {mm_s} mm/s", "write_register", HoldingReg.SPEED_MM_S, mm_s)

    def set_lane_enabled(self, lane: int, enabled: bool) -> None:
        if not 0 <= lane < self.lanes:
            raise ConveyorError(f"lane {lane} does not exist on this line (lanes 0..{self.lanes - 1})")
        self._call(f"{'enable' if enabled else 'disable'} lane {lane}", "write_coil", Coil.LANE_ENABLE_BASE + lane,
                   enabled)

    def reset(self) -> None:
        self._call("reset the line (clear the e-stop or jam first)", "write_coil", Coil.RESET, True)

    def inject_fault(self, fault: SimFault, arg: int = 0) -> None:
        """Simulator only: a real PLC answers exception 02 (no such register)."""
        self._call(f"inject {fault.name.lower()}", "write_registers", HoldingReg.SIM_FAULT_ARG_HI,
                   [*split_u32(arg), int(fault)])
