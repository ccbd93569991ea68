"""station/labels.py: one grammar per version tag, every label parsed and written in one place; the one lane
function and the one percentile in station/domain.py."""

from __future__ import annotations

import math

import pytest

from station import labels
from station.domain import Disposition, ReturnReason, ReturnRequest, lane_for, percentile
from station.labels import LabelError, LicencePlate, ReturnLabelError

FULL = ReturnRequest("ORD-1", "BTL-FEED-240", ReturnReason.NO_REASON_7DAY, "U1", "live", "host", "brand", "sf",
                     "SB4K7M2P9X")
MINIMAL = ReturnRequest("ORD-2", "APP-TEE-M", ReturnReason.WRONG_SIZE)
RECORD_ID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("request_", [FULL, MINIMAL])
def test_each_grammar_writes_its_own_tag_and_reads_back(request_):
    rma1 = labels.format_rma(request_)
    rma2 = labels.format_rma2(request_, {"x": "APP-TEE-M", "d": "front:scratch+dent"})
    assert rma1.startswith("RMA1|") and rma2.startswith("RMA2;")
    assert labels.parse_return_label(rma1) == labels.ReturnLabel(request_, "RMA1")
    read = labels.parse_return_label(rma2)
    assert (read.request, read.tag, read.extra) == (request_, "RMA2", (("x", "APP-TEE-M"), ("d", "front:scratch+dent")))
    assert labels.parse_return_code(rma2) == (request_, {"x": "APP-TEE-M", "d": "front:scratch+dent"})


def test_keyed_labels_printed_under_the_old_rma1_tag_still_read():
    old = "RMA1;o=ORD-77;s=BTL-FEED-240;r=wrong_item;u=U77;x=BTL-FEED-240"
    read = labels.parse_return_label(old)
    assert read.tag == "RMA2"
    assert read.request == ReturnRequest("ORD-77", "BTL-FEED-240", ReturnReason.WRONG_ITEM, "U77")
    assert read.extra == (("x", "BTL-FEED-240"),)
    # The positional form under RMA1 is unchanged, fields trimmed and empty ones absent.
    assert labels.parse_rma("RMA1| O1 |S1|quality_issue||live") == ReturnRequest("O1", "S1", ReturnReason.QUALITY_ISSUE,
                                                                                 None, "live")
    assert labels.parse_rma('{"order_id": "O1", "sku": "S1", "reason": "wrong_item", "brand": 7}').brand == "7"
    # A label from before the serial field is whole; the serial rides last in RMA1, as sn= in RMA2.
    assert labels.format_rma(MINIMAL) == "RMA1|ORD-2|APP-TEE-M|wrong_size|||||"
    assert labels.parse_rma("RMA1|O|S|wrong_item||||||SN-1").serial == "SN-1"
    assert labels.parse_rma("RMA2;o=O;s=S;r=wrong_item;sn=SN-1").serial == "SN-1"
    assert labels.parse_rma('{"order_id": "O", "sku": "S", "reason": "wrong_item", "serial": "SN-1"}').serial == "SN-1"


@pytest.mark.parametrize("text, key, arg", [
    ("", "empty scan", ""),
    ("hello", "not an RMA code", "hello"),
    ("RMA10|O|S|wrong_item", "not an RMA code", "RMA10|O|S|wrong_item"),
    ("RMA3;o=O;s=S;r=wrong_item", "not an RMA code", "RMA3;o=O;s=S;r=wrong_item"),
    ("[1, 2]", "not an RMA code", "[1, 2]"),
    ("RMA1|O|S|wrong_item|u|c|st|b|c|sn|extra", "too many fields", "10"),
    ("RMA1||S|wrong_item", "missing order id", ""),
    ("RMA1|O||wrong_item", "missing SKU", ""),
    ("RMA1|O|S|because", "unknown return reason", "because"),
    ("RMA2;o=O;s=S", "unknown return reason", ""),
    ("RMA2;s=S;r=wrong_item", "missing order id", ""),
    ("RMA2;o=;s=S;r=wrong_item", "missing order id", ""),  # an empty value is no value
    ("RMA2;o=O;s=S;r=wrong_item;garbage", "not an RMA code", "garbage"),
    ("RMA2;o=O;s=S;r=because", "unknown return reason", "because"),
    ("RMA1|" + "O" * 129 + "|S|wrong_item", "beyond the platform's limit", "order_id"),
    ("RMA2;o=O;s=S;r=wrong_item;ch=" + "c" * 65, "beyond the platform's limit", "channel"),
    ('{"order_id": "O", "sku": "S\\u0000", "reason": "wrong_item"}', "beyond the platform's limit", "sku"),
])
def test_a_bad_return_label_says_which_translatable_problem_it_has(text, key, arg):
    from ui.i18n_zh import ZH

    with pytest.raises(ReturnLabelError) as exc:
        labels.parse_rma(text)
    assert (exc.value.key, exc.value.arg) == (key, arg)
    assert key in ZH  # the bench shows tr(key): every key the parser gives has a Chinese text
    assert str(exc.value) and str(exc.value) != key  # the English sentence says more than the key


