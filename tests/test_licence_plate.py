"""Licence-plate labels (issue 24, part 3): ZPL, our raster of it, the PDF fallback, read-back through
vision/scanner.py, printers by URL over real sockets, ptys and folders, and the unprinted-label spool."""

from __future__ import annotations

import os
import socket
import threading
import uuid

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from station import licence_plate as lp
from station.domain import Decision, Disposition, Grade, ReturnReason, ReturnRequest
from station.records import StationStore, record_from_parts


def _record(sku: str = "BOTTLE-250", grade=Grade.B, disposition=Disposition.OPEN_BOX, lane: int = 2,
            store: StationStore | None = None):
    dec = Decision(grade, disposition, (), False, ("G-1",))
    sha = store.put_image(np.full((32, 32, 3), 200, np.uint8)).sha256 if store is not None else "0" * 64
    return record_from_parts(ReturnRequest("ORD-1001", sku, ReturnReason.WRONG_SIZE), [], dec, lane,
                             [("front", sha)], "m-1", "bench-03", {})


def _plate(**kw) -> lp.Plate:
    base = dict(record_id=uuid.uuid4().hex, grade="C", disposition="refurbish", lane=3, sku="SKU-7",
                order_id="O-9", created_at="2026-12-04T10:11:12.000+00:00", station_id="bench-03")
    return lp.Plate(**{**base, **kw})


# ------------------------------------------------------------------------------------- codes and ZPL


@pytest.mark.parametrize("record_id", ["0" * 32, "f" * 32, "00000000000000000000000000000001",
                                       "8d6f0c1e2b3a49e58f1a2b3c4d5e6f70"])
def test_plate_code_round_trips_every_record_id(record_id):
    code = lp.plate_code(record_id)
    assert code.startswith("LP") and len(code) == 42 and code[2:].isdigit()
    assert lp.record_id_from_code(code) == record_id
    assert lp.record_id_from_code(record_id.upper()) == record_id  # a typed hex id is accepted as well


@pytest.mark.parametrize("text", ["LP123", "RMA1|O|S|wrong_size", "LP" + "9" * 40, "", "hello"])
def test_a_code_that_is_no_licence_plate_is_refused_with_a_reason(text):
    with pytest.raises(lp.LabelError, match="not a licence plate"):
        lp.record_id_from_code(text)


def test_plate_code_refuses_an_id_that_is_not_a_station_record_id():
    with pytest.raises(lp.LabelError, match="32 lowercase hex"):
        lp.plate_code("not-a-record-id")


def test_zpl_is_a_4x2_inch_203_dpi_label_with_the_code128_and_the_decision():
    plate = _plate()
    zpl = lp.zpl_for(plate)
    assert zpl.startswith("^XA") and zpl.rstrip().endswith("^XZ")
    assert "^PW812" in zpl and "^LL406" in zpl
    assert f"^BCN,150,N,N,N,A^FD{lp.plate_code(plate.record_id)}^FS" in zpl
    assert "^BY2," in zpl
    for text in ("GRADE C", "REFURBISH", "LANE 3", "SKU SKU-7", "ORDER O-9", "2026-12-04", plate.record_id,
                 "bench-03"):
        assert text in zpl, text


def test_zpl_for_takes_an_inspection_record():
    rec = _record()
    zpl = lp.zpl_for(rec)
    assert lp.plate_code(rec.record_id) in zpl and "GRADE B" in zpl and "OPEN_5FBOX" in zpl  # _ escaped by ^FH


def test_a_sku_with_zpl_control_characters_cannot_inject_commands():
    plain = lp.zpl_for(_plate(sku="ABC"))
    hostile = lp.zpl_for(_plate(sku="X^XZ^XA^FO0,0^GB812,406,406^FS~JA_é"))
    assert hostile.count("^") == plain.count("^") and "~" not in hostile
    # the renderer reads the field back as the original text, and the label still scans
    assert lp.record_id_from_raster(lp.render_zpl(hostile))


def test_renderer_refuses_zpl_it_does_not_implement():
    with pytest.raises(lp.LabelError, match=r"\^BQ is not supported"):
        lp.render_zpl("^XA^FO10,10^BQN,2,5^FDQA,hello^FS^XZ")
    with pytest.raises(lp.LabelError, match="must start with"):
        lp.render_zpl("hello")


# ------------------------------------------------------------------------------------- read-back


