"""Issue 22: a garbled answer (pymodbus "Cleanup recv buffer", then a short register block) killed the poll
thread with IndexError and the station hung. Now it is counted, logged, and the link is reopened."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

from hardware.modbus_conveyor import InputReg, ModbusConveyor
from hardware.serial_conveyor import LinkState


class _ShortAnswers:
    """A client whose status block comes back cut to 3 registers, as after a discarded partial frame, once
    ``garble`` is set (before, whole zero blocks: the test must see open() succeed before the fault)."""

    def __init__(self) -> None:
        import threading

        self.garble = threading.Event()
        self.garble.set()

    def read_input_registers(self, address, count, device_id):
        return SimpleNamespace(isError=lambda: False,
                               registers=[0] * (min(count, 3) if self.garble.is_set() else count))

    def read_discrete_inputs(self, address, count, device_id):
        return SimpleNamespace(isError=lambda: False, bits=[False] * count)

    def close(self):
        pass


def test_a_short_answer_is_logged_and_survived_and_the_link_is_reopened(caplog):
    conv = ModbusConveyor("/nonexistent/plc", poll_s=0.01, reconnect_s=0.01)
    client = conv._client = _ShortAnswers()
    client.garble.clear()
    conv._connected.set()
    conv._connect = lambda: False  # the port is gone for the rest of the test: keep retrying, never die
    caplog.set_level(logging.WARNING, "hardware.modbus_conveyor")
    conv.open(wait_s=0)  # connected already: starts the poll thread
    client.garble.set()
    try:
        deadline = time.monotonic() + 15  # generous: a loaded CI machine schedules the poll thread late
        while conv.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not conv.connected  # the run sees the link down instead of a silent hang
        assert conv._thread.is_alive()  # and the poll thread is still there to reconnect
        assert conv.stats.bad_events >= 1
        assert "bad answer from the PLC (IndexError" in caplog.text
        events = []
        while not conv.events.empty():
            events.append(conv.events.get())
        assert any(isinstance(e, LinkState) and not e.up for e in events)
    finally:
        conv.close()
    assert InputReg.STATUS_END > 3


def test_a_code_length_over_240_is_a_bad_record_not_a_dead_thread():
    from hardware.modbus_conveyor import MsgType

    conv = ModbusConveyor("/nonexistent/plc")

    class _Client(_ShortAnswers):
        def read_input_registers(self, address, count, device_id):
            return SimpleNamespace(isError=lambda: False, registers=[0x4142] * count)

    conv._client = _Client()
    header = [7, int(MsgType.ITEM_ENTERED), 0, 0, 0, 0, 0, 0, 241, 0]  # code_len 241 > 240 bytes
    conv._deliver(7, header, 64)  # RegisterMapError inside: counted and skipped
    assert conv.stats.bad_events == 1 and conv._last_event == 7 and conv.events.empty()


def test_a_jump_in_item_seq_is_counted_without_building_the_list():
    from station.conveyor_mode import ConveyorMode
    from hardware.protocol import ItemEntered

    station = SimpleNamespace(config=SimpleNamespace(lanes={}, lane_for=lambda d: 0))
    mode = ConveyorMode(station, conveyor=None, identify=lambda code: None)
    logged = []
    mode.log_event = lambda kind, **data: logged.append((kind, data))
    mode._entered(ItemEntered(1, 0, 500))
    t0 = time.monotonic()
    mode._entered(ItemEntered(2**32 - 16, 10, 500))
    assert time.monotonic() - t0 < 1.0
    assert mode.stats.missed_triggers == 2**32 - 18
    kind, data = logged[-1]
    assert kind == "missed_trigger" and data["count"] == 2**32 - 18 and data["items"] == list(range(2, 52))