def test_the_keyed_form_keeps_the_messages_the_tunnel_scanner_reports():
    with pytest.raises(ReturnLabelError, match=r"lacks o= \(order\), s= \(SKU\) or r= \(reason\)"):
        labels.parse_return_code("RMA1;o=ORD-1;s=X")
    with pytest.raises(ReturnLabelError, match="not a return label"):
        labels.parse_return_code("hello")


@pytest.mark.parametrize("extra", [{"o": "ORD-9"}, {"x;y": "1"}, {"x": "a;b"}, {"": "1"}, {"k=v": "1"}])
def test_an_extra_field_that_would_not_read_back_is_refused_when_written(extra):
    with pytest.raises(ReturnLabelError):
        labels.format_rma2(MINIMAL, extra)


def test_parse_label_tells_return_labels_from_licence_plates():
    code = labels.plate_code(RECORD_ID)
    assert code.startswith("LP") and len(code) == 42
    assert labels.parse_label(code) == LicencePlate(RECORD_ID)
    assert labels.parse_label(f"  {RECORD_ID.upper()}\r\n") == LicencePlate(RECORD_ID)
    assert labels.parse_label(code).code == code
    assert labels.parse_label(labels.format_rma(FULL)) == FULL
    assert labels.parse_label(labels.format_rma2(FULL)) == FULL
    with pytest.raises(LabelError) as exc:
        labels.parse_label("hello there")
    assert exc.value.key == "not a label" and not isinstance(exc.value, ReturnLabelError)
    with pytest.raises(LabelError, match="larger than a record id"):
        labels.record_id_from_code("LP" + "9" * 40)
    with pytest.raises(LabelError, match="32 lowercase hex"):
        labels.plate_code(RECORD_ID.upper())


def test_the_bench_the_conveyor_and_the_plate_printer_use_the_one_grammar_module():
    from station import conveyor_mode, licence_plate
    from ui import scan

    assert (scan.parse_rma, scan.format_rma, scan.RmaError) == (labels.parse_rma, labels.format_rma,
                                                                 labels.ReturnLabelError)
    assert (conveyor_mode.parse_return_code, conveyor_mode.encode_return_code, conveyor_mode.ReturnCodeError) == \
        (labels.parse_return_code, labels.format_rma2, labels.ReturnLabelError)
    assert (licence_plate.plate_code, licence_plate.record_id_from_code, licence_plate.LabelError) == \
        (labels.plate_code, labels.record_id_from_code, labels.LabelError)


def test_a_disposition_without_a_lane_goes_to_the_manual_review_lane_never_to_stock():
    from station.config import StationConfig

    lanes = {Disposition.RESTOCK: 1, Disposition.SCRAP: 5, Disposition.MANUAL_REVIEW: 7}
    assert lane_for(lanes, Disposition.SCRAP) == 5
    assert lane_for(lanes, Disposition.DONATE) == 7
    assert lane_for({Disposition.RESTOCK: 1}, Disposition.DONATE) == 0
    cfg = StationConfig()
    for disposition in Disposition:
        assert cfg.lane_for(disposition) == lane_for(cfg.lanes, disposition)


def test_the_pipeline_router_and_conveyor_mode_agree_with_lane_for():
    from station.conveyor_mode import _Router
    from station.domain import Decision, Grade
    from station.pipeline import LaneRouter

    lanes = {Disposition.RESTOCK: 1, Disposition.RECYCLE: 4, Disposition.MANUAL_REVIEW: 6}

    class Mode:  # conveyor mode with no item on the belt routes by the table alone
        current = None
        manual_lane = 6

    Mode.lanes = lanes
    for disposition in Disposition:
        decision = Decision(Grade.B, disposition, (), False, ())
        assert LaneRouter(lanes, None).lane_for(decision) == lane_for(lanes, disposition)
        assert _Router(Mode()).lane_for(decision) == lane_for(lanes, disposition)


def test_percentile_is_nearest_rank_and_one_of_the_values():
    values = [float(v) for v in range(100, 0, -1)]
    assert [percentile(values, q) for q in (0.0, 0.05, 0.07, 0.5, 0.95, 1.0)] == [1.0, 5.0, 7.0, 50.0, 95.0, 100.0]
    assert percentile([10.0, 20.0], 0.5) == 10.0
    assert percentile([3.0], 0.95) == 3.0
    assert math.isnan(percentile([], 0.5))
    with pytest.raises(ValueError, match="0..1"):
        percentile(values, 95)


def test_simulated_conveyor_labels_are_rma2_and_carry_the_staging_as_extra_fields():
    from station.bench.conveyor import simulated_labels
    from station.demo import simulated_returns

    sims = simulated_returns(40, 3)
    assert any(sim.request.serial for sim in sims)  # the serial-swap story is among them and survives the label
    for text, sim in zip(simulated_labels(40, seed=3), sims):
        request, extra = labels.parse_return_code(text)
        assert text.startswith("RMA2;") and request == sim.request
        assert extra["x"] == sim.staged.looks_like_sku and extra["z"] == str(sim.staged.seed)
