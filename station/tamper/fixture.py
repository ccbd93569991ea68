"""The tamper suite's fixture (a station with records, witness heads, its public key and two bundles), its
outcome type, and the in-process CLI run that classifies each attempt."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from station import evidence as ev

ORDER_A, ORDER_B = "TAMPER-A", "TAMPER-B"


@dataclass
class Outcome:
    kind: str  # "bundle" or "database"
    name: str
    result: str  # caught / refused / missed / traceback
    exit_code: int
    message: str


@dataclass
class Fixture:
    root: Path
    data: Path  # the station's data dir (station.db, images/, keys/)
    key_pem: Path  # the station's public key, as `station key export` writes it
    platform_heads: Path  # the platform's GET /stations/ID/heads answer, saved
    bundle_a: Path  # order A: two inspections and an override
    bundle_b: Path  # order B: one inspection
    record_ids: dict[str, list[str]] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- fixture


def make_fixture(root: Path) -> Fixture:
    """A station with three inspections (two views each) and an override, its witness heads (as after a sync),
    its exported public key and the two orders' bundles."""
    from station.domain import (Decision, Disposition, Finding, FindingSource, Grade, LiabilityShare, Party,
                                ReturnReason, ReturnRequest)
    from station.records import StationStore, record_from_parts

    root = Path(root)
    data = root / "station"
    store = StationStore(data / "station.db").open()
    ids: dict[str, list[str]] = {ORDER_A: [], ORDER_B: []}
    try:
        for i, order in enumerate((ORDER_A, ORDER_A, ORDER_B)):
            hashes = []
            for j, view in enumerate(("front", "back")):
                img = np.full((48, 64, 3), 20 + 30 * i + 7 * j, np.uint8)
                img[8:20, 10:30] = (0, 0, 255)
                hashes.append((view, store.put_image(img).sha256))
            share = LiabilityShare(Party.CARRIER, 0.7, "L-CARRIER", "crushed box", ("dent",), 0.9)
            other = LiabilityShare(Party.CONSUMER, 0.3, "L-CUSTOMER", "used", ("scratch",), 0.8)
            dec = Decision(Grade.C, Disposition.REFURBISH, (share, other), False, ("G-TEST", f"R-{i}"),
                           ("scratch on the front",), 0.8)
            finding = Finding("scratch", 0.77, FindingSource.DETECTOR, "front", (10.0, 8.0, 30.0, 20.0))
            rec = record_from_parts(ReturnRequest(order, "GAD-EARBUD-X2", ReturnReason.QUALITY_ISSUE, f"U-{i}",
                                                  "live", "streamer-1", "brand-1", "carrier-1"),
                                    [finding], dec, 3, hashes, "test-model", "st-tamper", {"rules": 1.0}, "op-1")
            store.append(rec)
            ids[order].append(rec.record_id)
        ids[ORDER_A].append(store.override(ids[ORDER_A][0], "sup-1", "customer photo shows it was fine",
                                           grade=Grade.B))
        head = store.latest_head()
        # As after a sync: the platform acknowledged the latest head; the station keeps it (file and state).
        ev.save_witness(ev.witness_path(store.key_path), head, "http://platform.test")
        store.set_state({"platform_head": json.dumps(head.to_json(), sort_keys=True)})
        heads = [ev.SignedTreeHead(*r).to_json() for r in store.db.execute(
            "SELECT tree_size, root_hash, signed_at, key_id, signature FROM tree_heads ORDER BY tree_size")]
        platform_heads = root / "platform_heads.json"
        platform_heads.write_text(json.dumps({"station_id": "st-tamper", "public_key_pem":
                                              store.public_key_pem().decode(), "heads": heads}))
        key_pem = root / "station.pub"
        key_pem.write_bytes(store.public_key_pem())
        bundle_a, bundle_b = root / "a.zip", root / "b.zip"
        ev.build_bundle(store.db, store.image_dir, store.evidence.key, ORDER_A, bundle_a)
        ev.build_bundle(store.db, store.image_dir, store.evidence.key, ORDER_B, bundle_b)
    finally:
        store.close()
    return Fixture(root, data, key_pem, platform_heads, bundle_a, bundle_b, ids)


# ------------------------------------------------------------------------------------------- running the CLI


def invoke_cli(args: list[str]) -> tuple[str, int, str]:
    from typer.testing import CliRunner

    from station.cli import app

    res = CliRunner().invoke(app, args, catch_exceptions=True, env={"COLUMNS": "300"})
    text = (res.output or "").strip()
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        return "traceback", res.exit_code, f"{type(res.exception).__name__}: {res.exception}"
    if "Traceback" in text:
        return "traceback", res.exit_code, text[-300:]
    code = res.exit_code
    if code == 0:
        return "missed", code, text[-300:]
    if code not in (1, 2) or not text:
        return "traceback", code, f"exit {code} without a message: {text[-200:]}"
    return ("caught" if code == 1 else "refused"), code, text[-300:]
