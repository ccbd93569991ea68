"""Text on the item: `station read-text --json IMG...` (OCR of serials, IMEI, lot codes and dates, offline)."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated, Optional

import typer

from station.cli.common import BadInput, fail, out, print_json, read_image


app = typer.Typer()


@app.command("read-text")
def read_text(
    images: Annotated[list[Path], typer.Argument(help="one image per view (the view is the file's stem)")],
    serial_pattern: Annotated[Optional[str], typer.Option(
        "--serial-pattern", help="regex of the SKU's serials (the catalogue's serial_pattern): a token that "
        "matches it whole is a serial even without an S/N label")] = None,
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads", min=1, max=64)] = 2,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Read the text on an item's photos: every line (text, score, box, view), the serials (after S/N, SN,
    Serial, or an IMEI with a valid Luhn digit) and the dates (expiry, best before, production) as
    YYYY-MM-DD. Offline: the models ship in the rapidocr wheel."""
    from station.domain import Frame
    from vision.ocr import OcrUnavailable, TextReader

    try:
        if serial_pattern is not None:
            try:
                if re.compile(serial_pattern).fullmatch("") is not None:
                    raise BadInput(f"--serial-pattern {serial_pattern!r} matches an empty serial: give the "
                                   f"pattern of a serial, e.g. SB[0-9A-Z]{{8}}")
            except re.error as exc:
                raise BadInput(f"--serial-pattern {serial_pattern!r} is not a valid regex ({exc})") from None
        frames = [Frame(read_image(p), p.stem, str(p)) for p in images]
    except BadInput as exc:
        fail(str(exc))
    try:
        reading = TextReader(threads=threads).read_frames(frames, serial_pattern=serial_pattern,
                                                          today=date.today())
    except OcrUnavailable as exc:
        fail(str(exc))
    if json_out:
        print_json(reading.to_json())
        return
    for line in reading.lines:
        out.print(f"{line.view}: {line.text}  ({line.score:.2f})", highlight=False, markup=False)
    for s in reading.serials:
        out.print(f"serial {s.value} ({s.label}, {s.view})", highlight=False, markup=False)
    for d in reading.dates:
        out.print(f"{d.kind.value} {d.date.isoformat()}  <{d.text}> ({d.view})", highlight=False, markup=False)
    if not reading.lines:
        out.print("no text read")
