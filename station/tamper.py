"""Tamper suite: alter an evidence bundle and a station's data in every way an attacker would, run
`station verify-bundle` / `station verify` on each, and count what was caught.

Each alteration runs the real command in-process (typer's CliRunner). Outcomes: ``caught`` (exit 1 with a
message: verification failed or unverified), ``refused`` (exit 2 with a message: unusable input), ``missed``
(exit 0) or ``traceback`` (an exception escaped the command). Two controls (the untouched bundle and store)
must verify, or the suite proves nothing.

Used by ``station bench tamper`` and tests/test_tamper_suite.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import sqlite3
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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


def _invoke(args: list[str]) -> tuple[str, int, str]:
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


# ------------------------------------------------------------------------------------------- bundle alterations


def _members(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def _zip(members: list[tuple[str, bytes]], compression=zipfile.ZIP_DEFLATED) -> bytes:
    import warnings

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a duplicate name is one of the attacks
        for name, data in members:
            zi = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
            zi.compress_type = compression
            zf.writestr(zi, data)
    return buf.getvalue()


def _jload(b: bytes):
    return json.loads(b)


def _jdump(obj) -> bytes:
    return json.dumps(obj, indent=2, ensure_ascii=False).encode()


def _edit(members, name_pred: Callable[[str], bool], fn: Callable[[bytes], bytes]):
    out, hit = [], False
    for n, b in members:
        if not hit and name_pred(n):
            b, hit = fn(b), True
        out.append((n, b))
    if not hit:
        raise AssertionError("tamper case matched no member")
    return out


def _edit_json(members, name_pred, fn):
    def apply(b: bytes) -> bytes:
        obj = _jload(b)
        fn(obj)  # edits in place; what it returns is ignored
        return _jdump(obj)

    return _edit(members, name_pred, apply)


def _resign(members, private_key, new_head: ev.SignedTreeHead | None = None):
    """Recompute the manifest's file hashes and sign it with ``private_key`` (the attacker's, or the station's
    own key for an insider who holds it): what verify must still catch then is what the key cannot forge."""
    files = dict(members)
    manifest = _jload(files["manifest.json"])
    if new_head is not None:
        manifest["signed_head"] = new_head.to_json()
        files["head.json"] = _jdump(new_head.to_json())
    files.pop("manifest.sig", None)
    from cryptography.hazmat.primitives import serialization as ser

    pub = private_key.public_key()
    kid = ev.key_id_of(pub)
    if "public_key.pem" in files:
        files["public_key.pem"] = pub.public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    manifest["files"] = {n: hashlib.sha256(b).hexdigest() for n, b in sorted(files.items()) if n != "manifest.json"}
    manifest["key_id"] = kid
    mbytes = _jdump(manifest)
    files["manifest.json"] = mbytes
    sig = base64.b64encode(private_key.sign(ev.MANIFEST_CONTEXT + mbytes)).decode()
    files["manifest.sig"] = _jdump({"signs": "manifest.json", "key_id": kid, "signature": sig})
    return list(files.items())


def attacker_rebuild(members, attacker, record_id: str):
    """The attacker's own log: ``record_id`` upgraded to grade A, a fake head over the bundle's records, proofs
    and decision files made to match, everything signed with the attacker's key (theirs in public_key.pem)."""
    files = dict(members)
    files[f"records/{record_id}.json"] = files[f"records/{record_id}.json"].replace(b'"grade":"C"', b'"grade":"A"')
    m = _jload(files["manifest.json"])
    leaves = [ev.leaf_hash(files[e["record"]]) for e in m["records"]]
    root = ev.merkle_root(leaves)
    kid = ev.key_id_of(attacker.public_key())
    when = "2030-01-01T00:00:00.000+00:00"
    head = ev.SignedTreeHead(len(leaves), root.hex(), when, kid, base64.b64encode(attacker.sign(
        ev.head_message(len(leaves), root.hex(), when, kid))).decode())
    for i, e in enumerate(m["records"]):
        files[e["proof"]] = _jdump({"leaf_index": i, "tree_size": len(leaves), "leaf_hash": leaves[i].hex(),
                                    "audit_path": [p.hex() for p in ev.inclusion_proof(i, leaves)]})
        e["leaf_index"] = i
        files[e["decision"]] = _jdump(ev.decision_view(_jload(files[e["record"]])))
    m["complete_up_to"] = len(leaves)
    files["manifest.json"] = _jdump(m)
    return _resign(list(files.items()), attacker, head)


