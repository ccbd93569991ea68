"""`station label RECORD_ID --out FILE.zpl|FILE.pdf|FILE.png [--printer URL]`: a record's licence-plate label.

Reads the station database read-only; with ``--printer`` the label also goes to the printer and its state is kept in
``<data_dir>/labels.db`` (unprinted with the printer's error when it fails: exit 1, the record is untouched).
No `from __future__ import annotations` here: typer must see the option types of the nested commands.
"""

import sqlite3
from pathlib import Path
from typing import Annotated, Optional

import typer

from station.cli.common import ConfigOpt, DataDirOpt, err, fail, station_config

OUT_SUFFIXES = (".zpl", ".pdf", ".png")


def _find_row(db_path: Path, record_id: str, fail):
    from station.evidence import EvidenceError, open_readonly

    try:
        db = open_readonly(db_path)
    except EvidenceError as exc:
        fail(f"{exc}: run an inspection first or pass --data-dir")
    try:
        db.row_factory = sqlite3.Row
        key = record_id.strip().lower()
        if len(key) < 8 or any(c not in "0123456789abcdef" for c in key):
            fail(f"record id {record_id!r}: give the record id (32 hex characters, or its first 8 or more)")
        rows = db.execute("SELECT * FROM inspections WHERE record_id LIKE ? ORDER BY seq LIMIT 3",
                          (key + "%",)).fetchall()
        if not rows:
            fail(f"no record {record_id} in {db_path}: `station export` lists the record ids")
        if len(rows) > 1:
            fail(f"record id {record_id} is the start of more than one record: give more of it")
        row = rows[0]
        newer = db.execute("SELECT record_id FROM inspections WHERE overrides=? ORDER BY seq DESC LIMIT 1",
                           (row["record_id"],)).fetchone()
        return row, (newer[0] if newer else None)
    except sqlite3.DatabaseError as exc:
        fail(f"the station database {db_path} cannot be read: {exc}: run `station verify`")
    finally:
        db.close()


app = typer.Typer()


@app.command()
def label(
    record_id: Annotated[str, typer.Argument(help="the record id (or its first 8+ characters)")],
    out: Annotated[Optional[Path], typer.Option("--out", help="FILE.zpl (for a ZPL printer), FILE.pdf "
                                                              "(the fallback) or FILE.png")] = None,
    printer: Annotated[Optional[str], typer.Option(
        "--printer", help="also print it: tcp://HOST:9100, serial:/dev/ttyUSB0?baudrate=9600 or "
                          "file:///spool/folder")] = None,
    timeout_s: Annotated[float, typer.Option("--timeout", min=0.1, max=120, help="printer timeout, s")] = 5.0,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Write (and with --printer print) the licence-plate label of a record: a Code128 of the record id
    with its grade, disposition, lane, SKU, order and date, 4 x 2 inch at 203 dpi."""
    from station import licence_plate as lp

    if out is None and printer is None:
        fail("say where the label goes: --out FILE.zpl|FILE.pdf|FILE.png and/or --printer URL")
    if out is not None:
        if out.suffix.lower() not in OUT_SUFFIXES:
            fail(f"--out {out}: the file name must end in .zpl, .pdf or .png (that picks the format)")
        if out.is_dir() or not out.parent.is_dir():
            fail(f"--out {out}: " + ("it is a folder" if out.is_dir() else f"folder {out.parent} does not exist"))
    device = None
    if printer is not None:
        try:
            device = lp.printer_for_url(printer, timeout_s=timeout_s)
        except lp.LabelError as exc:
            fail(str(exc))
    cfg = station_config(config, data_dir)
    row, newer = _find_row(cfg.database_path(), record_id, fail)
    plate = lp.Plate.from_row(row)
    try:
        zpl = lp.zpl_for(plate)
        if out is not None:
            suffix = out.suffix.lower()
            if suffix == ".zpl":
                data = zpl.encode("utf-8")
            else:
                raster = lp.render_zpl(zpl)
                data = lp.pdf_for(raster) if suffix == ".pdf" else _png(raster)
            tmp = out.with_name(f".{out.name}.tmp")
            tmp.write_bytes(data)
            tmp.replace(out)
    except lp.LabelError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    if newer is not None:
        err.print(f"note: record {plate.record_id} was overridden by {newer}; label that one for the "
                  "current decision", highlight=False)
    if out is not None:
        typer.echo(f"label of {plate.record_id} (grade {plate.grade}, {plate.disposition}, lane {plate.lane}) "
                   f"written to {out}")
    if device is not None:
        spool = lp.LabelSpool(cfg.station.data_dir / "labels.db")
        try:
            spool.open()
        except lp.LabelError as exc:
            fail(str(exc))
        try:
            outcome = lp.print_label(spool, device, plate)
        finally:
            spool.close()
        if not outcome.printed:
            fail(f"not printed: {outcome.error}", code=1)
        typer.echo(f"label of {plate.record_id} sent to {printer}")


def _png(raster) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", raster)
    if not ok:  # pragma: no cover - a uint8 raster always encodes
        raise OSError("PNG encoding failed")
    return buf.tobytes()
