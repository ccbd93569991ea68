"""Evidence bundles (format 2): one order's signed, self-checking zip, and how it is built."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from station.evidence.log import all_leaves, latest_head, record_leaf_from_db
from station.evidence.merkle import EvidenceError, inclusion_proof, leaf_hash, merkle_root
from station.evidence.signing import StationKey
from station.evidence.witness import utc_now


# ------------------------------------------------------------------------------------------- bundles
#
# Format 2: every file of the bundle is listed with its SHA-256 in manifest.json, and manifest.sig is the
# station's Ed25519 signature over MANIFEST_CONTEXT + the exact bytes of manifest.json. The manifest names the
# order, the signed head, and every record of the order among the head's leaves (the station's signed statement
# that the bundle is complete up to that head). records/ are the exact logged bytes (inclusion proofs in
# proofs/ against the head); decision/ files are derived from the records and re-derived by the verifier;
# images/ are named by the SHA-256 the signed records list; annotated/ images are derived and covered by the
# manifest signature.

BUNDLE_FORMAT = "inspection-evidence-bundle/2"
OLD_BUNDLE_FORMATS = ("inspection-evidence-bundle/1",)
MANIFEST_CONTEXT = b"inspection-station evidence bundle v2\n"
SIGNED_PARTS = ("manifest.json", "manifest.sig")


@dataclass(frozen=True, slots=True)
class BundleLimits:
    """What verify-bundle reads at most: a zip bomb or a zip of a million members is refused before it is read."""

    max_file_bytes: int = 2 * 1024 ** 3
    max_members: int = 10_000
    max_member_bytes: int = 64 * 1024 ** 2
    max_total_bytes: int = 1024 ** 3
    max_ratio: int = 100  # uncompressed / compressed, for members over ratio_floor bytes
    ratio_floor: int = 1024 ** 2


class BundleZip:
    """A zip opened with limits: member count, sizes and ratio checked on the central directory, every read
    bounded; duplicate names and encrypted members are refused. Every failure is an EvidenceError."""

    def __init__(self, path: Path, limits: BundleLimits) -> None:
        import zipfile

        self.limits = limits
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            raise EvidenceError(f"cannot read bundle {path}: {exc.strerror or exc}") from None
        if size > limits.max_file_bytes:
            raise EvidenceError(f"{path} is {size} bytes, more than a bundle may be ({limits.max_file_bytes})")
        try:
            with open(path, "rb") as fh:
                end = zipfile._EndRecData(fh)  # the central directory's entry count, before it is parsed
            if end is not None and end[zipfile._ECD_ENTRIES_TOTAL] > limits.max_members:
                raise EvidenceError(f"{path} has {end[zipfile._ECD_ENTRIES_TOTAL]} members, more than a bundle "
                                    f"may have ({limits.max_members})")
            self.zf = zipfile.ZipFile(path)
            infos = self.zf.infolist()
        except EvidenceError:
            raise
        except Exception as exc:  # zipfile raises BadZipFile, OSError, ValueError, struct.error, EOFError, ...
            raise EvidenceError(f"{path} is not a readable zip: {exc}") from None
        try:
            self._check(infos)
        except EvidenceError:
            self.zf.close()
            raise
        self.infos = {i.filename: i for i in infos}
        self.names = set(self.infos)

    def _check(self, infos) -> None:
        lim = self.limits
        if len(infos) > lim.max_members:
            raise EvidenceError(f"the bundle has {len(infos)} members, more than a bundle may have ({lim.max_members})")
        seen: set[str] = set()
        total = 0
        for i in infos:
            if i.filename in seen:
                raise EvidenceError(f"the bundle holds {i.filename!r} twice: a zip with duplicate names is ambiguous")
            seen.add(i.filename)
            if i.flag_bits & 0x1:
                raise EvidenceError(f"{i.filename!r} is encrypted: a bundle is never encrypted")
            if i.file_size > lim.max_member_bytes:
                raise EvidenceError(f"{i.filename!r} unpacks to {i.file_size} bytes, more than a bundle member may "
                                    f"({lim.max_member_bytes})")
            if i.file_size > lim.ratio_floor and i.file_size > lim.max_ratio * max(i.compress_size, 1):
                raise EvidenceError(f"{i.filename!r} unpacks {i.file_size // max(i.compress_size, 1)}-fold: "
                                    f"refused as a zip bomb (limit {lim.max_ratio})")
            total += i.file_size
            if total > lim.max_total_bytes:
                raise EvidenceError(f"the bundle unpacks to more than {lim.max_total_bytes} bytes: refused")

    def read(self, name: str) -> bytes:
        info = self.infos.get(name)
        if info is None:
            raise EvidenceError(f"{name} is missing")
        try:
            out = bytearray()
            with self.zf.open(info) as fh:
                while True:
                    chunk = fh.read(1 << 20)
                    if not chunk:
                        break
                    out += chunk
                    if len(out) > info.file_size or len(out) > self.limits.max_member_bytes:
                        raise EvidenceError(f"{name} unpacks to more than it declares: refused")
            return bytes(out)
        except EvidenceError:
            raise
        except Exception as exc:  # CRC errors, truncated data, unknown compression, ...
            raise EvidenceError(f"{name} cannot be read ({type(exc).__name__}: {str(exc)[:120]})") from None

    def close(self) -> None:
        self.zf.close()

    def __enter__(self) -> "_BundleZip":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def decision_view(rec: dict) -> dict:
    """The human-readable decision file of a record: derived from the signed record only, so a verifier derives
    it again and compares it whole (liability shares and parties, findings, reasons, operator, ...)."""
    def parsed(text, kind):
        if not isinstance(text, str):
            return kind()
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            return kind()
        return obj if isinstance(obj, kind) else kind()

    decision = parsed(rec.get("decision_json"), dict)
    findings = parsed(rec.get("findings_json"), list)
    out = {k: rec.get(k) for k in ("record_id", "order_id", "sku", "reason", "created_at", "station_id",
                                   "unit_code", "channel", "streamer", "brand", "carrier", "review", "lane",
                                   "confidence", "model_version")}
    out.update({"grade": decision.get("grade"), "disposition": decision.get("disposition"),
                "rule_ids": decision.get("rules_fired", []), "liability": decision.get("liability", []),
                "reasons": decision.get("reasons", []), "findings": findings, "overrides": rec.get("overrides"),
                "override_reason": rec.get("override_reason"), "operator": rec.get("operator")})
    return out


def _annotate(image, findings: list[dict], view: str):
    import cv2

    out = image.copy()
    for f in findings:
        if not isinstance(f, dict):
            continue
        box = f.get("box_xyxy")
        if f.get("view") != view or not box:
            continue
        try:
            x1, y1, x2, y2 = (int(round(float(v))) for v in box)
            score = float(f.get("score", 0))
        except (TypeError, ValueError, OverflowError):
            continue
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 0, 255), 2)
        label = f"{f.get('kind')} {score:.2f}"
        cv2.putText(out, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 255), 1, cv2.LINE_AA)
    return out


BUNDLE_README = """\
Evidence bundle of one order, made by an inspection station.

