"""Scanners: zxing-cpp decodes codes drawn by zxing-cpp's own writer (straight, rotated, blurred, absent);
the keyboard-wedge parser; a serial scanner over loop:// and a pty."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from station.conveyor_mode import ReturnCodeError, parse_return_code
from station.domain import Frame, ReturnReason
from vision.scanner import (
    FrameScanner,
    KeyboardWedgeParser,
    NoCodeFound,
    PayloadError,
    ScannerError,
    SerialScanner,
    Symbology,
    parse_payload,
    render_code,
)

LABEL = "RMA1;o=ORD-77;s=BTL-FEED-240;r=wrong_item;u=U77"
CASES = [(Symbology.QR, LABEL), (Symbology.CODE128, "U0300165-A"), (Symbology.EAN13, "4006381333931"),
         (Symbology.DATAMATRIX, LABEL)]


def on_bench(code: np.ndarray, angle: float = 0.0, blur: float = 0.0, size=(480, 640)) -> np.ndarray:
    """The code on a grey bench in a BGR camera frame, turned by ``angle`` degrees and blurred."""
    frame = np.full((*size, 3), 190, np.uint8)
    h, w = code.shape
    y, x = (size[0] - h) // 2, (size[1] - w) // 2
    frame[y:y + h, x:x + w] = cv2.cvtColor(code, cv2.COLOR_GRAY2BGR)
    if angle:
        m = cv2.getRotationMatrix2D((size[1] / 2, size[0] / 2), angle, 1.0)
        frame = cv2.warpAffine(frame, m, (size[1], size[0]), borderValue=(190, 190, 190))
    if blur:
        frame = cv2.GaussianBlur(frame, (0, 0), blur)
    return frame


@pytest.mark.parametrize("symbology,text", CASES, ids=[c[0].value for c in CASES])
@pytest.mark.parametrize("angle,blur", [(0, 0), (90, 0), (17, 0), (0, 1.0)], ids=["straight", "r90", "r17", "blur"])
def test_codes_drawn_by_zxing_are_read_back(symbology, text, angle, blur):
    if symbology is Symbology.EAN13 and angle == 17:
        angle = 8  # a 1-D code is scanned along lines: a strongly skewed EAN is a retake, not a read
    scale = 3 if symbology in (Symbology.CODE128, Symbology.EAN13) else 4
    frame = on_bench(render_code(text, symbology, scale), angle, blur)
    scan = FrameScanner().scan_one(frame, "camera:top")
    assert (scan.text, scan.symbology, scan.source) == (text, symbology, "camera:top")
    assert len(scan.corners) == 4


def test_a_frame_without_a_code_says_so_and_lists_what_it_looked_for():
    blank = on_bench(np.full((50, 50), 190, np.uint8))
    with pytest.raises(NoCodeFound, match="no code found.*qr, code128, ean13, datamatrix"):
        FrameScanner().scan_one(blank)
    assert FrameScanner().scan(blank) == []
    with pytest.raises(NoCodeFound, match="camera:side"):
        FrameScanner((Symbology.QR,)).scan_frame(Frame(blank, "side", "test", 0.0))


def test_only_the_asked_symbologies_are_reported_and_bad_input_is_named():
    frame = on_bench(render_code("U0300165-A", Symbology.CODE128, 3))
    with pytest.raises(NoCodeFound):
        FrameScanner((Symbology.QR, Symbology.DATAMATRIX)).scan_one(frame)
    with pytest.raises(ScannerError, match="not an image"):
        FrameScanner().scan(np.zeros((0, 0), np.uint8))
    with pytest.raises(PayloadError, match="cannot encode 'abc' as ean13"):
        render_code("abc", Symbology.EAN13)


def test_a_malformed_label_payload_names_what_was_expected():
    scan = FrameScanner().scan_one(on_bench(render_code("RMA1;o=ORD-1;s=X", Symbology.QR, 4)), "camera:label")
    expected = "a return label RMA1;o=<order>;s=<sku>;r=<reason>;..."
    with pytest.raises(PayloadError, match=r"camera:label read 'RMA1;o=ORD-1;s=X' \(qr\), expected a return label "
                                           r"RMA1;o=<order>.*lacks o= \(order\), s= \(SKU\) or r= \(reason\)"):
        parse_payload(scan, parse_return_code, expected)
    good = FrameScanner().scan_one(on_bench(render_code(LABEL, Symbology.QR, 4)))
    req, _ = parse_payload(good, parse_return_code, expected)
    assert (req.order_id, req.reason) == ("ORD-77", ReturnReason.WRONG_ITEM)
    assert issubclass(ReturnCodeError, ValueError)


# ----------------------------------------------------------------------------------------- keyboard wedge


def test_keyboard_wedge_parser_splits_codes_at_enter():
    p = KeyboardWedgeParser()
    assert p.feed("RMA1;o=1;s=X;r=wrong_item") == []
    first = p.feed("\r\nU-2\n\n")
    assert [s.text for s in first] == ["RMA1;o=1;s=X;r=wrong_item", "U-2"]
    assert {s.source for s in first} == {"keyboard"} and {s.symbology for s in first} == {Symbology.UNKNOWN}
    for ch in "ABC\t":  # key events one at a time, as a UI delivers them; Tab is ignored
        assert p.feed_key(ch) is None
    assert p.feed_key("", enter=True).text == "ABC"
    assert p.feed_key("", enter=True) is None  # Enter on an empty buffer is no code


def test_keyboard_wedge_parser_drops_slow_typing_and_runaway_input():
    p = KeyboardWedgeParser(max_len=8, max_key_gap_s=0.05)
    p.feed("zz", at=0.0)
    codes = p.feed("U-9\r", at=1.0)  # a second later: the stray keys were a person, the burst a scanner
    assert [c.text for c in codes] == ["U-9"] and codes[0].at == 1.0
    assert "typed, not scanned" in p.rejected[-1]
    p.feed("0123456789", at=2.0)
    assert "longer than 8" in p.rejected[-1]
    assert [c.text for c in p.feed("\r", at=2.0)] == ["89"]


# ----------------------------------------------------------------------------------------- serial scanner


def test_serial_scanner_over_loop_url():
    sc = SerialScanner("loop://").open()
    try:
        sc.port.write(b"U0300165\r\nRMA1;o=1;s=X;r=wrong_item\r")
        assert sc.read(1.0).text == "U0300165"
        second = sc.read(1.0)
        assert second.text == "RMA1;o=1;s=X;r=wrong_item" and second.source == "serial:loop://"
        assert sc.read(0.1) is None
        sc.port.write(b"\xff\xfe\r")
        with pytest.raises(PayloadError, match="not utf-8"):
            sc.read(1.0)
    finally:
        sc.close()


def test_serial_scanner_over_a_pty_reads_a_split_code_and_reports_unplug():
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    sc = SerialScanner(os.ttyname(slave), baudrate=115200).open()
    try:
        os.write(master, b"4006381")
        assert sc.read(0.1) is None  # half a code: nothing yet
        os.write(master, b"333931\n")
        assert sc.read(1.0).text == "4006381333931"
        os.close(master)
        master = None
        with pytest.raises(ScannerError, match="went away"):
            sc.read(1.0)
    finally:
        sc.close()
        os.close(slave)
        if master is not None:
            os.close(master)
    with pytest.raises(ScannerError, match="cannot open scanner port '/dev/nope-ttyACM7'"):
        SerialScanner("/dev/nope-ttyACM7").open()
