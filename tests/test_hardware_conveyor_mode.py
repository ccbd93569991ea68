"""Conveyor mode with the real pipeline against the simulator on a pty, every fault injected; the CLI edges."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from station.cli import app
from station.config import ConfigError, SerialConveyorConfig, load_config
from station.conveyor_mode import ReturnCodeError, encode_return_code, parse_return_code
from station.domain import ReturnReason, ReturnRequest


def test_short_run_with_every_fault_sorts_nothing_wrong_and_keeps_every_record(data_dir):
    from station.bench.conveyor import run_conveyor_bench
    from station.records import StationStore

    report = run_conveyor_bench(minutes=0.6, faults=True, time_scale=4.0, data_dir=data_dir, pitch_mm=900)
    assert set(report["faults_injected"]) == {"drop_bytes", "corrupt_bytes", "unplug", "jam", "estop",
                                              "late_item", "items_too_close"}
    assert report["mis_sorts"] == 0, report["mis_sort_items"]
    assert report["items"] == report["items_spawned"] > 10
    assert report["records_not_matching_lane"] == 0
    assert report["manual_review"] >= 1  # the e-stop, the unplug and the close pair send items to review
    assert report["link"]["reconnects"] >= 2  # the unplug was survived
    with StationStore(data_dir / "station.db") as store:
        originals = list(store.rows("WHERE overrides IS NULL"))
    assert len(originals) == report["inspected"]
    assert len({r["order_id"] for r in originals}) == len(originals)


def test_return_label_round_trips_and_rejects_bad_labels():
    req = ReturnRequest("ORD-1", "BTL-FEED-240", ReturnReason.NO_REASON_7DAY, "U1", "live", "host", "b", "c")
    assert parse_return_code(encode_return_code(req, {"x": "APP-TEE-M"})) == (req, {"x": "APP-TEE-M"})
    with pytest.raises(ReturnCodeError, match="not a return label"):
        parse_return_code("hello")
    with pytest.raises(ReturnCodeError, match="unknown return reason"):
        parse_return_code("RMA1;o=1;s=X;r=because")


def test_serial_conveyor_config_is_validated(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[conveyor]\ntype = "serial"\nurl = "/dev/ttyUSB0"\n')
    assert isinstance(load_config(good).conveyor, SerialConveyorConfig)
    bad = tmp_path / "bad.toml"
    bad.write_text('[conveyor]\ntype = "serial"\nurl = "/dev/ttyUSB0"\nbaud = 9600\n')
    with pytest.raises(ConfigError, match="conveyor.baud: unknown key"):
        load_config(bad)


def test_run_headless_on_a_missing_port_exits_2_with_a_message(tmp_path, data_dir):
    cfg = tmp_path / "station.toml"
    cfg.write_text(f'[station]\ndata_dir = "{data_dir}"\n[conveyor]\ntype = "serial"\nurl = "/dev/ttyNOPE7"\n')
    result = CliRunner().invoke(app, ["run", "--headless", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "ttyNOPE7" in result.output and "Traceback" not in result.output


def test_run_headless_needs_a_serial_conveyor(data_dir):
    result = CliRunner().invoke(app, ["run", "--headless", "--data-dir", str(data_dir)])
    assert result.exit_code == 2
    assert 'conveyor.type = "serial"' in result.output
