"""Link layer over real bytes: loop:// and pty pairs; the simulator and the serial conveyor, every fault."""

from __future__ import annotations

import time

import pytest

from hardware.conveyor import ConveyorError
from hardware.protocol import AckStatus, Divert, ItemEntered, ItemExited, SimFault, encode_frame
from hardware.serial_conveyor import DivertRefused, LinkState, SerialConveyor
from hardware.serial_link import LinkDown, SerialLink, SerialTransport
from hardware.simulator import ConveyorSimulator, LineGeometry


def wait_for(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_loop_url_delivers_ack_and_suppresses_duplicates():
    import serial

    got = []
    port = serial.serial_for_url("loop://", timeout=0.02)

    class Shared:  # loop:// echoes: one port is both ends, so one link ACKs its own frames
        name = "loop://"

        def open(self):
            pass

        def read(self, n, timeout):
            return port.read(max(1, min(n, port.in_waiting)))

        def write(self, data):
            port.write(data)

        def close(self):
            pass

    link = SerialLink(Shared, lambda m: (got.append(m), AckStatus.OK)[1], name="loop").start()
    try:
        assert link.wait_connected(2)
        assert link.send(Divert(1, 2)) is AckStatus.OK
        port.write(encode_frame(link._seq, Divert.TYPE, Divert(1, 2).payload()))  # a retransmission
        assert wait_for(lambda: link.stats.duplicates == 1)
        assert got == [Divert(1, 2)]
    finally:
        link.close()


def test_missing_port_is_a_clear_error():
    conv = SerialConveyor("/dev/does-not-exist-ttyUSB9")
    with pytest.raises(ConveyorError, match="does-not-exist"):
        conv.open(wait_s=0.5)


@pytest.fixture()
def line(tmp_path):
    codes = iter([f"item-{i}" for i in range(10_000)])
    sim = ConveyorSimulator(tmp_path / "conveyor", lambda: next(codes), LineGeometry(), time_scale=8.0,
                            watchdog_s=0.5, autostart=False).start()
    conv = SerialConveyor(str(tmp_path / "conveyor"), heartbeat_s=0.1).open()
    yield sim, conv
    conv.close()
    sim.close()


def events_of(conv, kind, timeout, n=1):
    out = []
    end = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        try:
            ev = conv.events.get(timeout=0.05)
        except Exception:
            continue
        if isinstance(ev, kind):
            out.append(ev)
    return out


def test_items_are_diverted_by_sequence_number_over_a_pty(line):
    sim, conv = line
    conv.start_belt()
    entered = events_of(conv, ItemEntered, 5, n=3)
    assert [e.item_seq for e in entered] == [1, 2, 3]
    conv.divert(1, 3)
    conv.divert(3, 5)  # item 2 gets no divert: it goes on to the end lane (manual review)
    assert wait_for(lambda: len(sim.ledger) >= 3, 10)
    lanes = {o.seq: o.lane for o in sim.ledger[:3]}
    assert lanes == {1: 3, 2: 0, 3: 5}
    with pytest.raises(DivertRefused) as info:
        conv.divert(1, 4)  # already gone
    assert info.value.status is AckStatus.TOO_LATE
    with pytest.raises(ConveyorError, match="lane 9"):
        conv.divert(4, 9)


def test_corrupted_and_dropped_bytes_are_recovered_by_retransmission(line):
    sim, conv = line
    before = conv.link.stats.retransmits
    sim.inject(SimFault.CORRUPT_BYTES, 3)
    sim.inject(SimFault.DROP_BYTES, 3)
    conv.start_belt()
    entered = events_of(conv, ItemEntered, 6, n=4)
    assert [e.item_seq for e in entered] == [1, 2, 3, 4]  # nothing lost, nothing duplicated
    assert conv.link.stats.decode_errors["bad_crc"] + conv.link.stats.decode_errors["garbage"] >= 1
    assert sim.link.stats.retransmits + conv.link.stats.retransmits > before


def test_estop_and_jam_stop_the_belt_and_clear_in_flight_diverts(line):
    sim, conv = line
    conv.start_belt()
    first = events_of(conv, ItemEntered, 5)[0]
    conv.divert(first.item_seq, 6)
    conv.inject_fault(SimFault.ESTOP, 1000)  # over the wire: a SIM_FAULT frame
    assert wait_for(lambda: conv.estop, 2)
    with pytest.raises(ConveyorError, match="refused"):
        conv.start_belt()
    assert wait_for(lambda: not conv.estop, 5)
    conv.reset()
    conv.start_belt()
    assert wait_for(lambda: any(o.seq == first.item_seq for o in sim.ledger), 10)
    assert next(o for o in sim.ledger if o.seq == first.item_seq).lane == 0  # fail-safe end lane
    conv.inject_fault(SimFault.JAM, 500)
    assert wait_for(lambda: conv.jammed, 2)
    assert any(o.by_hand for o in sim.ledger)


def test_unplug_and_replug_reconnects_on_the_same_path(line):
    sim, conv = line
    conv.start_belt()
    events_of(conv, ItemEntered, 5)
    sim.inject(SimFault.UNPLUG, 2000)  # 2 s belt = 0.25 s wall at 8x
    assert wait_for(lambda: not conv.link.connected, 2)
    with pytest.raises(ConveyorError, match="link down"):
        conv.divert(99, 1)
    assert wait_for(lambda: conv.link.connected, 5)
    assert wait_for(conv.alive, 3)
    ev = events_of(conv, ItemEntered, 5)
    assert ev and conv.divert(ev[0].item_seq, 2).lane == 2
    states = []
    while not conv.events.empty():
        e = conv.events.get()
        if isinstance(e, LinkState):
            states.append(e.up)
    assert conv.link.stats.reconnects >= 2


def test_late_item_and_items_too_close_are_reported(line):
    sim, conv = line
    conv.start_belt()
    first = events_of(conv, ItemEntered, 5, n=1)[0]
    sim.inject(SimFault.ITEMS_TOO_CLOSE)
    close = events_of(conv, ItemEntered, 5, n=1)[0]
    assert first.gap_mm >= 150 and close.gap_mm < 150
    sim.inject(SimFault.LATE_ITEM, 3000)
    lags = []
    for _ in range(4):
        ev = events_of(conv, ItemEntered, 5)[0]
        lags.append(conv.belt_clock_ms(8.0) - ev.t_ms)
    assert max(lags) > 2000 and min(lags) < 1000  # one report held back 3 s of belt time, the rest prompt


def test_gate_push_takes_an_item_that_is_too_close(line):
    sim, conv = line
    sim.inject(SimFault.ITEMS_TOO_CLOSE)
    conv.start_belt()
    events_of(conv, ItemEntered, 5, n=1)
    sim.inject(SimFault.ITEMS_TOO_CLOSE)
    pair = events_of(conv, ItemEntered, 5, n=1)[0]
    conv.divert(pair.item_seq - 1, 1)
    assert wait_for(lambda: len([o for o in sim.ledger if o.seq in (pair.item_seq - 1, pair.item_seq)]) == 2, 10)
    outs = {o.seq: o for o in sim.ledger}
    assert outs[pair.item_seq].lane == 1 and outs[pair.item_seq].collateral


def test_link_down_send_raises(tmp_path):
    link = SerialLink(lambda: SerialTransport(str(tmp_path / "nope")), lambda m: AckStatus.OK)
    with pytest.raises(LinkDown, match="not connected"):
        link.send(Divert(1, 1))
