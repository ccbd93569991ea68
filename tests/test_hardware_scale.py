"""The bench scale (issue 24): MT-SICS codec as pure functions, the client over real bytes (pty pairs with the
simulator, loop://), and `station sim-scale` / `station scale read` as processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.scale import (LineDecoder, MtSicsScale, ReplyStatus, ScaleError, ScaleProtocolError, ScaleState,
                            encode_command, format_weight_reply, parse_reply)
from hardware.scale_sim import ScaleSimulator

# ------------------------------------------------------------------------------------------ codec


def test_commands_end_in_crlf_and_bad_names_are_refused():
    assert encode_command("S") == b"S\r\n"
    assert encode_command("@") == b"@\r\n"
    assert encode_command("XW", "150.0") == b"XW 150.0\r\n"
    for bad in ("", "s", "S\r", "S I", "Ä"):
        with pytest.raises(ScaleProtocolError):
            encode_command(bad)
    with pytest.raises(ScaleProtocolError):
        encode_command("D", "text\r\nS")  # a parameter may not smuggle a second command


@pytest.mark.parametrize("line, command, status, grams", [
    (b"S S     100.00 g\r\n", "S", ReplyStatus.STABLE, 100.0),
    (b"S D      12.5 kg", "S", ReplyStatus.DYNAMIC, 12500.0),
    (b"S S    -3.20 g", "S", ReplyStatus.STABLE, -3.2),
    (b"S S       1.000 lb", "S", ReplyStatus.STABLE, 453.59237),
    (b"T S      12.30 g", "T", ReplyStatus.STABLE, 12.3),
    (b"TA A      12.30 g", "TA", ReplyStatus.ACK, 12.3),
    (b"S I", "S", ReplyStatus.NOT_EXECUTABLE, None),
    (b"S +", "S", ReplyStatus.OVERLOAD, None),
    (b"S -", "S", ReplyStatus.UNDERLOAD, None),
    (b"Z A", "Z", ReplyStatus.ACK, None),
    (b"Z I", "Z", ReplyStatus.NOT_EXECUTABLE, None),
    (b"ES", "", ReplyStatus.SYNTAX_ERROR, None),
    (b"ET", "", ReplyStatus.TRANSMISSION_ERROR, None),
    (b"EL", "", ReplyStatus.LOGICAL_ERROR, None),
])
def test_replies_decode_to_status_and_grams(line, command, status, grams):
    reply = parse_reply(line)
    assert (reply.command, reply.status) == (command, status)
    assert reply.grams == pytest.approx(grams) if grams is not None else reply.grams is None


def test_serial_number_reply_keeps_its_quoted_text():
    reply = parse_reply(b'I4 A "B123 456"')
    assert reply.status is ReplyStatus.ACK and reply.text == "B123 456"


@pytest.mark.parametrize("line, says", [
    (b"", "empty"), (b"S", "no status"), (b"S Q", "unknown status"), (b"S S abc g", "not a number"),
    (b"S S nan g", "not finite"), (b"S S 10 PCS", "set the scale to g"), (b"S S 10", "<value> <unit>"),
    (b'I4 A "open', "unterminated"), (b"\xff\xfe", "not ASCII"), (b"S S " + b"1" * 200 + b" g", "longer"),
])
def test_lines_that_are_not_replies_say_what_is_wrong(line, says):
    with pytest.raises(ScaleProtocolError, match=says):
        parse_reply(line)


def test_weight_reply_round_trips_in_the_balance_format():
    line = format_weight_reply("S", ReplyStatus.STABLE, 150.0)
    assert line == b"S S     150.00 g\r\n"  # value right-aligned in ten characters
    assert parse_reply(line).grams == 150.0
    assert parse_reply(format_weight_reply("S", ReplyStatus.DYNAMIC, 2500.0, "kg", 3)).grams == pytest.approx(2500.0)


def test_line_decoder_joins_chunks_and_drops_overlong_noise():
    dec = LineDecoder()
    wire = b"S S     100.00 g\r\nZ A\r\n"
    got = [line for b in wire for line in dec.feed(bytes([b]))]  # one byte at a time
    assert got == [b"S S     100.00 g", b"Z A"]
    assert dec.feed(b"x" * 500) == [] and dec.overlong == 1
    assert dec.feed(b"yyy\r\nS +\r\n") == [b"S +"]  # the rest of the noise line is dropped, the next one is read


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_decoder_and_parser_never_raise_anything_but_protocol_errors(chunks):
    dec = LineDecoder()
    for chunk in chunks:
        for line in dec.feed(chunk):
            assert b"\n" not in line and len(line) <= 128
            try:
                parse_reply(line)
            except ScaleProtocolError:
                pass


# ------------------------------------------------------------------------------------------ over a pty


@pytest.fixture()
def sim(tmp_path):
    s = ScaleSimulator(tmp_path / "scale", weight_g=242.0, stable_wait_s=0.05).start()
    yield s
    s.close()


@pytest.fixture()
def scale(sim):
    c = MtSicsScale(str(sim.port_path), command_timeout_s=0.3, stable_timeout_s=0.5)
    yield c
    c.close()


def test_stable_weight_is_read_over_the_pty(sim, scale):
    m = scale.measure()
    assert m.available and m.state is ScaleState.STABLE and m.grams == pytest.approx(242.0)
    assert sim.commands[-1] == "S"  # a stable read, not an immediate one
    sim.set_weight(180.37)
    assert scale.read_stable() == pytest.approx(180.37)
    assert m.to_json()["state"] == "measured"


def test_zero_tare_and_reset(sim, scale):
    sim.set_weight(0.4)  # an empty pan that drifted
    scale.zero()
    assert scale.read_stable() == pytest.approx(0.0)
    sim.set_weight(50.4)  # a tray
    assert scale.tare() == pytest.approx(50.0)
    sim.set_weight(50.4 + 180.0)
    assert scale.read_stable() == pytest.approx(180.0)  # net of the tray
    assert scale.tare_weight() == pytest.approx(50.0)
    assert scale.reset() == sim.serial_number  # @ clears the tare
    assert scale.read_stable() == pytest.approx(230.0)


def test_a_load_that_never_settles_is_unstable_not_a_weight(sim, scale):
    sim.set_unstable(True)
    m = scale.measure()
    assert m.state is ScaleState.UNSTABLE and m.grams is None and not m.available
    assert "no stable weight" in m.detail
    assert m.elapsed_ms < 3000  # gives up after its stable timeout (0.5 s here) instead of holding the item
    assert scale.read_immediate().status is ReplyStatus.DYNAMIC
    sim.set_unstable(False)
    assert scale.measure().available


def test_unplugged_scale_is_absent_and_comes_back_on_replug(sim, scale):
    assert scale.measure().available
    sim.unplug()
    m = scale.measure()
    assert m.state is ScaleState.ABSENT and str(sim.port_path) in m.detail
    assert m.to_json() == {**m.to_json(), "state": "unavailable", "scale_state": "absent", "grams": None}
    sim.replug()
    assert scale.measure().grams == pytest.approx(242.0)  # reopened on the next weighing, same path


def test_a_scale_that_does_not_answer_is_absent_after_its_timeout(sim, scale):
    sim.set_silent(True)
    m = scale.measure()
    assert m.state is ScaleState.ABSENT and "no answer" in m.detail


def test_overload_underload_and_an_empty_pan(sim, scale):
    sim.set_weight(sim.capacity_g + 1)
    assert scale.measure().state is ScaleState.OVERLOAD
    sim.set_weight(-500)
    assert scale.measure().state is ScaleState.UNDERLOAD
    sim.set_weight(0.5)
    m = scale.measure()
    assert m.state is ScaleState.EMPTY and not m.available and "not on the pan" in m.detail


def test_unknown_commands_get_a_syntax_error(sim, scale):
    assert scale.request("SX").status is ReplyStatus.SYNTAX_ERROR
    sim.set_weight(0.0)
    with pytest.raises(ScaleError, match="T: refused"):
        scale.tare()  # nothing on the pan to tare: T -


def test_missing_port_is_absent_with_the_port_named(tmp_path):
    c = MtSicsScale(str(tmp_path / "no-such-port"), command_timeout_s=0.2, stable_timeout_s=0.2)
    m = c.measure()
    assert m.state is ScaleState.ABSENT and "cannot open scale port" in m.detail and "no-such-port" in m.detail


def test_an_echoing_line_is_a_fault_not_a_weight():
    # loop:// sends every command back: the lines are not MT-SICS replies (wrong interface mode, or a modem)
    c = MtSicsScale("loop://", command_timeout_s=0.2, stable_timeout_s=0.2)
    try:
        m = c.measure()
    finally:
        c.close()
    assert m.state is ScaleState.FAULT and "not MT-SICS" in m.detail and c.garbled_lines >= 1


def test_simulator_load_is_set_over_the_wire(sim, scale):
    assert scale.request("XW", "99.5").status is ReplyStatus.ACK
    assert scale.read_stable() == pytest.approx(99.5)
    assert scale.request("XU", "1").status is ReplyStatus.ACK
    assert scale.measure().state is ScaleState.UNSTABLE


# ------------------------------------------------------------------------------------------ CLI


def _cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "station.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_sim_scale_and_scale_read_as_processes(tmp_path):
    port = tmp_path / "scale"
    proc = subprocess.Popen([sys.executable, "-m", "station.cli", "sim-scale", "--port", str(port),
                             "--weight-g", "150"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not port.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert port.exists(), proc.stderr.read() if proc.poll() is not None else "simulator did not start"
        read = _cli("scale", "read", "--url", str(port), "--json")
        assert read.returncode == 0, read.stderr
        got = json.loads(read.stdout)
        assert got["state"] == "measured" and got["grams"] == 150.0
        cfg = tmp_path / "station.toml"
        cfg.write_text(f'[scale]\ntype = "mtsics"\nurl = "{port}"\n')
        tare = _cli("scale", "tare", "--config", str(cfg))
        assert tare.returncode == 0 and "tare 150.00 g" in tare.stdout, tare.stderr
    finally:
        proc.terminate()
        out, errs = proc.communicate(timeout=30)
    assert proc.returncode == 0, errs
    assert json.loads(out)["commands"] >= 2
    assert not os.path.lexists(port)  # the simulator removes its link


def test_scale_read_on_a_missing_port_is_one_clear_line(tmp_path):
    proc = _cli("scale", "read", "--url", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "cannot open scale port" in proc.stderr
    assert "check the cable" in proc.stderr


def test_sim_scale_refuses_a_port_path_that_is_a_file(tmp_path):
    f = tmp_path / "taken"
    f.write_text("x")
    proc = _cli("sim-scale", "--port", str(f))
    assert proc.returncode == 2 and "not a symlink" in proc.stderr and "Traceback" not in proc.stderr
