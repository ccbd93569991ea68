"""The conveyor simulator as a Modbus RTU slave (a PLC) on a pty: the belt model of hardware.simulator behind
the register map of hardware.modbus_conveyor (spec: docs/conveyor-modbus.md).

Wiring, all real bytes::

    station (Modbus master) -- pty A --[cable: faults]-- pty B -- pymodbus ModbusSerialServer (RTU slave)

The slave is pymodbus' own RTU server; its datastore is this belt model (reads see the live belt, writes
command it). The "cable" thread copies bytes between the two ptys and is where faults happen: dropped or
corrupted bytes on the way to the station (a response with a bad CRC), and unplug/replug (pty A goes away,
and comes back under the same ``port_path`` symlink). The PLC side keeps running while unplugged, as a real
PLC does: its watchdog clears every armed divert when the station stays silent, and its event ring keeps the
last ``EVENT_RING`` events for the station to catch up on after the replug.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import threading
import time
import tty
from collections import deque
from pathlib import Path
from typing import Callable

from pymodbus.constants import ExcCodes

from hardware.modbus_conveyor import (
    CODE_STRIDE,
    CODE_WORDS,
    EVENT_RING,
    EVENT_WORDS,
    FLAG_ESTOP,
    FLAG_JAMMED,
    FLAG_RUNNING,
    FLAG_WATCHDOG,
    Coil,
    DiscreteInput,
    HoldingReg,
    InputReg,
    encode_event,
    split_u32,
    u32,
)
from hardware.protocol import (
    AckStatus,
    Belt,
    BeltCommand,
    Divert,
    EStop,
    ItemAtGate,
    ItemEntered,
    ItemExited,
    Jam,
    Reset,
    SimFault,
    SimFaultCommand,
)
from hardware.serial_link import LinkError
from hardware.simulator import ConveyorSimulator, LineGeometry

log = logging.getLogger(__name__)

_COILS, _INPUTS, _HOLDING, _INPUT_REGS = (1, 5, 15), (2,), (3, 6, 16, 22, 23), (4,)
ILLEGAL_ADDRESS, ILLEGAL_VALUE, DEVICE_FAILURE = ExcCodes.ILLEGAL_ADDRESS, ExcCodes.ILLEGAL_VALUE, ExcCodes.DEVICE_FAILURE
IR_END = InputReg.CODE_BASE + CODE_STRIDE * EVENT_RING


class _StationSide:
    """The station's end of the cable as the belt model sees it: when it last spoke (for the watchdog)."""

    def __init__(self) -> None:
        self.last_rx = time.monotonic()
        self.connected = False
        self.requests = 0

    def disconnect(self, why: str) -> None:
        self.connected = False


def _context_class():
    from pymodbus.datastore import ModbusServerContext
    from pymodbus.exceptions import NoSuchIdException

    class PlcContext(ModbusServerContext):
        """pymodbus' server asks this for every read and write; the answers come from the belt model."""

        def __init__(self, sim: "ModbusConveyorSimulator", slave: int) -> None:  # noqa: D401 - no datastore
            # Not calling super().__init__: it builds the register blocks this class replaces with the model.
            self.sim, self.slave = sim, slave
            self.old_simulator = True
            self.simdevices = []
            self._devices = {slave: None}

        def device_ids(self) -> list[int]:
            return [self.slave]

        async def async_getValues(self, device_id: int, func_code: int, address: int, count: int = 1):
            if device_id != self.slave:
                raise NoSuchIdException(f"device_id {device_id}")  # another slave on the bus: stay silent
            return self.sim.read(func_code, address, count)

        async def async_setValues(self, device_id: int, func_code: int, address: int, values):
            if device_id != self.slave:
                raise NoSuchIdException(f"device_id {device_id}")
            return self.sim.write(func_code, address, list(values))

    return PlcContext