def test_rendered_zpl_is_read_back_by_the_scanner_to_the_record_id():
    from vision.scanner import FrameScanner, Symbology

    for _ in range(5):
        plate = _plate(record_id=uuid.uuid4().hex)
        raster = lp.render_zpl(lp.zpl_for(plate))
        assert raster.shape == (406, 812) and raster.dtype == np.uint8
        scan = FrameScanner((Symbology.CODE128,)).scan_one(raster)
        assert scan.symbology == Symbology.CODE128
        assert lp.record_id_from_code(scan.text) == plate.record_id


def _photograph(raster: np.ndarray, seed: int) -> np.ndarray:
    """The label as a camera sees it: on a grey table, turned up to 12°, 3 px a module (a 4 inch label across
    about 60 % of a 1920 px frame), soft, noisy, JPEG. At 2 px a module and 8-12° zxing misses about one in
    six (see the report's figures), so a bench camera for `history --scan` should see 3 px a module or more."""
    rng = np.random.default_rng(seed)
    table = np.full((1000, 1600), 120, np.uint8)
    table[297:703, 394:1206] = raster
    m = cv2.getRotationMatrix2D((800, 500), float(rng.uniform(-12, 12)), 1.5)
    img = cv2.warpAffine(table, m, (1600, 1000), borderValue=120)
    img = cv2.GaussianBlur(img, (3, 3), 0.8)
    img = np.clip(img.astype(np.int16) + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return cv2.imdecode(jpg, cv2.IMREAD_GRAYSCALE)


def test_a_photographed_label_image_file_opens_its_record(tmp_path):
    plate = _plate()
    for seed in range(6):
        path = tmp_path / f"label{seed}.jpg"
        cv2.imwrite(str(path), _photograph(lp.render_plate(plate), seed))
        assert lp.record_id_from_label_image(path) == plate.record_id


def test_label_image_without_a_plate_says_so(tmp_path):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 300), 255, np.uint8))
    with pytest.raises(lp.LabelError, match="no licence plate found"):
        lp.record_id_from_label_image(blank)
    with pytest.raises(lp.LabelError, match="not found"):
        lp.record_id_from_label_image(tmp_path / "missing.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(lp.LabelError, match="not a readable image"):
        lp.record_id_from_label_image(junk)


def test_pdf_is_one_page_with_the_raster_and_reads_back(tmp_path):
    plate = _plate()
    raster = lp.render_plate(plate)
    pdf = lp.pdf_for(raster)
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
    assert pdf.count(b"/Type /Page ") == 1 and b"/MediaBox [0 0 288.00 144.00]" in pdf  # 4 x 2 inch
    assert b"/Subtype /Image /Width 812 /Height 406" in pdf
    assert np.array_equal(lp.raster_from_pdf(pdf), raster)  # via the xref offsets: a wrong one fails
    path = tmp_path / "label.pdf"
    path.write_bytes(pdf)
    assert lp.record_id_from_label_image(path) == plate.record_id
    broken = pdf.replace(b"startxref\n", b"startxref\n1")
    with pytest.raises(lp.LabelError, match="not a label PDF"):
        lp.raster_from_pdf(broken)


# ------------------------------------------------------------------------------------- printers


class _RawPrinter:
    """A ZPL printer's raw port 9100 on 127.0.0.1: keeps every byte of each connection; answers ~HS with
    the host status it is given (None: never answers)."""

    def __init__(self, host_status: bytes | None = b"", answer_status: bool = True) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.received: list[bytes] = []
        self.host_status = host_status
        self.answer_status = answer_status
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                    if data.endswith(b"~HS") and self.answer_status:
                        conn.sendall(self.host_status)
            except OSError:
                pass
            self.received.append(data)
        self.done.set()

    def close(self) -> None:
        self.server.close()


OK_STATUS = b"\x02030,0,0,0406,000,0,0,0,000,0,0,0\x03\r\n\x02001,0,0,0,1,2,6,0,00000000,1,000\x03\r\n\x021234,0\x03\r\n"
PAPER_OUT = OK_STATUS.replace(b"\x02030,0,0", b"\x02030,1,0", 1)


@pytest.fixture()
def spool(tmp_path):
    with lp.LabelSpool(tmp_path / "labels.db") as s:
        yield s


def test_tcp_printer_receives_the_exact_zpl_bytes(spool):
    printer = _RawPrinter()
    try:
        rec = _record()
        outcome = lp.print_label(spool, lp.printer_for_url(f"tcp://127.0.0.1:{printer.port}"), rec)
        assert printer.done.wait(5)
    finally:
        printer.close()
    assert outcome.printed and outcome.error is None
    assert printer.received == [lp.zpl_for(rec).encode("utf-8")]
    row = spool.get(rec.record_id)
    assert row.state == lp.LabelState.PRINTED and row.attempts == 1 and row.printed_at


def test_tcp_printer_with_status_check_asks_host_status_first(spool):
    printer = _RawPrinter(OK_STATUS)
    try:
        rec = _record()
        outcome = lp.print_label(spool, lp.printer_for_url(f"tcp://127.0.0.1:{printer.port}", check_status=True), rec)
        assert printer.done.wait(5)
    finally:
        printer.close()
    assert outcome.printed
    assert printer.received == [b"~HS" + lp.zpl_for(rec).encode("utf-8")]


def test_printer_out_of_paper_keeps_the_label_unprinted(spool):
    printer = _RawPrinter(PAPER_OUT)
    try:
        rec = _record()
        outcome = lp.print_label(spool, lp.printer_for_url(f"tcp://127.0.0.1:{printer.port}", check_status=True), rec)
        assert printer.done.wait(5)
    finally:
        printer.close()
    assert not outcome.printed and "paper out" in outcome.error
    assert printer.received == [b"~HS"]  # the label was not sent into a printer that cannot print it
    assert spool.get(rec.record_id).state == lp.LabelState.UNPRINTED


def test_printer_that_does_not_answer_times_out_with_a_clear_error(spool):
    printer = _RawPrinter(answer_status=False)
    try:
        url = f"tcp://127.0.0.1:{printer.port}"
        outcome = lp.print_label(spool, lp.printer_for_url(url, timeout_s=0.3, check_status=True), _record())
    finally:
        printer.close()
    assert not outcome.printed
    assert f"printer 127.0.0.1:{printer.port} did not answer within 0.3 s" in outcome.error


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


def test_refused_printer_leaves_the_record_as_it_was_and_the_label_for_a_retry(tmp_path, spool):
    with StationStore(tmp_path / "station.db") as store:
        rec = _record(store=store)
        store.append(rec)
        before = dict(store.get(rec.record_id))
        port = _closed_port()
        outcome = lp.print_label(spool, lp.printer_for_url(f"tcp://127.0.0.1:{port}"), rec)
        assert not outcome.printed and "refused the connection" in outcome.error
        assert dict(store.get(rec.record_id)) == before  # the decision is untouched
    row = spool.get(rec.record_id)
    assert row.state == lp.LabelState.UNPRINTED and row.attempts == 1 and "refused" in row.last_error
    assert spool.status()["unprinted"] == 1

    printer = _RawPrinter()  # the printer is back
    try:
        retried = lp.retry_unprinted(spool, lp.printer_for_url(f"tcp://127.0.0.1:{printer.port}"))
        assert printer.done.wait(5)
    finally:
        printer.close()
    assert [o.printed for o in retried] == [True]
    assert printer.received == [lp.zpl_for(rec).encode("utf-8")]
    assert spool.get(rec.record_id).attempts == 2 and spool.status() == {"printed": 1, "unprinted": 0,
                                                                         "unprinted_labels": []}


def test_serial_printer_on_a_pty_gets_the_zpl(spool):
    master, slave = os.openpty()
    try:
        import tty

        tty.setraw(slave)
        rec = _record()
        outcome = lp.print_label(spool, lp.printer_for_url(f"serial:{os.ttyname(slave)}?baudrate=19200"), rec)
        want = lp.zpl_for(rec).encode("utf-8")
        got = b""
        while len(got) < len(want):
            got += os.read(master, 65536)
    finally:
        os.close(master)
        os.close(slave)
    assert outcome.printed and got == want


def test_serial_printer_that_cannot_be_opened_is_a_clear_error(spool, tmp_path):
    outcome = lp.print_label(spool, lp.printer_for_url(f"serial:{tmp_path / 'no-such-tty'}"), _record())
    assert not outcome.printed and "cannot open printer port" in outcome.error


def test_spool_folder_printer_writes_one_file_per_label(tmp_path, spool):
    folder = tmp_path / "spool"
    folder.mkdir()
    rec = _record()
    assert lp.print_label(spool, lp.printer_for_url(folder.as_uri()), rec).printed
    assert [p.name for p in folder.iterdir()] == [f"{rec.record_id}.zpl"]
    assert (folder / f"{rec.record_id}.zpl").read_text() == lp.zpl_for(rec)
    missing = lp.print_label(spool, lp.printer_for_url((tmp_path / "gone").as_uri()), _record())
    assert not missing.printed and "does not exist" in missing.error


@pytest.mark.parametrize("url, why", [("ftp://x", "use tcp://"), ("tcp://", "no host"), ("tcp://h:port", "number"),
                                      ("serial:", "names no port"), ("serial:/dev/x?baudrate=fast", "baudrate")])
def test_printer_urls_that_name_no_printer_are_refused(url, why):
    with pytest.raises(lp.LabelError, match=why):
        lp.printer_for_url(url)


def test_queueing_a_label_twice_keeps_one(spool):
    rec = _record()
    spool.add(rec.record_id, lp.zpl_for(rec))
    spool.add(rec.record_id, "^XA^XZ")
    assert spool.zpl(rec.record_id) == lp.zpl_for(rec) and len(spool.unprinted()) == 1


# ------------------------------------------------------------------------------------- station label


@pytest.fixture()
def cli_app():
    from station.cli import labels
    from station.cli.common import include

    app = typer.Typer()
    include(app, labels.app)

    @app.command("noop", hidden=True)
    def _noop() -> None:  # a second command keeps `label` a named subcommand
        pass

    return app


@pytest.fixture()
def stored(tmp_path):
    with StationStore(tmp_path / "data" / "station.db") as store:
        rec = _record(sku="CAR-SEAT-9", grade=Grade.D, disposition=Disposition.SCRAP, lane=6, store=store)
        store.append(rec)
    return rec, tmp_path / "data"


def test_station_label_writes_zpl_and_pdf_that_read_back(cli_app, stored, tmp_path):
    rec, data = stored
    runner = CliRunner()
    zpl_path, pdf_path, png_path = tmp_path / "l.zpl", tmp_path / "l.pdf", tmp_path / "l.png"
    for path in (zpl_path, pdf_path, png_path):
        res = runner.invoke(cli_app, ["label", rec.record_id, "--out", str(path), "--data-dir", str(data)])
        assert res.exit_code == 0, res.output
        assert "grade D, scrap, lane 6" in res.output
    assert zpl_path.read_text() == lp.zpl_for(rec)
    assert lp.record_id_from_raster(lp.render_zpl(zpl_path.read_text())) == rec.record_id
    assert lp.record_id_from_label_image(pdf_path) == rec.record_id
    assert lp.record_id_from_label_image(png_path) == rec.record_id
    short = runner.invoke(cli_app, ["label", rec.record_id[:8], "--out", str(zpl_path), "--data-dir", str(data)])
    assert short.exit_code == 0, short.output


@pytest.mark.parametrize("args, message", [
    (["--out", "{tmp}/l.txt"], "must end in .zpl, .pdf or .png"),
    (["--out", "{tmp}/no/dir/l.zpl"], "does not exist"),
    ([], "say where the label goes"),
    (["--out", "{tmp}/l.zpl", "--printer", "lpt1"], "use tcp://"),
])
def test_station_label_bad_input_is_exit_2_with_one_line(cli_app, stored, tmp_path, args, message):
    rec, data = stored
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    res = CliRunner().invoke(cli_app, ["label", rec.record_id, *args, "--data-dir", str(data)])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


def test_station_label_unknown_record_or_no_database_is_exit_2(cli_app, stored, tmp_path):
    _, data = stored
    res = CliRunner().invoke(cli_app, ["label", "deadbeefdeadbeef", "--out", str(tmp_path / "x.zpl"),
                                       "--data-dir", str(data)])
    assert res.exit_code == 2 and "no record deadbeefdeadbeef" in res.output
    res = CliRunner().invoke(cli_app, ["label", "deadbeefdeadbeef", "--out", str(tmp_path / "x.zpl"),
                                       "--data-dir", str(tmp_path / "empty")])
    assert res.exit_code == 2 and "no station database" in res.output


def test_station_label_to_a_refusing_printer_is_exit_1_and_queued(cli_app, stored, tmp_path):
    rec, data = stored
    port = _closed_port()
    res = CliRunner().invoke(cli_app, ["label", rec.record_id, "--printer", f"tcp://127.0.0.1:{port}",
                                       "--data-dir", str(data)])
    assert res.exit_code == 1 and "not printed" in res.output and "refused" in res.output
    with lp.LabelSpool(data / "labels.db") as spool:
        assert spool.get(rec.record_id).state == lp.LabelState.UNPRINTED


def test_history_for_label_opens_the_record_and_its_unit(tmp_path):
    with StationStore(tmp_path / "station.db") as store:
        dec = Decision(Grade.B, Disposition.OPEN_BOX, (), False, ("G-1",))
        sha = store.put_image(np.full((32, 32, 3), 90, np.uint8)).sha256
        first = record_from_parts(ReturnRequest("O-1", "S", ReturnReason.WRONG_SIZE, unit_code="UNIT-7"), [], dec, 2,
                                  [("front", sha)], "m", "st", {})
        again = record_from_parts(ReturnRequest("O-2", "S", ReturnReason.WRONG_SIZE, unit_code="UNIT-7"), [], dec, 2,
                                  [("front", sha)], "m", "st", {})
        loose = record_from_parts(ReturnRequest("O-3", "S", ReturnReason.WRONG_SIZE), [], dec, 2, [("front", sha)],
                                  "m", "st", {})
        for rec in (first, again, loose):
            store.append(rec)
        override = store.override(loose.record_id, "sup", "checked", grade=Grade.C)
        path = tmp_path / "label.png"
        cv2.imwrite(str(path), _photograph(lp.render_plate(again), 1))
        record_id, rows = lp.history_for_label(store, path)
        assert record_id == again.record_id and [r["order_id"] for r in rows] == ["O-1", "O-2"]
        pdf = tmp_path / "loose.pdf"
        pdf.write_bytes(lp.pdf_for(lp.render_plate(loose)))
        record_id, rows = lp.history_for_label(store, pdf)
        assert [r["record_id"] for r in rows] == [loose.record_id, override]
        stranger = tmp_path / "stranger.png"
        cv2.imwrite(str(stranger), lp.render_plate(_plate()))
        with pytest.raises(lp.LabelError, match="not in this station's database"):
            lp.history_for_label(store, stranger)


def test_print_forever_prints_what_the_inspection_path_queued(spool):
    rec = _record()
    spool.add(rec.record_id, lp.zpl_for(rec))  # all the inspection path does: no network
    printer = _RawPrinter()
    stop = threading.Event()
    worker = threading.Thread(target=lp.print_forever,
                              args=(spool, lp.printer_for_url(f"tcp://127.0.0.1:{printer.port}"), stop, 0.05))
    worker.start()
    try:
        assert printer.done.wait(5)
    finally:
        stop.set()
        worker.join(5)
        printer.close()
    assert printer.received == [lp.zpl_for(rec).encode("utf-8")] and not worker.is_alive()
    assert spool.get(rec.record_id).state == lp.LabelState.PRINTED


def test_labels_config_picks_the_printer(tmp_path):
    from pydantic import TypeAdapter, ValidationError

    adapter = TypeAdapter(lp.LabelsConfig)
    assert lp.printer_for_config(adapter.validate_python({"type": "off"}), tmp_path) is None
    tcp = lp.printer_for_config(adapter.validate_python({"type": "zpl", "printer": "tcp://10.0.0.30"}), tmp_path)
    assert isinstance(tcp, lp.TcpPrinter) and tcp.port == 9100
    with pytest.raises(ValidationError, match="printer"):
        adapter.validate_python({"type": "zpl", "printer": "lpt1"})
    with pytest.raises(ValidationError, match="colour"):
        adapter.validate_python({"type": "pdf", "colour": True})


def test_pdf_fallback_writes_a_pdf_per_label_that_reads_back(tmp_path, spool):
    from pydantic import TypeAdapter

    printer = lp.printer_for_config(TypeAdapter(lp.LabelsConfig).validate_python({"type": "pdf"}), tmp_path)
    rec = _record()
    assert lp.print_label(spool, printer, rec).printed
    path = tmp_path / "labels" / f"{rec.record_id}.pdf"
    assert lp.record_id_from_label_image(path) == rec.record_id


def test_labels_status_reads_without_creating(tmp_path):
    assert lp.labels_status(tmp_path / "labels.db") == {"printed": 0, "unprinted": 0, "unprinted_labels": []}
    assert not (tmp_path / "labels.db").exists()
    with lp.LabelSpool(tmp_path / "labels.db") as spool:
        spool.add("a" * 32, "^XA^XZ")
    assert lp.labels_status(tmp_path / "labels.db")["unprinted"] == 1
