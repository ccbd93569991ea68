"""Export of station records as CSV (spreadsheet-safe) or JSON lines. The atomic file write is
``station.records.write_export_file``."""

from __future__ import annotations

import csv
import io
import json
from typing import Iterator

EXPORT_COLUMNS = ("record_id", "created_at", "station_id", "order_id", "sku", "unit_code", "reason", "channel",
                  "streamer", "brand", "carrier", "grade", "disposition", "review", "lane", "confidence",
                  "model_version", "rules_fired", "operator", "overrides", "override_reason")


# OWASP "CSV injection": a spreadsheet runs a cell that starts with one of these as a formula (=cmd|' /C calc'!A0).
# Catalogue and RMA fields come from outside the station, so every text cell that starts so is prefixed with a
# single quote, which spreadsheets show as text. Numbers (lane, confidence) are written as numbers.
CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value):
    """``value`` as a CSV cell a spreadsheet will not evaluate (text only; other values unchanged)."""
    if isinstance(value, str) and value.startswith(CSV_FORMULA_STARTS):
        return "'" + value
    return value


def export_rows(rows: Iterator[dict], fmt: str, out: io.TextIOBase) -> int:
    n = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=[*EXPORT_COLUMNS, "liability", "findings"], extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            decision = json.loads(row["decision_json"])
            liability = ";".join(f"{s['party']}={s['share']}" for s in decision.get("liability", []))
            findings = ";".join(f["kind"] for f in json.loads(row["findings_json"]))
            cells = {**row, "liability": liability, "findings": findings}
            writer.writerow({k: csv_safe(cells.get(k)) for k in writer.fieldnames})
            n += 1
    elif fmt == "jsonl":
        for row in rows:
            obj = {k: row[k] for k in EXPORT_COLUMNS}
            obj["review"] = bool(obj["review"])
            obj["decision"] = json.loads(row["decision_json"])
            obj["findings"] = json.loads(row["findings_json"])
            obj["timings_ms"] = json.loads(row["timings_json"])
            obj["images"] = row["images"]
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
            n += 1
    else:
        raise ValueError(f"unknown export format {fmt!r}: use csv or jsonl")
    return n