class ModbusConveyorSimulator(ConveyorSimulator):
    """``start()`` creates both ptys, starts pymodbus' RTU server, the cable and the belt; ``port_path`` is a
    stable symlink to the station's pty (like /dev/serial/by-id), kept across unplug/replug."""

    def __init__(self, port_path: Path, items: Callable[[], str | None], geometry: LineGeometry = LineGeometry(),
                 time_scale: float = 1.0, watchdog_s: float = 1.0, seed: int = 0, autostart: bool = True,
                 slave: int = 1, baudrate: int = 115200) -> None:
        super().__init__(port_path, items, geometry, time_scale, watchdog_s, seed, autostart)
        self.slave = slave
        self.baudrate = baudrate
        self.lane_enabled = {lane: True for lane in range(geometry.lanes())}
        self.counters = {"entered": 0, "exited": 0, "diverted": 0, "watchdog_trips": 0}
        self.boot_id = 0
        self._hb = 0
        self._event_no = 0
        self._headers = [[0] * EVENT_WORDS for _ in range(EVENT_RING)]
        self._codes = [[0] * CODE_WORDS for _ in range(EVENT_RING)]
        self._divert_regs = [0, 0, 0, 0]
        self._result = [0, 0]
        self._fault_regs = [0, 0, 0]
        self._coil_echo: list[bool] = []
        self._was_tripped = False
        self._close_station_pty = False
        self._plc_pty: tuple[int, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._server_error: BaseException | None = None
        self._server_ready = threading.Event()

    # ---------------------------------------------------------------------------------------- lifecycle

    def start(self) -> "ModbusConveyorSimulator":
        self.port_path.parent.mkdir(parents=True, exist_ok=True)
        self.boot_id = int.from_bytes(os.urandom(2), "big") or 1
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._plc_pty = (master, slave)
        self.link = _StationSide()
        self._new_station_pty()
        t = threading.Thread(target=self._serve, args=(os.ttyname(slave),), name="sim-modbus-server", daemon=True)
        t.start()
        self._threads.append(t)
        if not self._server_ready.wait(5) or self._server_error is not None:
            self.close()
            raise LinkError(f"the Modbus RTU slave did not start: {self._server_error or 'timeout'}")
        self.running = self.autostart
        for target, name in ((self._physics, "sim-physics"), (self._publisher, "sim-events"),
                             (self._cable, "sim-cable")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _serve(self, path: str) -> None:
        from pymodbus.framer import FramerType
        from pymodbus.server import ModbusSerialServer

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)

        async def main() -> None:
            self._server = ModbusSerialServer(_context_class()(self, self.slave), framer=FramerType.RTU, port=path,
                                              baudrate=self.baudrate, ignore_missing_devices=True)
            await self._server.serve_forever(background=True)
            self._server_ready.set()
            await self._server.serving

        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._server_error = exc
            self._server_ready.set()
        finally:
            loop.close()

    def close(self) -> None:
        self._stop.set()
        if self._loop is not None and self._server is not None and not self._loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(timeout=2)
            except Exception:  # noqa: BLE001 - the loop may already be gone
                pass
        for t in self._threads:
            t.join(timeout=2)
        self._threads.clear()
        super()._close_pty()
        for fd in self._plc_pty or ():
            try:
                os.close(fd)
            except OSError:
                pass
        self._plc_pty = None
        self.port_path.unlink(missing_ok=True)

    # ---------------------------------------------------------------------------------------- the cable

    def _new_station_pty(self) -> None:
        self._new_pty()  # raises LinkError while unplugged
        os.set_blocking(self._pty[0], False)
        self.link.connected = True

    def _close_pty(self) -> None:
        # Called by inject(UNPLUG) from any thread: the cable thread closes the fds it is selecting on.
        self._close_station_pty = True

    def _cable(self) -> None:
        plc = self._plc_pty[0]
        while not self._stop.is_set():
            if self._close_station_pty:
                self._close_station_pty = False
                super()._close_pty()
                self.link.connected = False
            if self._pty is None:
                try:
                    self._new_station_pty()
                except LinkError:
                    self._stop.wait(0.02)
                    continue
            station = self._pty[0]
            try:
                ready, _, _ = select.select([station, plc], [], [], 0.01)
            except (OSError, ValueError):
                continue
            if station in ready:
                data = self._read(station)
                if data:
                    self._send(plc, data)
            if plc in ready:
                data = self._read(plc)
                if data:
                    self._send(station, self._outgoing(data))  # drop / corrupt faults (hardware.simulator)

    @staticmethod
    def _read(fd: int) -> bytes:
        try:
            return os.read(fd, 4096)
        except (BlockingIOError, OSError):
            return b""

    @staticmethod
    def _send(fd: int, data: bytes) -> None:
        try:
            os.write(fd, data)
        except OSError:
            pass  # nobody draining the other end: the bytes are lost, as on a real wire

    # ---------------------------------------------------------------------------------------- events

    def _publisher(self) -> None:
        """PLC scan: the heartbeat counter, and due events into the ring (a late item's report is held back)."""
        while not self._stop.wait(0.003):
            with self._lock:
                self._hb = (self._hb + 1) & 0xFFFF
                if self._watchdog_tripped and not self._was_tripped:
                    self.counters["watchdog_trips"] += 1
                self._was_tripped = self._watchdog_tripped
                if not self._outbox:
                    continue
                keep: deque = deque()
                for due, msg in self._outbox:
                    if due <= self.t_ms:
                        self._publish(msg)
                    else:
                        keep.append((due, msg))
                self._outbox = keep

    def _publish(self, msg) -> None:
        if not isinstance(msg, (ItemEntered, ItemAtGate, ItemExited, EStop, Jam)):
            return
        self._event_no = self._event_no + 1 if self._event_no < 0xFFFF else 1
        slot = self._event_no % EVENT_RING
        header, code = encode_event(self._event_no, msg)
        self._headers[slot] = header
        self._codes[slot] = code + [0] * (CODE_WORDS - len(code))
        if isinstance(msg, ItemEntered):
            self.counters["entered"] += 1
        elif isinstance(msg, ItemExited):
            self.counters["exited"] += 1
            if msg.lane != self.geo.end_lane and not msg.by_hand:
                self.counters["diverted"] += 1

    # ---------------------------------------------------------------------------------------- registers

    def _spoke(self) -> None:
        self.link.last_rx = time.monotonic()
        self.link.requests += 1
        self._watchdog_tripped = False

    def _divert(self, item_seq: int, lane: int) -> AckStatus:
        if lane in self.lane_enabled and not self.lane_enabled[lane] and lane != self.geo.end_lane:
            return AckStatus.REFUSED
        return super()._divert(item_seq, lane)

    def read(self, fc: int, address: int, count: int) -> list[int] | list[bool] | ExcCodes:
        """Values for a read request (or the echo of a write), or a Modbus exception code."""
        with self._lock:
            self._spoke()
            if fc in (5, 15):
                return self._coil_echo[:count]
            if fc in _COILS:
                return [self._coil(a) for a in range(address, address + count)] if self._known_coils(address, count) \
                    else ILLEGAL_ADDRESS
            if fc in _INPUTS:
                if address + count > DiscreteInput.GATE_EYE_BASE + 64:
                    return ILLEGAL_ADDRESS
                return [self._input(a) for a in range(address, address + count)]
            if fc in _HOLDING:
                if address + count > HoldingReg.SIM_FAULT_CODE + 1:
                    return ILLEGAL_ADDRESS
                return [self._holding(a) for a in range(address, address + count)]
            if fc in _INPUT_REGS:
                if address + count > IR_END:
                    return ILLEGAL_ADDRESS
                return [self._input_reg(a) for a in range(address, address + count)]
        return ILLEGAL_ADDRESS

    def _known_coils(self, address: int, count: int) -> bool:
        return address + count <= Coil.LANE_ENABLE_BASE + 64

    def _coil(self, a: int) -> bool:
        if a == Coil.BELT_RUN:
            return self.running
        if a >= Coil.LANE_ENABLE_BASE:
            return self.lane_enabled.get(a - Coil.LANE_ENABLE_BASE, False)
        return False

    def _input(self, a: int) -> bool:
        if a == DiscreteInput.ESTOP:
            return self.estop
        if a == DiscreteInput.JAMMED:
            return self.jammed
        if a == DiscreteInput.BELT_MOVING:
            return self.running and not self.estop and not self.jammed
        if a == DiscreteInput.WATCHDOG_TRIPPED:
            return self._watchdog_tripped
        if a == DiscreteInput.INSPECTION_EYE:
            return self._blocked(self.geo.eye_mm)
        if a >= DiscreteInput.GATE_EYE_BASE:
            lane = a - DiscreteInput.GATE_EYE_BASE
            if lane == self.geo.end_lane:
                return self._blocked(self.geo.belt_length_mm - 1)
            return lane in self.geo.gates_mm and self._blocked(self.geo.gates_mm[lane])
        return False

    def _blocked(self, at_mm: float) -> bool:
        return any(i.pos_mm - i.length_mm <= at_mm <= i.pos_mm for i in self.on_belt)

    def _holding(self, a: int) -> int:
        if a == HoldingReg.SPEED_MM_S:
            return self.speed_mm_s
        if HoldingReg.DIVERT_SEQ_HI <= a <= HoldingReg.DIVERT_TOKEN:
            return self._divert_regs[a - HoldingReg.DIVERT_SEQ_HI]
        if a in (HoldingReg.DIVERT_RESULT_TOKEN, HoldingReg.DIVERT_RESULT_STATUS):
            return self._result[a - HoldingReg.DIVERT_RESULT_TOKEN]
        if HoldingReg.SIM_FAULT_ARG_HI <= a <= HoldingReg.SIM_FAULT_CODE:
            return self._fault_regs[a - HoldingReg.SIM_FAULT_ARG_HI]
        return 0

    def _input_reg(self, a: int) -> int:
        if a < InputReg.STATUS_END:
            flags = (FLAG_RUNNING * self.running | FLAG_ESTOP * self.estop | FLAG_JAMMED * self.jammed
                     | FLAG_WATCHDOG * self._watchdog_tripped)
            t_hi, t_lo = split_u32(int(self.t_ms))
            block = {InputReg.T_MS_HI: t_hi, InputReg.T_MS_LO: t_lo, InputReg.HEARTBEAT: self._hb,
                     InputReg.FLAGS: flags, InputReg.SPEED_MM_S: self.speed_mm_s, InputReg.BOOT_ID: self.boot_id,
                     InputReg.EVENT_COUNT: self._event_no, InputReg.EVENT_RING: EVENT_RING,
                     InputReg.WATCHDOG_TRIPS: self.counters["watchdog_trips"] & 0xFFFF}
            for name, hi in (("entered", InputReg.ENTERED_HI), ("exited", InputReg.EXITED_HI),
                             ("diverted", InputReg.DIVERTED_HI)):
                block[hi], block[hi + 1] = split_u32(self.counters[name])
            return block.get(a, 0)
        if InputReg.EVENT_BASE <= a < InputReg.EVENT_BASE + EVENT_WORDS * EVENT_RING:
            k, w = divmod(a - InputReg.EVENT_BASE, EVENT_WORDS)
            return self._headers[k][w]
        if InputReg.CODE_BASE <= a < IR_END:
            k, w = divmod(a - InputReg.CODE_BASE, CODE_STRIDE)
            return self._codes[k][w] if w < CODE_WORDS else 0
        return 0

    def write(self, fc: int, address: int, values: list) -> ExcCodes | None:
        """Carry out a write request; a Modbus exception code when refused, None when done."""
        with self._lock:
            self._spoke()
            if fc in _COILS:
                self._coil_echo = [bool(v) for v in values]
                for k, v in enumerate(values):
                    rc = self._write_coil(address + k, bool(v))
                    if rc:
                        return rc
                return None
            if fc in _HOLDING:
                return self._write_holding(address, [int(v) for v in values])
        return ILLEGAL_ADDRESS

    def _write_coil(self, a: int, v: bool) -> ExcCodes | None:
        if a == Coil.BELT_RUN:
            status = self._handle(Belt(BeltCommand.START if v else BeltCommand.STOP))
            return None if status is AckStatus.OK else DEVICE_FAILURE
        if a == Coil.RESET:
            if not v:
                return None
            return None if self._handle(Reset()) is AckStatus.OK else DEVICE_FAILURE
        if a >= Coil.LANE_ENABLE_BASE:
            lane = a - Coil.LANE_ENABLE_BASE
            if lane not in self.lane_enabled:
                return ILLEGAL_ADDRESS
            if lane == self.geo.end_lane and not v:
                return ILLEGAL_VALUE  # the end of the belt (manual review) can never be locked out
            self.lane_enabled[lane] = v
            return None
        return ILLEGAL_ADDRESS

    def _write_holding(self, address: int, values: list[int]) -> ExcCodes | None:
        end = address + len(values)
        if address == HoldingReg.SPEED_MM_S and end == 1:
            status = self._handle(Belt(BeltCommand.SET_SPEED, values[0]))
            return None if status is AckStatus.OK else ILLEGAL_VALUE
        if address == HoldingReg.DIVERT_SEQ_HI and end == HoldingReg.DIVERT_TOKEN + 1:
            seq_hi, seq_lo, lane, token = values
            if token == 0:
                return ILLEGAL_VALUE
            if self._divert_regs == values:
                return None  # the same token again: a retried write, already acted on
            self._divert_regs = values
            self._result = [token, int(self._handle(Divert(u32(seq_hi, seq_lo), lane)))]
            return None
        if address == HoldingReg.SIM_FAULT_ARG_HI and end == HoldingReg.SIM_FAULT_CODE + 1:
            try:
                fault = SimFault(values[2])
            except ValueError:
                return ILLEGAL_VALUE
            self._fault_regs = values
            self._handle(SimFaultCommand(fault, u32(values[0], values[1])))
            return None
        return ILLEGAL_ADDRESS  # partial writes of a register group, read-only registers, unmapped addresses
