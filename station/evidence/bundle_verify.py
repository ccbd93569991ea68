"""Checking an evidence bundle on its own: the manifest signature, every file's hash, the records'
inclusion proofs against the signed head, and the derived decision files."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from station.evidence.bundle import (
    BUNDLE_FORMAT, BundleLimits, BundleZip, MANIFEST_CONTEXT, OLD_BUNDLE_FORMATS, SIGNED_PARTS, decision_view,
)
from station.evidence.merkle import EvidenceError, leaf_hash, load_json, verify_inclusion
from station.evidence.signing import SignedTreeHead, ed25519_primitives, is_hex, is_int, key_id_of, load_public_key


def _manifest_structure(m: dict) -> None:
    """Types of a format-2 manifest; a malformed one makes the bundle unusable (EvidenceError)."""
    def bad(what: str):
        raise EvidenceError(f"not an evidence bundle: manifest.json {what}")

    if not isinstance(m.get("order_id"), str):
        bad("has no order_id string")
    if not isinstance(m.get("records"), list):
        bad("has no records array")
    if not isinstance(m.get("files"), dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                       for k, v in m["files"].items()):
        bad("has no files object of name -> SHA-256")
    if not is_int(m.get("record_count")):
        bad("has no integer record_count")
    for i, e in enumerate(m["records"]):
        if not isinstance(e, dict):
            bad(f"records[{i}] is not an object")
        if not isinstance(e.get("record_id"), str) or not is_int(e.get("leaf_index")):
            bad(f"records[{i}] needs a record_id string and an integer leaf_index")
        for k in ("record", "proof", "decision"):
            if not isinstance(e.get(k), str):
                bad(f"records[{i}].{k} is not a file name")
        for k in ("images", "annotated", "missing_images"):
            if not isinstance(e.get(k), list):
                bad(f"records[{i}].{k} is not an array")
        for im in e["images"]:
            if not isinstance(im, dict) or not all(isinstance(im.get(k), str) for k in ("view", "sha256", "file")):
                bad(f"records[{i}].images holds an entry without view, sha256 and file")
        if not all(isinstance(a, str) for a in e["annotated"] + e["missing_images"]):
            bad(f"records[{i}] lists a non-string file or hash")


def _parse_proof(data: bytes):
    """(leaf_index, tree_size, audit path) or an error message."""
    try:
        proof = load_json(data, "the proof")
    except EvidenceError as exc:
        return str(exc)
    idx, size, path = proof.get("leaf_index"), proof.get("tree_size"), proof.get("audit_path")
    if not is_int(idx) or not is_int(size):
        return "leaf_index and tree_size must be integers"
    if not isinstance(path, list) or len(path) > 64 or not all(is_hex(h, 64) for h in path):
        return "audit_path must be a list of at most 64 hashes of 64 hex digits"
    if set(proof) != {"leaf_index", "tree_size", "leaf_hash", "audit_path"} or not is_hex(proof["leaf_hash"], 64):
        return "a proof holds leaf_index, tree_size, leaf_hash and audit_path, nothing else"
    return idx, size, [bytes.fromhex(h) for h in path], proof["leaf_hash"]


def verify_bundle(path: Path, public_pem: bytes | None = None, limits: BundleLimits = BundleLimits()) -> dict:
    """Check a bundle with no access to the station: the manifest's signature, every file against it, the signed
    head, each record's inclusion, order and completeness, decision files re-derived, image hashes.

    ``status``: "verified" (only with ``public_pem``, a key obtained independently), "unverified" (every check
    passed, but only against the key inside the bundle: anyone can make such a bundle) or "failed".
    ``ok`` is True only for "verified". A bundle that cannot be read at all raises EvidenceError."""
    InvalidSignature, _, _, _ = ed25519_primitives()
    path = Path(path)
    problems: list[str] = []

    def problem(msg: str) -> None:
        if len(problems) < 200:
            problems.append(msg)

    with BundleZip(path, limits) as bz:
        if "manifest.json" not in bz.names:
            raise EvidenceError(f"{path} is not an evidence bundle: it has no manifest.json")
        mbytes = bz.read("manifest.json")
        manifest = load_json(mbytes, "manifest.json")
        fmt = manifest.get("format")
        if fmt in OLD_BUNDLE_FORMATS:
            return {"ok": False, "status": "failed", "verified": False, "format": fmt,
                    "order_id": manifest.get("order_id") if isinstance(manifest.get("order_id"), str) else None,
                    "records": 0, "images_checked": 0, "files_checked": 0, "tree_size": None, "root_hash": None,
                    "key_id": None, "key_source": "given" if public_pem is not None else "bundled",
                    "problems": [f"bundle format {fmt!r} has no signed manifest: its decision files and its "
                                 f"completeness cannot be checked; export the order again with `station evidence`"]}
        if fmt != BUNDLE_FORMAT:
            raise EvidenceError(f"{path} is not an evidence bundle this station can check (format {str(fmt)[:60]!r})")
        # The key: one given by the caller is trusted; the bundle's own key only shows the bundle is consistent.
        if public_pem is not None:
            key, key_source = load_public_key(public_pem), "given"
        else:
            if "public_key.pem" not in bz.names:
                raise EvidenceError("the bundle holds no public_key.pem and no --public-key was given: nothing to "
                                    "check its signatures with; get the station's key (`station key export` on the "
                                    "station) and pass --public-key")
            key, key_source = load_public_key(bz.read("public_key.pem")), "bundled"
        kid = key_id_of(key)
        # The manifest's signature, over its exact bytes.
        if "manifest.sig" not in bz.names:
            problem("manifest.sig is missing: the manifest is not signed")
        else:
            try:
                sig = load_json(bz.read("manifest.sig"), "manifest.sig")
                raw_sig = base64.b64decode(sig.get("signature") if isinstance(sig.get("signature"), str) else "",
                                           validate=True)
                key.verify(raw_sig, MANIFEST_CONTEXT + mbytes)
            except (EvidenceError, InvalidSignature, ValueError, TypeError):
                problem(f"the manifest's signature does not verify with the {key_source} key (key {kid}): the "
                        f"manifest was altered or signed by someone else")
        _manifest_structure(manifest)
        order_id = manifest["order_id"]
        head = SignedTreeHead.from_json(manifest.get("signed_head"))
        if not head.verify(key):
            problem(f"signed head (size {head.tree_size}) does not verify with the {key_source} key (key {kid})")
        try:
            if SignedTreeHead.from_json(load_json(bz.read("head.json"), "head.json")) != head:
                problem("head.json differs from the head the manifest names")
        except EvidenceError as exc:
            problem(f"head.json: {exc}")
        root = bytes.fromhex(head.root_hash)
        # Every file either listed in the signed manifest with its hash, or refused.
        listed: dict[str, str] = manifest["files"]
        content: dict[str, bytes] = {}
        for name in sorted(bz.names - set(SIGNED_PARTS)):
            if name not in listed:
                problem(f"{name} is not covered by the signed manifest")
                continue
            try:
                content[name] = bz.read(name)
            except EvidenceError as exc:
                problem(str(exc))
                continue
            if hashlib.sha256(content[name]).hexdigest() != listed[name]:
                problem(f"{name} was altered: its hash differs from the signed manifest")
        for name in sorted(set(listed) - bz.names):
            problem(f"{name} is listed in the signed manifest but missing from the bundle")
        if key_source == "given" and content.get("public_key.pem") is not None:
            try:
                if key_id_of(load_public_key(content["public_key.pem"])) != kid:
                    problem("public_key.pem in the bundle is not the given key")
            except EvidenceError as exc:
                problem(f"public_key.pem: {exc}")
        # Records: included in the head, about this order, complete, decision files re-derived.
        n_images = 0
        seen: set[str] = set()
        last_idx = -1
        station_ids = set()
        for entry in manifest["records"]:
            rid = entry["record_id"]
            if rid in seen:
                problem(f"record {rid} is listed twice")
                continue
            seen.add(rid)
            if entry["leaf_index"] <= last_idx:
                problem(f"record {rid}: records are not in log order")
            last_idx = max(last_idx, entry["leaf_index"])
            data = content.get(entry["record"])
            if data is None:
                problem(f"record {rid}: {entry['record']} is missing or unreadable")
                continue
            try:
                rec = load_json(data, entry["record"])
            except EvidenceError as exc:
                problem(f"record {rid}: {exc}")
                continue
            pdata = content.get(entry["proof"])
            parsed = _parse_proof(pdata) if pdata is not None else f"{entry['proof']} is missing or unreadable"
            if isinstance(parsed, str):
                problem(f"record {rid}: not included in the signed head ({parsed})")
            else:
                idx, size, nodes, claimed = parsed
                if size != head.tree_size or idx != entry["leaf_index"] or claimed != leaf_hash(data).hex() or \
                        not verify_inclusion(idx, head.tree_size, leaf_hash(data), nodes, root):
                    problem(f"record {rid}: not included in the signed head (altered record or proof)")
            if rec.get("record_id") != rid:
                problem(f"record {rid}: the signed record names {str(rec.get('record_id'))[:80]}")
            if rec.get("order_id") != order_id:
                problem(f"record {rid} belongs to order {str(rec.get('order_id'))[:80]!r}, not to {order_id!r}")
            station_ids.add(str(rec.get("station_id")))
            over = rec.get("overrides")
            if over is not None and (not isinstance(over, str) or over not in seen):
                problem(f"record {rid} overrides {str(over)[:80]}, which is not in the bundle before it")
            dname = entry["decision"]
            ddata = content.get(dname)
            if ddata is None:
                problem(f"record {rid}: {dname} is missing or unreadable")
            else:
                try:
                    d = load_json(ddata, dname)
                except EvidenceError as exc:
                    problem(f"record {rid}: {exc}")
                else:
                    want = decision_view(rec)
                    diff = sorted(k for k in set(want) | set(d) if d.get(k, KeyError) != want.get(k, KeyError))
                    if diff:
                        problem(f"record {rid}: {dname} differs from the signed record ({', '.join(diff[:8])})")
            signed = rec.get("images") if isinstance(rec.get("images"), list) else []
            signed_pairs = [(im.get("view"), im.get("sha256")) for im in signed
                            if isinstance(im, dict) and isinstance(im.get("view"), str)
                            and isinstance(im.get("sha256"), str)]
            signed_shas = {s for _, s in signed_pairs}
            bundled_shas = {im["sha256"] for im in entry["images"]} | set(entry["missing_images"])
            for sha in sorted(signed_shas - bundled_shas):
                problem(f"record {rid}: image {sha} of the signed record is neither in the bundle nor listed as "
                        f"pruned")
            for sha in sorted(bundled_shas - signed_shas):
                problem(f"record {rid}: image {sha} is not in the signed record")
            for im in entry["images"]:
                if (im["view"], im["sha256"]) not in signed_pairs:
                    if im["sha256"] in signed_shas:
                        problem(f"record {rid}: image {im['sha256']} is listed under view {im['view']!r}, "
                                f"which the signed record does not give it")
                    continue
                raw = content.get(im["file"])
                if raw is None:
                    problem(f"record {rid}: image file {im['file']} missing")
                    continue
                n_images += 1
                if hashlib.sha256(raw).hexdigest() != im["sha256"]:
                    problem(f"record {rid}: image {im['file']} was altered")
            views = {v for v, _ in signed_pairs}
            for aname in entry["annotated"]:
                if aname not in content:
                    problem(f"record {rid}: annotated image {aname} missing")
                elif not any(aname == f"annotated/{rid}-{v}.png" for v in views):
                    problem(f"record {rid}: {aname} is not an annotated view of this record")
        if manifest["record_count"] != len(manifest["records"]):
            problem(f"the manifest lists {len(manifest['records'])} record(s) but says the order has "
                    f"{manifest['record_count']}: the bundle is incomplete")
        if not manifest["records"]:
            problem("the bundle holds no records")
        if len(station_ids) > 1:
            problem(f"the records come from {len(station_ids)} stations")
        elif station_ids and manifest.get("station_id") not in station_ids:
            problem(f"the manifest names station {str(manifest.get('station_id'))[:80]!r}, the records another")
        for k, want in (("complete_up_to", head.tree_size), ("key_id", head.key_id), ("head", "head.json"),
                        ("public_key", "public_key.pem")):
            if manifest.get(k) != want:
                problem(f"the manifest's {k} is {str(manifest.get(k))[:80]!r}, not {want!r}")
        if not isinstance(manifest.get("exported_at"), str):
            problem("the manifest has no export time")
        known_keys = {"format", "order_id", "station_id", "exported_at", "key_id", "head", "signed_head",
                      "public_key", "complete_up_to", "record_count", "records", "files"}
        for k in sorted(set(manifest) - known_keys)[:5]:
            problem(f"the manifest holds an unknown field {k[:80]!r}")
        entry_keys = {"record_id", "leaf_index", "record", "proof", "decision", "images", "annotated",
                      "missing_images"}
        for e in manifest["records"]:
            for k in sorted(set(e) - entry_keys)[:5]:
                problem(f"record {e['record_id']}: the manifest holds an unknown field {k[:80]!r}")
            for name, want in (("record", "records"), ("proof", "proofs"), ("decision", "decision")):
                if e[name] != f"{want}/{e['record_id']}.json":
                    problem(f"record {e['record_id']}: its {name} file is named {e[name][:80]!r}")
    status = "failed" if problems else ("verified" if key_source == "given" else "unverified")
    return {"ok": status == "verified", "status": status, "verified": status == "verified", "format": fmt,
            "order_id": order_id, "records": len(manifest["records"]), "images_checked": n_images,
            "images_pruned": sum(len(e["missing_images"]) for e in manifest["records"]),
            "files_checked": len(content), "tree_size": head.tree_size, "root_hash": head.root_hash,
            "head_signed_at": head.signed_at, "exported_at": manifest.get("exported_at"),
            "key_id": head.key_id, "key_source": key_source, "problems": problems}
