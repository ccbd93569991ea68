"""Text on the item (issue 24): parsing serials and dates, the real OCR engine offline, `station read-text`,
the catalogue's serial_pattern / shelf_life_days columns and the rules' reading of what was read."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date

import cv2
import numpy as np
import pytest

from station.domain import CatalogueItem, Frame
from vision.ocr import DateKind, OcrUnavailable, TextLine, TextReader, TextReading, luhn_ok, parse_lines


def line(text, y=0, x=0, view="front", w=200, h=20, score=0.99):
    return TextLine(text, score, (x, y, x + w, y + h), view)


def dates_of(*texts, **kw):
    return [(d.kind.value, d.date.isoformat()) for d in parse_lines([line(t, y=40 * i) for i, t in enumerate(texts)],
                                                                    **kw)[1]]


def serials_of(*texts, pattern=None):
    return [s.value for s in parse_lines([line(t, y=40 * i) for i, t in enumerate(texts)], pattern)[0]]


# ------------------------------------------------------------------------------------------------ parsing

@pytest.mark.parametrize("text, expected", [
    ("EXP 2027-03-12", ("expiry", "2027-03-12")),
    ("Use by 12/03/2027", ("expiry", "2027-03-12")),          # DD/MM/YYYY, never MM/DD
    ("BB 03/2027", ("best_before", "2027-03-31")),            # a month alone: its last day for a use-by
    ("PROD 03/2027", ("production", "2027-03-01")),           # ... its first for a production date
    ("Best before 12 MAR 2027", ("best_before", "2027-03-12")),
    ("USE BY 31.12.26", ("expiry", "2026-12-31")),            # DD.MM.YY
    ("MFG:2026-01-05", ("production", "2026-01-05")),
    ("EXP12/03/2027", ("expiry", "2027-03-12")),              # OCR drops the space
    ("PR0D 07.12.26", ("production", "2026-12-07")),          # ... and reads O as 0 in the label
    ("LOT 2389A 05/2028", ("unknown", "2028-05-31")),
])
def test_each_date_form_and_label_is_read_with_its_kind(text, expected):
    assert dates_of(text) == [expected]


def test_impossible_dates_and_month_names_are_not_dates():
    assert dates_of("EXP 31/02/2027") == []
    assert dates_of("BB 12 FOO 2027") == []
    assert dates_of("Reference Intakes of an average adult (8400k1/2000kcal)") == []
    # "6 MFG 03" is no "12 MAR 2027": the date after the label is still found
    assert dates_of("Serial No. L4ND1EBAP6 MFG 03/2028") == [("production", "2028-03-01")]


def test_a_label_alone_on_its_row_names_the_date_below_it():
    assert dates_of("Best before", "12.03.2027") == [("best_before", "2027-03-12")]
    assert dates_of("12.03.2027") == [("unknown", "2027-03-12")]


@pytest.mark.parametrize("text, expected", [
    ("S/N: A1B2C3D4E5", ["A1B2C3D4E5"]),
    ("SN A1B2-C3D4", ["A1B2C3D4"]),            # dashes and case do not count
    ("Serial No. XK-4471-22", ["XK447122"]),
    ("5/N: ABCD123456", ["ABCD123456"]),        # S read as 5
    ("ASN 12345678", []),                        # SN inside a word is no label
    ("IMEI 490154203237518", ["490154203237518"]),
    ("IME1490154203237518", ["490154203237518"]),
    ("IMEI 490154203237519", []),                # fails its Luhn digit: a misread, not taken
    ("IMEI 49015420323751", []),                 # 14 digits
])
def test_serials_follow_their_labels_and_an_imei_passes_luhn(text, expected):
    assert serials_of(text) == expected


def test_the_catalogue_pattern_finds_an_unlabelled_serial_and_corrects_lookalikes():
    pattern = r"SB[0-9A-HJ-NPR-Z]{8}"
    assert serials_of("made in PRC  SB4K7M2P9X", pattern=pattern) == ["SB4K7M2P9X"]
    assert serials_of("S/N SB4K7M2P9X", pattern=r"[0-9]{10}") == ["SB4K7M2P9X"]  # a labelled value stays
    assert serials_of("SN O1234I6789", pattern=r"[0-9]{10}") == ["0123416789"]  # O for 0, I for 1
    assert serials_of("SN SB4K7M2P9XEXP", pattern=pattern) == ["SB4K7M2P9X"]  # what the gap joined is cut


def test_label_and_value_in_two_boxes_are_one_row_but_stacked_lines_are_not():
    split = [line("S/N:", 0, 0, w=40), line("A1B2C3D4E5", 2, 60, w=120)]
    assert [s.value for s in parse_lines(split)[0]] == ["A1B2C3D4E5"]
    # a rotated label: the axis-aligned boxes of two stacked lines overlap vertically, and in x too
    stacked = [TextLine("S/N: A1B2C3D4E5", 0.99, (191, 181, 430, 263), "f"),
               TextLine("EXP 03/2028", 0.99, (198, 232, 338, 289), "f")]
    serials, dates = parse_lines(stacked)
    assert [s.value for s in serials] == ["A1B2C3D4E5"]
    assert [(d.kind, d.date) for d in dates] == [(DateKind.EXPIRY, date(2028, 3, 31))]


def test_a_day_and_month_without_a_year_take_the_year_nearest_the_reading_day():
    lines = [line("Use by", 0, 100, w=60), line("<1005 8374>", 20, 0, w=90), line("04 NOV", 25, 90, w=100)]
    serials, dates = parse_lines(lines, today=date(2027, 1, 10))
    assert [(d.kind, d.date, d.year_inferred) for d in dates] == [(DateKind.EXPIRY, date(2026, 11, 4), True)]
    assert parse_lines(lines)[1] == []  # no reading day: not guessed
    # "01 SEP 12:10" is a day, a month and a time, not 1 September 2012
    assert [d.date for d in parse_lines([line("Use by 01 SEP 12:10")], today=date(2026, 8, 1))[1]] == \
        [date(2026, 9, 1)]


def test_luhn():
    assert luhn_ok("490154203237518") and not luhn_ok("490154203237517") and not luhn_ok("49015420323751x")


# ------------------------------------------------------------------------------------------------ engine

@pytest.fixture(scope="module")
def reader():
    return TextReader(threads=2)


def test_the_engine_reads_generated_labels_exactly(reader):
    """A few generated labels (Hershey and TrueType fonts, rotation, blur, JPEG) read exactly; the full rate is
    measured by `python -m vision.ocr_eval`."""
    from vision.ocr_eval import EVAL_SERIAL_PATTERN, generate_label

    rng = np.random.default_rng(11)
    ttf = [p for p in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",) if __import__("os").path.isfile(p)]
    labels = [generate_label(rng, ttf) for _ in range(4)]
    for lab in labels:
        reading = reader.read_frames([Frame(lab.image, "label")], serial_pattern=EVAL_SERIAL_PATTERN)
        assert lab.serial in [s.value for s in reading.serials], (lab.lines, [t.text for t in reading.lines])
        assert (lab.kind, lab.date) in [(d.kind, d.date) for d in reading.dates], (lab.lines, reading.dates)
        for t in reading.lines:
            x1, y1, x2, y2 = t.box_xyxy
            assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480 and t.view == "label"


def test_real_packaging_photos_give_their_use_by_date(reader):
    """The shipped real photos (Apache-2.0, tests/data/real/label_recognition): each date as a person reads it."""
    from pathlib import Path

    from vision.ocr_eval import REAL_TRUTH, evaluate_real

    folder = Path(__file__).parent / "data" / "real" / "label_recognition"
    report = evaluate_real(reader, folder, today=date(2026, 10, 15))
    assert report["hand_checked"] == len(REAL_TRUTH) == 5
    assert report["hand_checked_exact"] == 5, [(r["file"], r["dates"]) for r in report["photos_read"]]


def test_a_blank_bench_reads_nothing(reader):
    reading = reader.read_frames([Frame(np.full((480, 640, 3), 200, np.uint8), "front")])
    assert reading.lines == () and reading.serials == () and reading.dates == ()


def test_the_models_come_from_the_wheel_and_a_download_is_refused(monkeypatch):
    from rapidocr.utils.download_file import DownloadFile, DownloadFileInput

    from vision import ocr

    root = ocr.bundled_model_dir()
    assert all((root / n).stat().st_size > 500_000 for n in (ocr._DET_MODEL, ocr._REC_MODEL, ocr._CLS_MODEL))
    with ocr._NoDownload(), pytest.raises(OcrUnavailable, match="offline"):
        DownloadFile.run(DownloadFileInput("https://example.invalid/x.onnx", root / "never.onnx", ocr_logger()))
    assert not (root / "never.onnx").exists()
    # outside the guard the library's own download is back (the guard leaves nothing patched)
    assert DownloadFile.run.__func__.__name__ == "run"
    # a wheel without its models fails with one line saying what to do, before anything would download
    monkeypatch.setattr(ocr, "_DET_MODEL", "missing_det.onnx")
    with pytest.raises(OcrUnavailable, match="reinstall rapidocr"):
        TextReader().engine()


def ocr_logger():
    import logging

    return logging.getLogger("test_ocr")


# ------------------------------------------------------------------------------------------------ CLI

def _run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "station.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_read_text_json_contract(tmp_path):
    img = np.full((480, 640, 3), 235, np.uint8)
    for y, text in ((120, "S/N: SB4K7M2P9X"), (200, "IMEI 490154203237518"), (280, "EXP 12/03/2027"),
                    (360, "MFG 2025-09-01")):
        cv2.putText(img, text, (40, y), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (20, 20, 20), 2, cv2.LINE_AA)
    path = tmp_path / "label.png"
    cv2.imwrite(str(path), img)
    proc = _run("read-text", "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {"texts", "serials", "dates"} <= set(out)
    assert all(set(t) >= {"text", "score", "box_xyxy", "view"} and t["view"] == "label" and len(t["box_xyxy"]) == 4
               for t in out["texts"])
    assert out["serials"] == ["SB4K7M2P9X", "490154203237518"]
    assert [(d["kind"], d["date"]) for d in out["dates"]] == [("expiry", "2027-03-12"), ("production", "2025-09-01")]
    assert all(set(d) >= {"kind", "date", "text"} for d in out["dates"])


@pytest.mark.parametrize("args, says", [
    (["read-text", "--json", "nope.png"], "not found"),
    (["read-text", "--serial-pattern", "SB[", "x.png"], "not a valid regex"),
    (["read-text", "--serial-pattern", ".*", "x.png"], "matches an empty serial"),
])
def test_read_text_bad_input_is_exit_2_with_one_line(tmp_path, args, says):
    cv2.imwrite(str(tmp_path / "x.png"), np.full((40, 40, 3), 200, np.uint8))
    proc = subprocess.run([sys.executable, "-m", "station.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------------ catalogue

def _catalogue(tmp_path, rows):
    from vision.catalogue import Catalogue

    (tmp_path / "a.png").write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    lines = ["sku,category,brand,image,serial_pattern,shelf_life_days"] + rows
    (tmp_path / "catalogue.csv").write_text("\n".join(lines) + "\n")
    return Catalogue.load(tmp_path)


def test_catalogue_columns_name_the_skus_that_carry_text(tmp_path):
    cat = _catalogue(tmp_path, ["PH,electronics,b,a.png,SB[0-9A-Z]{8},", "TIN,infant_feeding,b,a.png,,540",
                                "TIN,infant_feeding,b,a.png,,540", "TOY,toys,b,a.png,,"])
    assert cat.serial_pattern("PH") == "SB[0-9A-Z]{8}" and cat.shelf_life_days("TIN") == 540
    assert cat.expects_text("PH") and cat.expects_text("TIN") and not cat.expects_text("TOY")


@pytest.mark.parametrize("row, says", [
    ("PH,electronics,b,a.png,SB[0-9,", "not a valid regex"),
    ("PH,electronics,b,a.png,[A-Z]*,", "matches an empty serial"),
    ("TIN,infant_feeding,b,a.png,,18 months", "whole number of days"),
    ("TIN,infant_feeding,b,a.png,,0", "between 1 and"),
    ("TIN,infant_feeding,b,a.png,,99999", "between 1 and"),
])
def test_catalogue_columns_are_validated_with_line_and_column(tmp_path, row, says):
    from vision.catalogue import CatalogueError

    with pytest.raises(CatalogueError, match=says) as exc:
        _catalogue(tmp_path, [row])
    assert "catalogue.csv:2" in str(exc.value)


def test_one_shelf_life_per_sku(tmp_path):
    from vision.catalogue import CatalogueError

    with pytest.raises(CatalogueError, match="one value per SKU"):
        _catalogue(tmp_path, ["TIN,infant_feeding,b,a.png,,540", "TIN,infant_feeding,b,a.png,,365"])


# ------------------------------------------------------------------------------------------------ rules

TIN = CatalogueItem("TIN", "infant_feeding", "mamacare", hygiene=True)
LOTION = CatalogueItem("LOT", "cosmetics", "glowlab")
PHONE = CatalogueItem("PH", "electronics", "soundbee")


@pytest.fixture(scope="module")
def engine():
    from station.rules import RuleSet, RulesEngine

    return RulesEngine(RuleSet.load())


def reading(*texts):
    lines = [line(t, y=40 * i) for i, t in enumerate(texts)]
    serials, dates = parse_lines(lines, r"SB[0-9A-Z]{8}")
    return TextReading(tuple(lines), tuple(serials), tuple(dates), ("front",))


@pytest.mark.parametrize("item, printed, today, kind", [
    (TIN, "EXP 14/02/2026", date(2026, 2, 15), "expired"),
    (TIN, "EXP 14/02/2026", date(2026, 2, 14), "near_expiry"),  # the day itself: usable, but in the margin
    (TIN, "EXP 14/02/2026", date(2026, 1, 16), "near_expiry"),  # 29 days left, infant feeding keeps 30
    (TIN, "EXP 14/02/2026", date(2026, 1, 15), None),           # 30 days left
    (LOTION, "BB 14/02/2026", date(2026, 2, 14), None),         # cosmetics: no margin
    (TIN, "MFG 2025-01-01", date(2026, 7, 1), "expired"),       # produced + 540 days = 2026-06-25
])
def test_dates_against_today_and_the_category_margin(engine, item, printed, today, kind):
    check = engine.check_text(item, reading(printed), None, None, 540, today)
    assert [f.kind for f in check.findings] == ([kind] if kind else [])
    if kind:
        f = check.findings[0]
        assert f.view == "front" and f.box_xyxy is not None and printed in f.detail
        assert f.value == (date.fromisoformat(check.record["expiry"]) - today).days
    else:
        assert [n.rule_id for n in check.notes] == ["T-DATE-OK"]


def test_the_earlier_of_two_dates_binds(engine):
    check = engine.check_text(TIN, reading("BB 01/03/2027", "EXP 01/02/2026"), None, None, 540, date(2026, 6, 1))
    assert check.record["expiry"] == "2026-02-01" and check.findings[0].kind == "expired"


def test_serial_outcomes(engine):
    today = date(2026, 1, 1)
    swap = engine.check_text(PHONE, reading("S/N: SB9T3R6W2H"), "SB4K7M2P9X", r"SB[0-9A-Z]{8}", None, today)
    assert [f.kind for f in swap.findings] == ["serial_mismatch"] and "SB4K7M2P9X" in swap.findings[0].detail
    same = engine.check_text(PHONE, reading("S/N: SB-4K7M-2P9X"), "sb4k7m2p9x", r"SB[0-9A-Z]{8}", None, today)
    assert same.findings == () and [n.rule_id for n in same.notes] == ["T-SERIAL-MATCH"]
    unread = engine.check_text(PHONE, reading("LOT 1234"), "SB4K7M2P9X", r"SB[0-9A-Z]{8}", None, today)
    assert unread.findings == () and [(n.rule_id, n.review) for n in unread.notes] == [("T-SERIAL-UNREAD", True)]
    # a labelled value that is not a serial of this SKU is not evidence of a swap: a person reads the label
    odd = engine.check_text(PHONE, reading("S/N: 12"), "SB4K7M2P9X", r"SB[0-9A-Z]{8}", None, today)
    assert odd.findings == () and odd.notes[0].rule_id == "T-SERIAL-UNREAD"


def test_a_dated_sku_without_a_readable_date_goes_to_a_supervisor(engine):
    check = engine.check_text(TIN, reading("LOT 6021B", "12.03.2027"), None, None, 540, date(2026, 1, 1))
    assert check.findings == () and [(n.rule_id, n.review) for n in check.notes] == [("T-DATE-UNREAD", True)]


def test_the_record_keeps_only_the_lines_that_are_evidence(engine):
    """Other print on a parcel may be a shipping label: no buyer name or address is stored."""
    check = engine.check_text(TIN, reading("Jane Doe, 12 High Street", "EXP 14/02/2026"), None, None, 540,
                              date(2026, 1, 1))
    assert [t["text"] for t in check.record["texts"]] == ["EXP 14/02/2026"] and check.record["lines_read"] == 2
    assert "Jane" not in repr(check.record) and "Jane" not in repr(check.findings)
    assert len(check.text_boxes) == 2  # every line still tells the pipeline where the print is