def _patch_method(raw: bytes, name: str, flag: int | None = None, method: int | None = None) -> bytes:
    """Set a member's flag bits or compression method in both its local and its central header."""
    b = bytearray(raw)
    enc = name.encode()
    pos = 0
    while (pos := b.find(b"PK\x01\x02", pos)) != -1:
        nlen = struct.unpack_from("<H", b, pos + 28)[0]
        if bytes(b[pos + 46:pos + 46 + nlen]) == enc:
            local = struct.unpack_from("<I", b, pos + 42)[0]
            if flag is not None:
                struct.pack_into("<H", b, pos + 8, flag)
                struct.pack_into("<H", b, local + 6, flag)
            if method is not None:
                struct.pack_into("<H", b, pos + 10, method)
                struct.pack_into("<H", b, local + 8, method)
            return bytes(b)
        pos += 4
    raise AssertionError(f"{name} not in the zip")


def _crc_error(members) -> bytes:
    raw = bytearray(_zip(members, zipfile.ZIP_STORED))
    i = raw.find(b'"record_id"')  # inside a stored record: same size, wrong CRC
    raw[i + 2] ^= 0x20
    return bytes(raw)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def bundle_cases(fx: Fixture) -> list[tuple[str, Callable[[], bytes], list[str]]]:
    """(name, make the altered bundle bytes, extra CLI args). Every case but the control is an attack."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    a = _members(fx.bundle_a)
    b = _members(fx.bundle_b)
    station_key = ev.StationKey(fx.data / "keys" / "station_ed25519.pem").load().private
    attacker = Ed25519PrivateKey.generate()
    ida, idb = fx.record_ids[ORDER_A], fx.record_ids[ORDER_B]
    override = ida[-1]
    first = ida[0]

    def dec(rid=first):
        return lambda n: n == f"decision/{rid}.json"

    def rec(rid=first):
        return lambda n: n == f"records/{rid}.json"

    def prf(rid=first):
        return lambda n: n == f"proofs/{rid}.json"

    man = lambda n: n == "manifest.json"  # noqa: E731
    drop = lambda ms, pred: [(n, x) for n, x in ms if not pred(n)]  # noqa: E731

    def set_(key, value):
        def f(o):
            o[key] = value
        return f

    def liability(o, k, v):
        o["liability"][0][k] = v

    def drop_override(ms):
        ms = drop(ms, lambda n: override in n)

        def f(m):
            m["records"] = [e for e in m["records"] if e["record_id"] != override]
            m["record_count"] -= 1
        return _edit_json(ms, man, f)

    def add_other_order(ms):
        other = dict(b)
        rid = idb[0]
        ms = ms + [(n, other[n]) for n in (f"records/{rid}.json", f"proofs/{rid}.json", f"decision/{rid}.json")]
        entry = _jload(other["manifest.json"])["records"][0]
        entry["images"], entry["annotated"] = [], []
        entry["missing_images"] = [im["sha256"] for im in _jload(other[f"records/{rid}.json"])["images"]]

        def f(m):
            m["records"].append(entry)
            m["record_count"] += 1
        return _edit_json(ms, man, f)

    def swap_record_with_other_order(ms):
        other = dict(b)
        return _edit(ms, rec(), lambda _: other[f"records/{idb[0]}.json"])

    other_image = next(x for n, x in b if n.startswith("images/"))
    first_image = next(n for n, _ in a if n.startswith("images/"))
    first_annot = next(n for n, _ in a if n.startswith("annotated/"))

    key = ["--public-key", str(fx.key_pem)]
    Z = _zip  # noqa: N806
    cases: list[tuple[str, Callable[[], bytes], list[str]]] = [
        ("decision grade", lambda: Z(_edit_json(a, dec(), set_("grade", "A"))), key),
        ("decision disposition", lambda: Z(_edit_json(a, dec(), set_("disposition", "restock"))), key),
        ("decision rule ids", lambda: Z(_edit_json(a, dec(), set_("rule_ids", ["G-OK"]))), key),
        ("decision liability share", lambda: Z(_edit_json(a, dec(), lambda o: liability(o, "share", 0.0))), key),
        ("decision liability party", lambda: Z(_edit_json(a, dec(), lambda o: liability(o, "party", "brand"))),
         key),
        ("decision findings score", lambda: Z(_edit_json(a, dec(), lambda o: o["findings"][0].update(score=0.01))),
         key),
        ("decision findings removed", lambda: Z(_edit_json(a, dec(), set_("findings", []))), key),
        ("decision reasons", lambda: Z(_edit_json(a, dec(), set_("reasons", ["as new"]))), key),
        ("decision operator", lambda: Z(_edit_json(a, dec(), set_("operator", "someone-else"))), key),
        ("decision override reason", lambda: Z(_edit_json(a, dec(override), set_("override_reason", "x"))), key),
        ("decision sku", lambda: Z(_edit_json(a, dec(), set_("sku", "OTHER-SKU"))), key),
        ("decision order id", lambda: Z(_edit_json(a, dec(), set_("order_id", ORDER_B))), key),
        ("decision extra field", lambda: Z(_edit_json(a, dec(), set_("refund", 1000))), key),
        ("decision liability share, manifest re-signed by the station key",
         lambda: Z(_resign(_edit_json(a, dec(), lambda o: liability(o, "share", 0.0)), station_key)), key),
        ("decision operator, manifest re-signed by the station key",
         lambda: Z(_resign(_edit_json(a, dec(), set_("operator", "x")), station_key)), key),
        ("decision findings, manifest re-signed by the station key",
         lambda: Z(_resign(_edit_json(a, dec(), set_("findings", [])), station_key)), key),
        ("decision sku, manifest re-signed by the station key",
         lambda: Z(_resign(_edit_json(a, dec(), set_("sku", "X")), station_key)), key),
        ("record grade", lambda: Z(_edit(a, rec(), lambda x: x.replace(b'"grade":"C"', b'"grade":"A"'))), key),
        ("record order id", lambda: Z(_edit(a, rec(), lambda x: x.replace(ORDER_A.encode(), ORDER_B.encode()))),
         key),
        ("record trailing space", lambda: Z(_edit(a, rec(), lambda x: x + b" ")), key),
        ("record grade, manifest re-signed by the station key",
         lambda: Z(_resign(_edit(a, rec(), lambda x: x.replace(b'"grade":"C"', b'"grade":"A"')), station_key)), key),
        ("proof leaf_index a string", lambda: Z(_edit_json(a, prf(), set_("leaf_index", "zero"))), key),
        ("proof leaf_index a float", lambda: Z(_edit_json(a, prf(), set_("leaf_index", 0.5))), key),
        ("proof leaf_index null", lambda: Z(_edit_json(a, prf(), set_("leaf_index", None))), key),
        ("proof leaf_index true", lambda: Z(_edit_json(a, prf(), set_("leaf_index", True))), key),
        ("proof leaf_index huge", lambda: Z(_edit_json(a, prf(), set_("leaf_index", 10 ** 30))), key),
        ("proof audit path not hex", lambda: Z(_edit_json(a, prf(), lambda o: o["audit_path"].__setitem__(0, "zz" * 32))),
         key),
        ("proof audit path short hash", lambda: Z(_edit_json(a, prf(), lambda o: o["audit_path"].__setitem__(0, "ab"))),
         key),
        ("proof audit path a node dropped", lambda: Z(_edit_json(a, prf(), lambda o: o["audit_path"].pop())), key),
        ("proof audit path an object", lambda: Z(_edit_json(a, prf(), set_("audit_path", {"0": "ab"}))), key),
        ("proof a JSON list", lambda: Z(_edit(a, prf(), lambda x: b"[1, 2, 3]")), key),
        ("proof not JSON", lambda: Z(_edit(a, prf(), lambda x: b"\xff\xfe not json")), key),
        ("proof tree size", lambda: Z(_edit_json(a, prf(), lambda o: o.update(tree_size=o["tree_size"] + 1))), key),
        ("proof of another leaf, re-signed by the station key",
         lambda: Z(_resign(_edit_json(a, prf(), lambda o: o.update(leaf_index=o["leaf_index"] + 1)), station_key)),
         key),
        ("manifest order id", lambda: Z(_edit_json(a, man, set_("order_id", ORDER_B))), key),
        ("override record dropped", lambda: Z(drop_override(a)), key),
        ("override record dropped, re-signed by an attacker", lambda: Z(_resign(drop_override(a), attacker)), key),
        ("an image removed", lambda: Z(drop(a, lambda n: n == first_image)), key),
        ("an image removed from zip and manifest, re-signed by the station key",
         lambda: Z(_resign(_edit_json(drop(a, lambda n: n == first_image), man, lambda m: [
             e.update(images=[i for i in e["images"] if i["file"] != first_image]) for e in m["records"]]),
             station_key)), key),
        ("records reordered", lambda: Z(_edit_json(a, man, lambda m: m["records"].reverse())), key),
        ("manifest a JSON list", lambda: Z(_edit(a, man, lambda x: b"[]")), key),
        ("manifest not JSON", lambda: Z(_edit(a, man, lambda x: x[:-5])), key),
        ("manifest missing", lambda: Z(drop(a, man)), key),
        ("manifest record entry a string", lambda: Z(_edit_json(a, man, lambda m: m["records"].__setitem__(0, "x"))),
         key),
        ("manifest images an object", lambda: Z(_edit_json(a, man, lambda m: m["records"][0].update(images={}))), key),
        ("manifest record count lowered", lambda: Z(_edit_json(a, man, lambda m: m.update(record_count=1))), key),
        ("manifest unknown format", lambda: Z(_edit_json(a, man, set_("format", "other/9"))), key),
        ("manifest claims format 1", lambda: Z(_edit_json(a, man, set_("format", "inspection-evidence-bundle/1"))),
         key),
        ("manifest nested 100000 deep", lambda: Z(_edit(a, man, lambda x: _nested(100_000))), key),
        ("manifest with NaN", lambda: Z(_edit(a, man, lambda x: x.replace(b'"record_count": ', b'"record_count": NaN, "x": ', 1))),
         key),
        ("another order's record added, re-signed by the station key",
         lambda: Z(_resign(add_other_order(a), station_key)), key),
        ("a record swapped for another order's", lambda: Z(swap_record_with_other_order(a)), key),
        ("manifest.sig removed", lambda: Z(drop(a, lambda n: n == "manifest.sig")), key),
        ("manifest.sig not base64", lambda: Z(_edit_json(a, lambda n: n == "manifest.sig", set_("signature", "!!"))),
         key),
        ("manifest.sig from another bundle", lambda: Z(_edit(a, lambda n: n == "manifest.sig",
                                                            lambda x: dict(b)["manifest.sig"])), key),
        ("manifest.sig a list", lambda: Z(_edit(a, lambda n: n == "manifest.sig", lambda x: b"[]")), key),
        ("head.json tree size", lambda: Z(_edit_json(a, lambda n: n == "head.json",
                                                     lambda o: o.update(tree_size=o["tree_size"] + 5))), key),
        ("head.json removed", lambda: Z(drop(a, lambda n: n == "head.json")), key),
        ("signed head root in the manifest", lambda: Z(_edit_json(a, man, lambda m: m["signed_head"].update(
            root_hash="00" * 32))), key),
        ("an image byte flipped", lambda: Z(_edit(a, lambda n: n == first_image, lambda x: x[:-1] + bytes([x[-1] ^ 1]))),
         key),
        ("an image swapped for another record's", lambda: Z(_edit(a, lambda n: n == first_image, lambda x: other_image)),
         key),
        ("an annotated image altered", lambda: Z(_edit(a, lambda n: n == first_annot, lambda x: other_image)), key),
        ("an annotated image removed", lambda: Z(drop(a, lambda n: n == first_annot)), key),
        ("an unlisted file added", lambda: Z(a + [("notes/agreement.txt", b"the brand pays everything")]), key),
        ("README altered", lambda: Z(_edit(a, lambda n: n == "README.txt", lambda x: b"trust me")), key),
        ("a member named ../../etc/passwd", lambda: Z(a + [("../../etc/passwd", b"root:x:0:0")]), key),
        ("public_key.pem swapped for the attacker's",
         lambda: Z(_edit(a, lambda n: n == "public_key.pem", lambda x: dict(_resign(a, attacker))["public_key.pem"])),
         key),
        ("bundle rebuilt and re-signed by an attacker's key", lambda: Z(attacker_rebuild(a, attacker, first)), key),
        ("bundle rebuilt by an attacker, no trusted key", lambda: Z(attacker_rebuild(a, attacker, first)), []),
        ("untouched bundle, no trusted key", lambda: Z(a), []),
        ("public_key.pem removed, no trusted key", lambda: Z(drop(a, lambda n: n == "public_key.pem")), []),
        ("public_key.pem garbage, no trusted key", lambda: Z(_edit(a, lambda n: n == "public_key.pem",
                                                                  lambda x: b"-----BEGIN PUBLIC KEY-----\nxx\n")), []),
        ("not a zip", lambda: b"this is not a zip file", key),
        ("empty file", lambda: b"", key),
        ("truncated zip", lambda: fx.bundle_a.read_bytes()[: fx.bundle_a.stat().st_size // 2], key),
        ("zip without members", lambda: Z([]), key),
        ("CRC error in a record", lambda: _crc_error(a), key),
        ("zip bomb: an 80 MB member", lambda: Z(a + [("images/bomb.png", bytes(80 * 1024 * 1024))]), key),
        ("zip bomb: 1000-fold ratio", lambda: Z(a + [("images/ratio.png", bytes(20 * 1024 * 1024))]), key),
        ("10001 members", lambda: Z(a + [(f"x/{i}", b"") for i in range(10_001)], zipfile.ZIP_STORED), key),
        ("manifest.json twice", lambda: Z(a + [("manifest.json", dict(b)["manifest.json"])]), key),
        ("an encrypted member", lambda: _patch_method(Z(a), "manifest.json", flag=1), key),
        ("unknown compression method", lambda: _patch_method(Z(a), f"records/{first}.json", method=99), key),
    ]
    return cases


def run_bundle_cases(fx: Fixture, work: Path) -> list[Outcome]:
    work.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (name, make, extra) in enumerate(bundle_cases(fx)):
        path = work / f"bundle-{i:03d}.zip"
        path.write_bytes(make())
        result, code, msg = _invoke(["verify-bundle", str(path), *extra])
        out.append(Outcome("bundle", name, result, code, msg))
        path.unlink()
    return out


# ------------------------------------------------------------------------------------------- database alterations


def _sql(*stmts: str, params: tuple = ()) -> Callable[[Path, Fixture], None]:
    def apply(data: Path, fx: Fixture | None = None) -> None:
        db = sqlite3.connect(data / "station.db")
        for s in stmts:
            db.execute(s, params if "?" in s else ())
        db.commit()
        db.close()
    return apply


def _update(column: str, value, rid_index: int = 1) -> Callable[[Path, Fixture], None]:
    def apply(data: Path, fx: Fixture) -> None:
        rid = (fx.record_ids[ORDER_A] + fx.record_ids[ORDER_B])[rid_index]
        db = sqlite3.connect(data / "station.db")
        db.execute("DROP TRIGGER inspections_no_update")
        db.execute(f"UPDATE inspections SET {column} = ? WHERE record_id = ?", (value, rid))
        db.execute("CREATE TRIGGER inspections_no_update BEFORE UPDATE ON inspections BEGIN SELECT RAISE(ABORT, "
                   "'inspection records are append-only: write an override instead'); END")
        db.commit()
        db.close()
    return apply


def _db(data: Path) -> sqlite3.Connection:
    return sqlite3.connect(data / "station.db")


def _images(data: Path) -> list[tuple[str, str]]:
    with _db(data) as db:
        return db.execute("SELECT sha256, relpath FROM images ORDER BY created_at, sha256").fetchall()


def _flip(path: Path) -> None:
    b = bytearray(path.read_bytes())
    b[len(b) // 2] ^= 1
    path.write_bytes(bytes(b))


def _rollback(n: int, drop_state: bool = False, drop_file: bool = False):
    """Delete the newest ``n`` records with their outbox rows, log entries and heads (and the witnesses)."""
    def apply(data: Path, fx: Fixture) -> None:
        db = _db(data)
        db.executescript("DROP TRIGGER inspections_no_delete; DROP TRIGGER evidence_leaves_no_delete; "
                         "DROP TRIGGER tree_heads_no_delete; DROP TRIGGER inspection_images_no_delete;")
        rids = [r[0] for r in db.execute("SELECT record_id FROM evidence_leaves ORDER BY idx DESC LIMIT ?", (n,))]
        size = db.execute("SELECT COUNT(*) FROM evidence_leaves").fetchone()[0] - n
        for rid in rids:
            for t in ("outbox", "evidence_leaves", "inspection_images", "inspections"):
                db.execute(f"DELETE FROM {t} WHERE record_id=?", (rid,))
        db.execute("DELETE FROM tree_heads WHERE tree_size > ?", (size,))
        if drop_state:
            db.execute("DELETE FROM sync_state WHERE key='platform_head'")
        # Put the triggers back: the store looks untouched.
        for name, table, what in (("inspections_no_delete", "inspections", "DELETE"),
                                  ("evidence_leaves_no_delete", "evidence_leaves", "DELETE"),
                                  ("tree_heads_no_delete", "tree_heads", "DELETE"),
                                  ("inspection_images_no_delete", "inspection_images", "DELETE")):
            db.execute(f"CREATE TRIGGER {name} BEFORE {what} ON {table} BEGIN SELECT RAISE(ABORT, 'x'); END")
        db.commit()
        db.close()
        if drop_file:
            ev.witness_path(data / "keys" / "station_ed25519.pem").unlink()
    return apply


def _replace_with_empty(drop_file: bool = False, zero_bytes: bool = False):
    def apply(data: Path, fx: Fixture) -> None:
        from station.records import StationStore

        for suffix in ("", "-wal", "-shm"):
            (data / f"station.db{suffix}").unlink(missing_ok=True)
        if zero_bytes:
            (data / "station.db").write_bytes(b"")
        else:
            StationStore(data / "station.db").open().close()
        if drop_file:
            ev.witness_path(data / "keys" / "station_ed25519.pem").unlink()
    return apply


def _corrupt_index(data: Path, fx: Fixture) -> None:
    db = _db(data)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name='inspections_order'").fetchone()[0]
    db.close()
    path = data / "station.db"
    raw = bytearray(path.read_bytes())
    off = (root - 1) * page_size
    raw[off + 8:off + page_size] = bytes([0x5A]) * (page_size - 8)  # the page header kept, its cells garbage
    path.write_bytes(bytes(raw))


def _forged_record(sign_with_attacker: bool):
    def apply(data: Path, fx: Fixture) -> None:
        db = _db(data)
        cur = db.execute("SELECT * FROM inspections ORDER BY seq LIMIT 1")
        cols = [d[0] for d in cur.description]
        row = dict(zip(cols, cur.fetchone()))
        row.pop("seq")
        row.update(record_id="forged-0001", order_id="FORGED-1", grade="A", disposition="restock")
        db.execute(f"INSERT INTO inspections({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                   tuple(row.values()))
        if sign_with_attacker:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            k = Ed25519PrivateKey.generate()
            n = db.execute("SELECT COUNT(*) FROM evidence_leaves").fetchone()[0]
            h = ev.leaf_hash(ev.record_leaf_from_db(db, "forged-0001"))
            db.execute("INSERT INTO evidence_leaves(idx, record_id, leaf_hash) VALUES (?,?,?)",
                       (n, "forged-0001", h.hex()))
            root = ev.merkle_root(ev.all_leaves(db)).hex()
            kid = ev.key_id_of(k.public_key())
            sig = base64.b64encode(k.sign(ev.head_message(n + 1, root, "2030-01-01", kid))).decode()
            db.execute("INSERT INTO tree_heads VALUES (?,?,?,?,?)", (n + 1, root, "2030-01-01", kid, sig))
        db.commit()
        db.close()
    return apply


def _rekey(data: Path, fx: Fixture) -> None:
    """The attacker replaces the station key, alters a record and rebuilds the whole log under the new key."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    k = Ed25519PrivateKey.generate()
    key_path = data / "keys" / "station_ed25519.pem"
    key_path.write_bytes(k.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()))
    os.chmod(key_path, 0o600)
    db = _db(data)
    db.executescript("DROP TRIGGER inspections_no_update; DROP TRIGGER evidence_leaves_no_update; "
                     "DROP TRIGGER evidence_leaves_no_delete; DROP TRIGGER tree_heads_no_delete;")
    db.execute("UPDATE inspections SET grade='A' WHERE record_id=?", (fx.record_ids[ORDER_A][0],))
    ids = [r[0] for r in db.execute("SELECT record_id FROM evidence_leaves ORDER BY idx")]
    db.execute("DELETE FROM evidence_leaves")
    db.execute("DELETE FROM tree_heads")
    kid = ev.key_id_of(k.public_key())
    f = ev.Frontier()
    for i, rid in enumerate(ids):
        h = ev.leaf_hash(ev.record_leaf_from_db(db, rid))
        db.execute("INSERT INTO evidence_leaves VALUES (?,?,?)", (i, rid, h.hex()))
        f.push(h)
        root = f.root().hex()
        sig = base64.b64encode(k.sign(ev.head_message(f.size, root, "2030-01-01", kid))).decode()
        db.execute("INSERT INTO tree_heads VALUES (?,?,?,?,?)", (f.size, root, "2030-01-01", kid, sig))
    db.execute("DELETE FROM sync_state WHERE key='platform_head'")
    for name, table, what in (("inspections_no_update", "inspections", "UPDATE"),
                              ("evidence_leaves_no_update", "evidence_leaves", "UPDATE"),
                              ("evidence_leaves_no_delete", "evidence_leaves", "DELETE"),
                              ("tree_heads_no_delete", "tree_heads", "DELETE")):
        db.execute(f"CREATE TRIGGER {name} BEFORE {what} ON {table} BEGIN SELECT RAISE(ABORT, 'x'); END")
    db.commit()
    db.close()


