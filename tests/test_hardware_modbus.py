"""Modbus RTU over real bytes: pymodbus' client (the station) and pymodbus' RTU server (the simulated PLC) on
a pty pair joined by the simulator's cable; raw frames written by hand for the malformed-frame cases."""

from __future__ import annotations

import json
import struct
import time

import pytest

from hardware.conveyor import ConveyorError
from hardware.modbus_conveyor import (
    CODE_WORDS,
    EVENT_RING,
    HoldingReg,
    InputReg,
    ModbusConveyor,
    ModbusRefused,
    RegisterMapError,
    decode_code,
    decode_event,
    encode_code,
    encode_event,
    new_events,
)
from hardware.modbus_sim import ModbusConveyorSimulator
from hardware.protocol import AckStatus, EStop, ItemAtGate, ItemEntered, ItemExited, Jam, SimFault
from hardware.serial_conveyor import DivertRefused, LinkState
from hardware.simulator import LineGeometry


def wait_for(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False


def events_of(conv, kind, timeout, n=1, seen=None):
    out = []
    end = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        try:
            ev = conv.events.get(timeout=0.05)
        except Exception:
            continue
        if seen is not None:
            seen.append(ev)
        if isinstance(ev, kind):
            out.append(ev)
    return out


# ----------------------------------------------------------------------------------------- pure codecs


@pytest.mark.parametrize("event", [ItemEntered(70_000, 123_456_789, 412, "RMA1;o=Ö-1;s=X;r=wrong_item"),
                                   ItemAtGate(5, 3, 2**32 - 1), ItemExited(6, 0, 17, True), EStop(True, 9),
                                   Jam(False, 10)])
def test_event_records_round_trip(event):
    header, code = encode_event(65_535, event)
    text = decode_code(header[8], code) if header[8] else ""
    assert decode_event(header, text) == event
    assert header[0] == 65_535


def test_long_code_is_cut_on_a_character_boundary_and_bad_records_are_named():
    n, words = encode_code("é" * 200)  # 400 bytes: more than the 240 a slot holds
    assert n == CODE_WORDS * 2 and decode_code(n, words) == "é" * 120
    with pytest.raises(RegisterMapError, match="unknown event type 0x7f"):
        decode_event([1, 0x7F, 0, 0, 0, 0, 0, 0, 0, 0])
    with pytest.raises(RegisterMapError, match="does not fit"):
        decode_code(10, [0x4142])


def test_event_numbers_wrap_without_zero_and_overruns_are_counted():
    assert new_events(0, 3) == ([1, 2, 3], 0)
    assert new_events(65_534, 2) == ([65_535, 1, 2], 0)
    numbers, lost = new_events(10, 10 + EVENT_RING + 5)
    assert lost == 5 and numbers[0] == 16 and len(numbers) == EVENT_RING


# ----------------------------------------------------------------------------------------- over a pty


@pytest.fixture()
def plc(tmp_path):
    codes = iter([f"RMA1;o=ORD-{i};s=SKU;r=wrong_item" for i in range(10_000)])
    sim = ModbusConveyorSimulator(tmp_path / "plc", lambda: next(codes), LineGeometry(), time_scale=8.0,
                                  watchdog_s=0.5, autostart=False).start()
    conv = ModbusConveyor(str(tmp_path / "plc"), poll_s=0.01).open()
    yield sim, conv
    conv.close()
    sim.close()


def test_items_are_diverted_by_sequence_number_over_modbus_rtu(plc):
    sim, conv = plc
    conv.start_belt()
    entered = events_of(conv, ItemEntered, 5, n=3)
    assert [e.item_seq for e in entered] == [1, 2, 3]
    assert entered[0].code == "RMA1;o=ORD-0;s=SKU;r=wrong_item"  # the tunnel scanner's text, from registers
    conv.divert(1, 3)
    conv.divert(3, 5)  # item 2 gets no divert: it goes on to the end lane (manual review)
    assert wait_for(lambda: len(sim.ledger) >= 3, 10)
    assert {o.seq: o.lane for o in sim.ledger[:3]} == {1: 3, 2: 0, 3: 5}
    with pytest.raises(DivertRefused) as info:
        conv.divert(1, 4)  # already gone
    assert info.value.status is AckStatus.TOO_LATE
    with pytest.raises(ConveyorError, match="lane 9"):
        conv.divert(4, 9)
    assert wait_for(lambda: conv.inputs.get("belt_moving") is True, 2)


def test_a_locked_out_lane_refuses_diverts_and_the_end_lane_cannot_be_locked(plc):
    sim, conv = plc
    conv.set_lane_enabled(2, False)
    conv.start_belt()
    first = events_of(conv, ItemEntered, 5)[0]
    with pytest.raises(DivertRefused) as info:
        conv.divert(first.item_seq, 2)
    assert info.value.status is AckStatus.REFUSED
    with pytest.raises(ModbusRefused, match="exception 03"):
        conv.set_lane_enabled(0, False)
    with pytest.raises(ModbusRefused, match="exception 03"):
        conv.set_speed(10)  # below the PLC's 50 mm/s
    conv.set_speed(600)
    assert wait_for(lambda: conv.last_heartbeat.speed_mm_s == 600, 2)


def test_estop_refuses_the_belt_until_reset_and_clears_armed_diverts(plc):
    sim, conv = plc
    conv.start_belt()
    first = events_of(conv, ItemEntered, 5)[0]
    conv.divert(first.item_seq, 6)
    conv.inject_fault(SimFault.ESTOP, 1000)  # over the wire: the SIM_FAULT holding registers
    assert events_of(conv, EStop, 2)[0].active
    assert conv.estop and wait_for(lambda: conv.inputs.get("estop") is True, 2)
    with pytest.raises(ModbusRefused, match="exception 04"):
        conv.start_belt()
    with pytest.raises(ModbusRefused, match="exception 04"):
        conv.reset()
    assert wait_for(lambda: not conv.estop, 5)
    conv.reset()
    conv.start_belt()
    assert wait_for(lambda: any(o.seq == first.item_seq for o in sim.ledger), 10)
    assert next(o for o in sim.ledger if o.seq == first.item_seq).lane == 0  # fail-safe end lane


def test_corrupted_and_dropped_answers_are_retried_and_no_event_is_lost_or_doubled(plc):
    sim, conv = plc
    conv.start_belt()
    sim.inject(SimFault.CORRUPT_BYTES, 1)  # an answer arrives with a flipped bit: its CRC fails
    sim.inject(SimFault.DROP_BYTES, 1)  # the next one arrives cut short: pymodbus' third try gets through
    entered = events_of(conv, ItemEntered, 8, n=2)
    assert sim._corrupt_frames == 0 and sim._drop_frames == 0  # the faults really went over the wire
    assert conv.stats.reconnects == 1 and conv.stats.failures == 0  # retried within the transaction
    sim.inject(SimFault.CORRUPT_BYTES, 3)
    sim.inject(SimFault.DROP_BYTES, 3)  # six bad answers in a row: more than the retries, the link drops
    entered += events_of(conv, ItemEntered, 8, n=3)
    assert wait_for(lambda: conv.stats.reconnects >= 2 and conv.alive(), 3) and conv.stats.failures >= 1
    assert [e.item_seq for e in entered] == [1, 2, 3, 4, 5]  # nothing lost, nothing doubled
    assert conv.stats.events_lost == 0 and conv.stats.bad_events == 0


def test_a_retried_divert_write_is_acted_on_once(plc):
    sim, conv = plc
    conv.start_belt()
    first = events_of(conv, ItemEntered, 5)[0]
    conv.divert(first.item_seq, 4)
    token = sim._divert_regs[3]
    # the same token again (as pymodbus resends when an answer was lost), now for another lane: ignored
    with conv._io:
        conv._call("resend", "write_registers", HoldingReg.DIVERT_SEQ_HI, [0, first.item_seq, 5, token])
        conv._call("resend", "write_registers", HoldingReg.DIVERT_SEQ_HI, [0, first.item_seq, 4, token])
    assert next(i for i in sim.on_belt if i.seq == first.item_seq).armed_lane == 4


def crc16_modbus(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu(body: bytes) -> bytes:
    return body + struct.pack("<H", crc16_modbus(body))


def read_answer(port, n, timeout=1.0):
    out = b""
    end = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        out += port.read(n - len(out))
    return out


def test_malformed_and_crc_broken_requests_get_no_answer_and_the_slave_recovers(tmp_path):
    import serial

    sim = ModbusConveyorSimulator(tmp_path / "plc", lambda: None, autostart=False).start()
    port = serial.serial_for_url(str(tmp_path / "plc"), baudrate=115200, timeout=0.05)
    try:
        good = rtu(bytes([1, 4]) + struct.pack(">HH", InputReg.EVENT_RING, 1))
        bad_crc = good[:-1] + bytes([good[-1] ^ 0xFF])
        port.write(bad_crc)
        assert read_answer(port, 7, 0.3) == b""  # a slave never answers a frame whose CRC fails
        port.write(rtu(bytes([9, 4, 0, 0, 0, 1])))  # another slave's request: silence on the bus
        assert read_answer(port, 7, 0.3) == b""
        port.write(good)
        answer = read_answer(port, 7)
        assert answer == rtu(bytes([1, 4, 2]) + struct.pack(">H", EVENT_RING))
        port.write(rtu(bytes([1, 3]) + struct.pack(">HH", 500, 1)))  # unmapped holding register
        assert read_answer(port, 5) == rtu(bytes([1, 0x83, 2]))  # exception 02, illegal address
        for glitch in (good[:5], b"\xff\x00\x13"):  # a frame cut short; line noise
            port.write(glitch)
            time.sleep(0.05)
            answers = []
            for _ in range(2):  # pymodbus' slave discards its buffer with the next frame: the master's retry
                port.write(good)  # (as pymodbus' client does, retries=2) is answered
                answers.append(read_answer(port, 7, 0.3))
            assert answers[-1] == rtu(bytes([1, 4, 2]) + struct.pack(">H", EVENT_RING))
    finally:
        port.close()
        sim.close()


def test_unplug_and_replug_reconnects_catches_up_events_and_the_watchdog_drops_in_flight_diverts(plc):
    sim, conv = plc
    seen: list = []
    conv.start_belt()
    first = events_of(conv, ItemEntered, 5, seen=seen)[0]
    conv.divert(first.item_seq, 6)  # the farthest gate: still on the belt when the cable goes
    sim.inject(SimFault.UNPLUG, 8000)  # 8 s belt = 1 s wall at 8x; the PLC's watchdog is 0.5 s
    assert wait_for(lambda: not conv.connected, 2)
    with pytest.raises(ConveyorError, match="link down"):
        conv.divert(first.item_seq + 1, 1)
    assert not conv.alive()
    assert wait_for(lambda: conv.connected, 5)  # reopened by path: the symlink now names a new pty
    assert wait_for(conv.alive, 3)
    # Caught-up reports are old news (those items may be past their gate and are refused); a new item that
    # arrives after the replug must be divertable. Trying in order keeps this independent of machine load.
    accepted = None
    for e in events_of(conv, ItemEntered, 5, n=2, seen=seen) + events_of(conv, ItemEntered, 10, n=6, seen=seen):
        try:
            if conv.divert(e.item_seq, 6).lane == 6:
                accepted = e
                break
        except ConveyorError:
            continue
    assert accepted is not None
    seqs = [e.item_seq for e in seen if isinstance(e, ItemEntered)]
    assert seqs == list(range(first.item_seq, first.item_seq + len(seqs)))  # caught up from the ring: no gap
    states = [e.up for e in seen if isinstance(e, LinkState)]
    assert states == [True, False, True] and conv.stats.reconnects == 2
    assert wait_for(lambda: any(o.seq == first.item_seq for o in sim.ledger), 10)
    assert next(o for o in sim.ledger if o.seq == first.item_seq).lane == 0  # the watchdog cleared its divert
    assert sim.counters["watchdog_trips"] >= 1


def test_missing_port_and_silent_slave_are_clear_errors(tmp_path):
    with pytest.raises(ConveyorError, match="does-not-exist"):
        ModbusConveyor("/dev/does-not-exist-ttyUSB9").open(wait_s=0.5)
    sim = ModbusConveyorSimulator(tmp_path / "plc", lambda: None, autostart=False, slave=1).start()
    try:
        with pytest.raises(ConveyorError, match=r"slave 7\).*does not answer"):
            ModbusConveyor(str(tmp_path / "plc"), slave=7, timeout_s=0.05, retries=0).open(wait_s=0.6)
    finally:
        sim.close()


# ----------------------------------------------------------------------------------------- config and CLI


def test_modbus_config_is_validated_and_builds_the_backend(tmp_path):
    from station.app import make_conveyor
    from station.config import ConfigError, ModbusConveyorConfig, load_config

    good = tmp_path / "good.toml"
    good.write_text('[conveyor]\ntype = "modbus"\nurl = "/dev/ttyUSB0"\nslave = 3\nbaudrate = 38400\n')
    cfg = load_config(good)
    assert isinstance(cfg.conveyor, ModbusConveyorConfig)
    conv = make_conveyor(cfg)  # nothing opened yet
    assert isinstance(conv, ModbusConveyor) and (conv.slave, conv.baudrate, conv.url) == (3, 38400, "/dev/ttyUSB0")
    bad = tmp_path / "bad.toml"
    bad.write_text('[conveyor]\ntype = "modbus"\nurl = "/dev/ttyUSB0"\nslave = 300\n')
    with pytest.raises(ConfigError, match="conveyor.slave"):
        load_config(bad)


def test_sim_conveyor_cli_speaks_modbus(tmp_path):
    from typer.testing import CliRunner

    from station.cli import app

    port = tmp_path / "plc"
    result = CliRunner().invoke(app, ["sim-conveyor", "--protocol", "modbus", "--port", str(port), "--items", "3", "--autostart",
                                      "--time-scale", "20"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["items"] == 3 and report["lanes"] == {"0": 3}  # nobody diverted: all at the end lane
    bad = CliRunner().invoke(app, ["sim-conveyor", "--protocol", "profibus", "--port", str(port)])
    assert bad.exit_code == 2 and "profibus" in bad.output