Verify it offline with the station's public key, obtained from the station itself and not from this bundle:
    station key export --out station.pub          (on the station; or the platform: GET /api/v1/stations/ID/heads)
    station verify-bundle THIS.zip --public-key station.pub
Without --public-key the answer is at best "unverified": anyone can sign a bundle with a key of their own.

manifest.json lists every other file with its SHA-256, the order, the signed head (head.json) and every
record of the order among the head's leaves; manifest.sig is the station's Ed25519 signature over
"inspection-station evidence bundle v2\\n" + the bytes of manifest.json. records/*.json are the exact bytes
logged (leaf = SHA-256(0x00||bytes)); proofs/ hold RFC 6962 audit paths to head.json. decision/*.json are
derived from the records and checked against them; images/ are the originals, named by the SHA-256 the signed
records list; annotated/ images are derived (boxes drawn) and covered by the manifest signature.
"""


def build_bundle(db: sqlite3.Connection, image_dir: Path, key: "StationKey", order_id: str, out: Path) -> dict:
    """Write a zip with every record of ``order_id`` (inspection and overrides), its original and annotated
    images, decision files, inclusion proofs against the latest signed head, the public key, and the manifest
    signed with the station's key (format 2)."""
    import cv2
    import numpy as np
    import zipfile

    head = latest_head(db)
    if head is None:
        raise EvidenceError("the evidence log has no signed head yet")
    if head.key_id != key.key_id():
        raise EvidenceError(f"the latest signed head was made with key {head.key_id}, not this station's key "
                            f"{key.key_id()}: run `station verify`")
    rows = db.execute("SELECT i.record_id, l.idx FROM inspections i LEFT JOIN evidence_leaves l "
                      "ON l.record_id = i.record_id WHERE i.order_id=? ORDER BY i.seq", (order_id,)).fetchall()
    if not rows:
        raise EvidenceError(f"no records of order {order_id!r} on this station")
    for rid, idx in rows:
        if idx is None or idx >= head.tree_size:
            raise EvidenceError(f"record {rid} is not yet covered by a signed head")
    rows.sort(key=lambda r: r[1])
    leaves = all_leaves(db)[:head.tree_size]
    if merkle_root(leaves).hex() != head.root_hash:
        raise EvidenceError("the evidence log does not match its latest signed head: run `station verify`")
    files: dict[str, bytes] = {}
    entries = []
    station_id = None
    for rid, idx in rows:
        data = record_leaf_from_db(db, rid)
        if leaf_hash(data) != leaves[idx]:
            raise EvidenceError(f"record {rid} was altered after it was logged: run `station verify`")
        rec = json.loads(data)
        station_id = rec["station_id"]
        files[f"records/{rid}.json"] = data
        files[f"proofs/{rid}.json"] = json.dumps({
            "leaf_index": idx, "tree_size": head.tree_size, "leaf_hash": leaf_hash(data).hex(),
            "audit_path": [p.hex() for p in inclusion_proof(idx, leaves)]}, indent=2).encode()
        files[f"decision/{rid}.json"] = json.dumps(decision_view(rec), indent=2, ensure_ascii=False).encode()
        findings = decision_view(rec)["findings"]
        entry = {"record_id": rid, "leaf_index": idx, "record": f"records/{rid}.json", "proof": f"proofs/{rid}.json",
                 "decision": f"decision/{rid}.json", "images": [], "annotated": [], "missing_images": []}
        for im in rec["images"]:
            row = db.execute("SELECT relpath, pruned_at FROM images WHERE sha256=?", (im["sha256"],)).fetchone()
            raw = None
            if row is not None:
                try:
                    raw = (image_dir / row[0]).read_bytes()
                except OSError:
                    raw = None
            if raw is None:
                if row is not None and not row[1]:
                    raise EvidenceError(f"image {im['sha256']} of record {rid} is missing from the store and was "
                                        f"never pruned: run `station verify`")
                entry["missing_images"].append(im["sha256"])  # pruned: the platform holds it
                continue
            if hashlib.sha256(raw).hexdigest() != im["sha256"]:
                raise EvidenceError(f"image {im['sha256']} of record {rid} was altered on this station: "
                                    f"run `station verify`")
            name = f"images/{im['sha256']}.png"
            files[name] = raw
            entry["images"].append({"view": im["view"], "sha256": im["sha256"], "file": name})
            img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
            if img is not None:
                ok, buf = cv2.imencode(".png", _annotate(img, findings, im["view"]))
                aname = f"annotated/{rid}-{im['view']}.png"
                if ok and aname not in files:
                    files[aname] = buf.tobytes()
                    entry["annotated"].append(aname)
        entries.append(entry)
    public_pem = key.public_pem()
    files["head.json"] = json.dumps(head.to_json(), indent=2).encode()
    files["public_key.pem"] = public_pem
    files["README.txt"] = BUNDLE_README.encode()
    manifest = {"format": BUNDLE_FORMAT, "order_id": order_id, "station_id": station_id, "exported_at": utc_now(),
                "key_id": key.key_id(), "head": "head.json", "signed_head": head.to_json(),
                "public_key": "public_key.pem", "complete_up_to": head.tree_size, "record_count": len(entries),
                "records": entries,
                "files": {n: hashlib.sha256(b).hexdigest() for n, b in sorted(files.items())}}
    mbytes = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
    sig = base64.b64encode(key.private.sign(MANIFEST_CONTEXT + mbytes)).decode()
    tmp = out.with_name(out.name + ".tmp")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in files.items():
                zf.writestr(name, data, compress_type=zipfile.ZIP_STORED if name.endswith(".png") else None)
            zf.writestr("manifest.json", mbytes)
            zf.writestr("manifest.sig", json.dumps({"signs": "manifest.json", "key_id": key.key_id(),
                                                    "signature": sig}, indent=2))
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"order_id": order_id, "records": len(entries), "tree_size": head.tree_size, "out": str(out),
            "key_id": key.key_id(), "files": len(files) + 2}