def database_cases(fx: Fixture) -> list[tuple[str, Callable[[Path, Fixture], None], list[str]]]:
    def plain(fn):
        return lambda data, fx: fn(data)

    def img(i=0):
        return lambda data: data / "images" / _images(data)[i][1]

    def pruned_edit(data: Path, fx: Fixture) -> None:
        sha, rel = _images(data)[0]
        with _db(data) as db:
            db.execute("UPDATE images SET pruned_at='2030-01-01', uploaded_at='2030-01-01' WHERE sha256=?", (sha,))
        _flip(data / "images" / rel)

    def pruned_gone(data: Path, fx: Fixture) -> None:
        sha, rel = _images(data)[0]
        with _db(data) as db:
            db.execute("UPDATE images SET pruned_at='2030-01-01' WHERE sha256=?", (sha,))
        (data / "images" / rel).unlink()

    def image_link(data: Path, fx: Fixture) -> None:
        (a_sha, a_rel), (b_sha, b_rel) = _images(data)[:2]
        p = data / "images" / a_rel
        p.unlink()
        p.symlink_to(data / "images" / b_rel)

    def relpath_dev_zero(data: Path, fx: Fixture) -> None:
        with _db(data) as db:
            db.execute("UPDATE images SET relpath='/dev/zero' WHERE sha256=?", (_images(data)[0][0],))

    def image_row_renamed(data: Path, fx: Fixture) -> None:
        with _db(data) as db:
            db.execute("PRAGMA foreign_keys=OFF")
            db.execute("UPDATE images SET sha256=? WHERE sha256=?", ("ab" * 32, _images(data)[0][0]))

    def link_swapped(data: Path, fx: Fixture) -> None:
        shas = [s for s, _ in _images(data)]
        with _db(data) as db:
            db.execute("DROP TRIGGER inspection_images_no_update")
            rid = fx.record_ids[ORDER_A][1]
            old = db.execute("SELECT sha256 FROM inspection_images WHERE record_id=? LIMIT 1", (rid,)).fetchone()[0]
            new = next(s for s in shas if s != old)
            db.execute("UPDATE inspection_images SET sha256=? WHERE record_id=? AND sha256=?", (new, rid, old))

    def leaf_rewritten(data: Path, fx: Fixture) -> None:
        _update("grade", "A", 0)(data, fx)
        with _db(data) as db:
            db.execute("DROP TRIGGER evidence_leaves_no_update")
            rid = fx.record_ids[ORDER_A][0]
            db.execute("UPDATE evidence_leaves SET leaf_hash=? WHERE record_id=?",
                       (ev.leaf_hash(ev.record_leaf_from_db(db, rid)).hex(), rid))

    def leaves_swapped(data: Path, fx: Fixture) -> None:
        with _db(data) as db:
            db.execute("DROP TRIGGER evidence_leaves_no_update")
            db.execute("UPDATE evidence_leaves SET idx = CASE idx WHEN 0 THEN 1000 ELSE idx END")
            db.execute("UPDATE evidence_leaves SET idx = 0 WHERE idx = 1")
            db.execute("UPDATE evidence_leaves SET idx = 1 WHERE idx = 1000")

    def middle_deleted(data: Path, fx: Fixture) -> None:
        with _db(data) as db:
            db.executescript("DROP TRIGGER inspections_no_delete; DROP TRIGGER evidence_leaves_no_delete; "
                             "DROP TRIGGER inspection_images_no_delete;")
            rid = fx.record_ids[ORDER_A][1]
            for t in ("outbox", "evidence_leaves", "inspection_images", "inspections"):
                db.execute(f"DELETE FROM {t} WHERE record_id=?", (rid,))

    def witness_garbage(data: Path, fx: Fixture) -> None:
        ev.witness_path(data / "keys" / "station_ed25519.pem").write_text("{not json")

    def truncate(data: Path, fx: Fixture) -> None:
        p = data / "station.db"
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])

    def garbage(data: Path, fx: Fixture) -> None:
        (data / "station.db").write_bytes(os.urandom(64 * 1024))

    heads = ["--head", str(fx.platform_heads)]
    return [
        ("inspection grade", _update("grade", "A"), []),
        ("inspection disposition", _update("disposition", "restock"), []),
        ("inspection confidence", _update("confidence", 0.99), []),
        ("inspection decision_json", _update("decision_json", '{"grade": "A"}'), []),
        ("inspection findings_json", _update("findings_json", "[]"), []),
        ("inspection created_at", _update("created_at", "2020-01-01T00:00:00.000+00:00"), []),
        ("inspection operator", _update("operator", "someone-else"), []),
        ("inspection streamer", _update("streamer", "streamer-2"), []),
        ("inspection order id", _update("order_id", ORDER_B), []),
        ("inspection sku", _update("sku", "OTHER"), []),
        ("inspection brand", _update("brand", "brand-2"), []),
        ("override reason", _update("override_reason", "none", 2), []),
        ("override target", _update("overrides", None, 2), []),
        ("inspection unit code", _update("unit_code", "U-99"), []),
        ("an image byte flipped", lambda data, fx: _flip(img()(data)), []),
        ("an image marked pruned, then edited", pruned_edit, []),
        ("an image marked pruned and deleted, never uploaded", pruned_gone, []),
        ("an image file swapped for a link", image_link, []),
        ("an image's file name pointed at /dev/zero", relpath_dev_zero, []),
        ("an image row renamed", image_row_renamed, []),
        ("a record's image link swapped", link_swapped, []),
        ("a record's image link deleted", _sql("DROP TRIGGER inspection_images_no_delete",
                                               "DELETE FROM inspection_images WHERE rowid = 1"), []),
        ("a leaf rewritten to match an altered record", leaf_rewritten, []),
        ("two leaves swapped", leaves_swapped, []),
        ("a leaf renamed", _sql("DROP TRIGGER evidence_leaves_no_update",
                                "UPDATE evidence_leaves SET record_id = 'nobody' WHERE idx = 0"), []),
        ("a head's signature altered", _sql("DROP TRIGGER tree_heads_no_update",
                                            "UPDATE tree_heads SET signature = 'AAAA' || substr(signature, 5) "
                                            "WHERE tree_size = 2"), []),
        ("a head's root altered", _sql("DROP TRIGGER tree_heads_no_update",
                                       "UPDATE tree_heads SET root_hash = '" + "0" * 64 + "' WHERE tree_size = 1"), []),
        ("a forged record inserted", _forged_record(False), []),
        ("a forged record logged under an attacker's head", _forged_record(True), []),
        ("station key replaced and the log rebuilt", _rekey, []),
        ("station key replaced and the log rebuilt, checked against the platform", _rekey,
         ["--public-key", str(fx.key_pem)] + heads),
        ("a trigger dropped", _sql("DROP TRIGGER inspections_no_update"), []),
        ("a record in the middle deleted with its leaf", middle_deleted, []),
        ("rollback: newest record, leaf and head deleted", _rollback(1), []),
        ("rollback: and the sync state's head", _rollback(1, drop_state=True), []),
        ("rollback: and the witness file, checked against the platform", _rollback(2, True, True), heads),
        ("database replaced by an empty one", _replace_with_empty(), []),
        ("database replaced by an empty one, checked against the platform", _replace_with_empty(True), heads),
        ("database replaced by an empty file", _replace_with_empty(zero_bytes=True), []),
        ("an index page corrupted", _corrupt_index, []),
        ("database truncated", truncate, []),
        ("database replaced by random bytes", garbage, []),
        ("witness file garbage", witness_garbage, []),
    ]


