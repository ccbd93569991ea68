"""Bundle alterations: every way an attacker would change an evidence bundle (members, JSON, signatures, the
zip container itself), each run through `station verify-bundle`."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
import zipfile
from pathlib import Path
from typing import Callable

from station import evidence as ev
from station.tamper.fixture import ORDER_A, ORDER_B, Fixture, Outcome, invoke_cli


def _members(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def zip_bytes(members: list[tuple[str, bytes]], compression=zipfile.ZIP_DEFLATED) -> bytes:
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


def edit_json(members, name_pred, fn):
    def apply(b: bytes) -> bytes:
        obj = _jload(b)
        fn(obj)  # edits in place; what it returns is ignored
        return _jdump(obj)

    return _edit(members, name_pred, apply)


def resign(members, private_key, new_head: ev.SignedTreeHead | None = None):
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
    return resign(list(files.items()), attacker, head)


def patch_method(raw: bytes, name: str, flag: int | None = None, method: int | None = None) -> bytes:
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


def crc_error(members) -> bytes:
    raw = bytearray(zip_bytes(members, zipfile.ZIP_STORED))
    i = raw.find(b'"record_id"')  # inside a stored record: same size, wrong CRC
    raw[i + 2] ^= 0x20
    return bytes(raw)


def nested_json(depth: int) -> bytes:
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
        return edit_json(ms, man, f)

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
        return edit_json(ms, man, f)

    def swap_record_with_other_order(ms):
        other = dict(b)
        return _edit(ms, rec(), lambda _: other[f"records/{idb[0]}.json"])

    other_image = next(x for n, x in b if n.startswith("images/"))
    first_image = next(n for n, _ in a if n.startswith("images/"))
    first_annot = next(n for n, _ in a if n.startswith("annotated/"))

    key = ["--public-key", str(fx.key_pem)]
    Z = zip_bytes  # noqa: N806
    cases: list[tuple[str, Callable[[], bytes], list[str]]] = [
        ("decision grade", lambda: Z(edit_json(a, dec(), set_("grade", "A"))), key),
        ("decision disposition", lambda: Z(edit_json(a, dec(), set_("disposition", "restock"))), key),
        ("decision rule ids", lambda: Z(edit_json(a, dec(), set_("rule_ids", ["G-OK"]))), key),
        ("decision liability share", lambda: Z(edit_json(a, dec(), lambda o: liability(o, "share", 0.0))), key),
        ("decision liability party", lambda: Z(edit_json(a, dec(), lambda o: liability(o, "party", "brand"))),
         key),
        ("decision findings score", lambda: Z(edit_json(a, dec(), lambda o: o["findings"][0].update(score=0.01))),
         key),
        ("decision findings removed", lambda: Z(edit_json(a, dec(), set_("findings", []))), key),
        ("decision reasons", lambda: Z(edit_json(a, dec(), set_("reasons", ["as new"]))), key),
        ("decision operator", lambda: Z(edit_json(a, dec(), set_("operator", "someone-else"))), key),
        ("decision override reason", lambda: Z(edit_json(a, dec(override), set_("override_reason", "x"))), key),
        ("decision sku", lambda: Z(edit_json(a, dec(), set_("sku", "OTHER-SKU"))), key),
        ("decision order id", lambda: Z(edit_json(a, dec(), set_("order_id", ORDER_B))), key),
        ("decision extra field", lambda: Z(edit_json(a, dec(), set_("refund", 1000))), key),
        ("decision liability share, manifest re-signed by the station key",
         lambda: Z(resign(edit_json(a, dec(), lambda o: liability(o, "share", 0.0)), station_key)), key),
        ("decision operator, manifest re-signed by the station key",
         lambda: Z(resign(edit_json(a, dec(), set_("operator", "x")), station_key)), key),
        ("decision findings, manifest re-signed by the station key",
         lambda: Z(resign(edit_json(a, dec(), set_("findings", [])), station_key)), key),
        ("decision sku, manifest re-signed by the station key",
         lambda: Z(resign(edit_json(a, dec(), set_("sku", "X")), station_key)), key),
        ("record grade", lambda: Z(_edit(a, rec(), lambda x: x.replace(b'"grade":"C"', b'"grade":"A"'))), key),
        ("record order id", lambda: Z(_edit(a, rec(), lambda x: x.replace(ORDER_A.encode(), ORDER_B.encode()))),
         key),
        ("record trailing space", lambda: Z(_edit(a, rec(), lambda x: x + b" ")), key),
        ("record grade, manifest re-signed by the station key",
         lambda: Z(resign(_edit(a, rec(), lambda x: x.replace(b'"grade":"C"', b'"grade":"A"')), station_key)), key),
        ("proof leaf_index a string", lambda: Z(edit_json(a, prf(), set_("leaf_index", "zero"))), key),
        ("proof leaf_index a float", lambda: Z(edit_json(a, prf(), set_("leaf_index", 0.5))), key),
        ("proof leaf_index null", lambda: Z(edit_json(a, prf(), set_("leaf_index", None))), key),
        ("proof leaf_index true", lambda: Z(edit_json(a, prf(), set_("leaf_index", True))), key),
        ("proof leaf_index huge", lambda: Z(edit_json(a, prf(), set_("leaf_index", 10 ** 30))), key),
        ("proof audit path not hex", lambda: Z(edit_json(a, prf(), lambda o: o["audit_path"].__setitem__(0, "zz" * 32))),
         key),
        ("proof audit path short hash", lambda: Z(edit_json(a, prf(), lambda o: o["audit_path"].__setitem__(0, "ab"))),
         key),
        ("proof audit path a node dropped", lambda: Z(edit_json(a, prf(), lambda o: o["audit_path"].pop())), key),
        ("proof audit path an object", lambda: Z(edit_json(a, prf(), set_("audit_path", {"0": "ab"}))), key),
        ("proof a JSON list", lambda: Z(_edit(a, prf(), lambda x: b"[1, 2, 3]")), key),
        ("proof not JSON", lambda: Z(_edit(a, prf(), lambda x: b"\xff\xfe not json")), key),
        ("proof tree size", lambda: Z(edit_json(a, prf(), lambda o: o.update(tree_size=o["tree_size"] + 1))), key),
        ("proof of another leaf, re-signed by the station key",
         lambda: Z(resign(edit_json(a, prf(), lambda o: o.update(leaf_index=o["leaf_index"] + 1)), station_key)),
         key),
        ("manifest order id", lambda: Z(edit_json(a, man, set_("order_id", ORDER_B))), key),
        ("override record dropped", lambda: Z(drop_override(a)), key),
        ("override record dropped, re-signed by an attacker", lambda: Z(resign(drop_override(a), attacker)), key),
        ("an image removed", lambda: Z(drop(a, lambda n: n == first_image)), key),
        ("an image removed from zip and manifest, re-signed by the station key",
         lambda: Z(resign(edit_json(drop(a, lambda n: n == first_image), man, lambda m: [
             e.update(images=[i for i in e["images"] if i["file"] != first_image]) for e in m["records"]]),
             station_key)), key),
        ("records reordered", lambda: Z(edit_json(a, man, lambda m: m["records"].reverse())), key),
        ("manifest a JSON list", lambda: Z(_edit(a, man, lambda x: b"[]")), key),
        ("manifest not JSON", lambda: Z(_edit(a, man, lambda x: x[:-5])), key),
        ("manifest missing", lambda: Z(drop(a, man)), key),
        ("manifest record entry a string", lambda: Z(edit_json(a, man, lambda m: m["records"].__setitem__(0, "x"))),
         key),
        ("manifest images an object", lambda: Z(edit_json(a, man, lambda m: m["records"][0].update(images={}))), key),
        ("manifest record count lowered", lambda: Z(edit_json(a, man, lambda m: m.update(record_count=1))), key),
        ("manifest unknown format", lambda: Z(edit_json(a, man, set_("format", "other/9"))), key),
        ("manifest claims format 1", lambda: Z(edit_json(a, man, set_("format", "inspection-evidence-bundle/1"))),
         key),
        ("manifest nested 100000 deep", lambda: Z(_edit(a, man, lambda x: nested_json(100_000))), key),
        ("manifest with NaN", lambda: Z(_edit(a, man, lambda x: x.replace(b'"record_count": ', b'"record_count": NaN, "x": ', 1))),
         key),
        ("another order's record added, re-signed by the station key",
         lambda: Z(resign(add_other_order(a), station_key)), key),
        ("a record swapped for another order's", lambda: Z(swap_record_with_other_order(a)), key),
        ("manifest.sig removed", lambda: Z(drop(a, lambda n: n == "manifest.sig")), key),
        ("manifest.sig not base64", lambda: Z(edit_json(a, lambda n: n == "manifest.sig", set_("signature", "!!"))),
         key),
        ("manifest.sig from another bundle", lambda: Z(_edit(a, lambda n: n == "manifest.sig",
                                                            lambda x: dict(b)["manifest.sig"])), key),
        ("manifest.sig a list", lambda: Z(_edit(a, lambda n: n == "manifest.sig", lambda x: b"[]")), key),
        ("head.json tree size", lambda: Z(edit_json(a, lambda n: n == "head.json",
                                                     lambda o: o.update(tree_size=o["tree_size"] + 5))), key),
        ("head.json removed", lambda: Z(drop(a, lambda n: n == "head.json")), key),
        ("signed head root in the manifest", lambda: Z(edit_json(a, man, lambda m: m["signed_head"].update(
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
         lambda: Z(_edit(a, lambda n: n == "public_key.pem", lambda x: dict(resign(a, attacker))["public_key.pem"])),
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
        ("CRC error in a record", lambda: crc_error(a), key),
        ("zip bomb: an 80 MB member", lambda: Z(a + [("images/bomb.png", bytes(80 * 1024 * 1024))]), key),
        ("zip bomb: 1000-fold ratio", lambda: Z(a + [("images/ratio.png", bytes(20 * 1024 * 1024))]), key),
        ("10001 members", lambda: Z(a + [(f"x/{i}", b"") for i in range(10_001)], zipfile.ZIP_STORED), key),
        ("manifest.json twice", lambda: Z(a + [("manifest.json", dict(b)["manifest.json"])]), key),
        ("an encrypted member", lambda: patch_method(Z(a), "manifest.json", flag=1), key),
        ("unknown compression method", lambda: patch_method(Z(a), f"records/{first}.json", method=99), key),
    ]
    return cases


def run_bundle_cases(fx: Fixture, work: Path) -> list[Outcome]:
    work.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (name, make, extra) in enumerate(bundle_cases(fx)):
        path = work / f"bundle-{i:03d}.zip"
        path.write_bytes(make())
        result, code, msg = invoke_cli(["verify-bundle", str(path), *extra])
        out.append(Outcome("bundle", name, result, code, msg))
        path.unlink()
    return out