# Not in the suite, because nothing on the station can catch it: every trace of the newest records removed,
# the station's witness copies included, and no platform head to compare with. `station verify` then passes
# with a note that a rollback cannot be ruled out without --head (tests/test_evidence_bundle_integrity.py).
EXPECTED_MISSES: set[str] = set()


def run_database_cases(fx: Fixture, work: Path) -> list[Outcome]:
    work.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (name, alter, extra) in enumerate(database_cases(fx)):
        data = work / f"db-{i:03d}"
        shutil.copytree(fx.data, data, symlinks=True)
        alter(data, fx)
        result, code, msg = _invoke(["verify", "--data-dir", str(data), *extra])
        out.append(Outcome("database", name, result, code, msg))
        shutil.rmtree(data, ignore_errors=True)
    return out


def controls(fx: Fixture) -> list[Outcome]:
    out = []
    for kind, args in (("bundle", ["verify-bundle", str(fx.bundle_a), "--public-key", str(fx.key_pem)]),
                       ("database", ["verify", "--data-dir", str(fx.data), "--head", str(fx.platform_heads)])):
        result, code, msg = _invoke(args)
        out.append(Outcome(kind, "control: untouched", result, code, msg))
    return out


def summarize(outcomes: list[Outcome]) -> dict:
    res: dict = {}
    for kind in ("bundle", "database"):
        rows = [o for o in outcomes if o.kind == kind]
        res[kind] = {"tried": len(rows), **{k: sum(o.result == k for o in rows)
                                            for k in ("caught", "refused", "missed", "traceback")},
                     "expected_misses": sorted(o.name for o in rows if o.result == "missed"
                                               and o.name in EXPECTED_MISSES),
                     "unexpected": [{"name": o.name, "result": o.result, "exit": o.exit_code, "message": o.message}
                                    for o in rows if o.result in ("missed", "traceback")
                                    and o.name not in EXPECTED_MISSES]}
    return res


def run_suite(work: Path) -> dict:
    """Build the fixture under ``work``, run the controls and every alteration; the summary per kind."""
    work = Path(work)
    fx = make_fixture(work / "fixture")
    ctl = controls(fx)
    outcomes = run_bundle_cases(fx, work / "bundles") + run_database_cases(fx, work / "databases")
    summary = summarize(outcomes)
    summary["controls_ok"] = all(o.result == "missed" for o in ctl)  # exit 0: the untouched data verifies
    summary["controls"] = [{"kind": o.kind, "exit": o.exit_code, "message": o.message} for o in ctl]
    summary["cases"] = [{"kind": o.kind, "name": o.name, "result": o.result, "exit": o.exit_code,
                         "message": o.message.splitlines()[0][:160] if o.message else ""} for o in outcomes]
    return summary
