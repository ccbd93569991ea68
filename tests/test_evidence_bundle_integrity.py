"""Evidence bundles a third party can trust and a `station verify` that cannot be fooled (issue 21, "Bundles and
`station verify`"): every bundle file signed or derived and checked, the manifest signed and the order complete,
"unverified" without a trusted key, rollback caught against a witness head, pruned images still re-hashed,
SQLite's integrity check, and malformed bundles or zip bombs answered with a message, never a traceback."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from station import evidence as ev
from station import tamper
from station.cli import app

A, B = tamper.ORDER_A, tamper.ORDER_B


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> tamper.Fixture:
    return tamper.make_fixture(tmp_path_factory.mktemp("evidence"))


@pytest.fixture()
def data(fx, tmp_path) -> Path:
    """A private copy of the station's data dir, to alter."""
    import shutil

    out = tmp_path / "station"
    shutil.copytree(fx.data, out, symlinks=True)
    return out


def cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args), catch_exceptions=True, env={"COLUMNS": "400"})
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"traceback: {type(res.exception).__name__}: {res.exception}")
    assert "Traceback" not in res.output
    # JSON as printed; text with rich's line wrapping undone
    return res.exit_code, res.output if "--json" in args else " ".join(res.output.split())


def station(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "station.cli", *args], capture_output=True, text=True, timeout=120)


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def write(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, b in files.items():
            zf.writestr(n, b)
    return path


def verify_bundle(path: Path, fx, trusted: bool = True) -> tuple[int, dict | str]:
    args = ["verify-bundle", str(path), "--json"] + (["--public-key", str(fx.key_pem)] if trusted else [])
    code, out = cli(*args)
    try:
        return code, json.loads(out)
    except ValueError:
        return code, out


# ------------------------------------------------------------------------------------------- every file checked


def test_untouched_bundle_verifies_with_the_stations_key(fx):
    code, res = verify_bundle(fx.bundle_a, fx)
    assert code == 0 and res["ok"] and res["status"] == "verified", res
    assert res["records"] == 3 and res["images_checked"] == 4 and res["order_id"] == A
    assert res["files_checked"] >= 3 * 3 + 4 + 3  # records, proofs, decisions, images, head, key, README


@pytest.mark.parametrize("field, value", [
    ("liability", [{"party": "brand", "share": 1.0, "rule": "L-X", "reason": "r", "evidence": [], "confidence": 1}]),
    ("findings", []), ("reasons", ["as new"]), ("operator", "someone-else"), ("override_reason", "none"),
    ("sku", "OTHER-SKU"), ("order_id", B), ("overrides", None), ("streamer", "streamer-9"), ("confidence", 0.01),
])
def test_every_field_of_a_decision_file_is_checked(fx, tmp_path, field, value):
    files = members(fx.bundle_a)
    rid = fx.record_ids[A][-1]  # the override: it has an override reason and a target
    name = f"decision/{rid}.json"
    d = json.loads(files[name])
    assert d[field] != value
    d[field] = value
    files[name] = json.dumps(d, indent=2).encode()
    code, res = verify_bundle(write(tmp_path / "t.zip", files), fx)
    assert code == 1 and not res["ok"] and res["status"] == "failed"
    assert any(name in p and "altered" in p for p in res["problems"]), res["problems"]


def test_a_decision_file_is_rederived_even_under_a_valid_manifest_signature(fx, tmp_path):
    """An insider holding the station key re-signs the manifest over an edited liability share: the decision
    file is still compared with the signed record."""
    station_key = ev.StationKey(fx.data / "keys" / "station_ed25519.pem").load().private
    rid = fx.record_ids[A][0]
    ms = tamper._edit_json(list(members(fx.bundle_a).items()), lambda n: n == f"decision/{rid}.json",
                           lambda o: o["liability"][0].update(share=0.0))
    path = tmp_path / "t.zip"
    path.write_bytes(tamper._zip(tamper._resign(ms, station_key)))
    code, res = verify_bundle(path, fx)
    assert code == 1
    assert res["problems"] == [f"record {rid}: decision/{rid}.json differs from the signed record (liability)"]


def test_an_unlisted_or_altered_annotated_file_fails(fx, tmp_path):
    files = members(fx.bundle_a)
    annotated = next(n for n in files if n.startswith("annotated/"))
    files[annotated] = files[next(n for n in files if n.startswith("images/"))]
    files["notes.txt"] = b"the brand pays"
    code, res = verify_bundle(write(tmp_path / "t.zip", files), fx)
    assert code == 1
    assert any(annotated in p and "altered" in p for p in res["problems"])
    assert any("notes.txt is not covered by the signed manifest" in p for p in res["problems"])


# ------------------------------------------------------------------------------------------- complete and about its order


def test_changing_the_manifests_order_fails(fx, tmp_path):
    files = members(fx.bundle_a)
    m = json.loads(files["manifest.json"])
    m["order_id"] = B
    files["manifest.json"] = json.dumps(m).encode()
    code, res = verify_bundle(write(tmp_path / "t.zip", files), fx)
    assert code == 1 and any("manifest's signature does not verify" in p for p in res["problems"])
    assert any(f"not to '{B}'" in p for p in res["problems"])


def test_another_orders_record_inside_fails_even_resigned_by_the_station(fx, tmp_path):
    station_key = ev.StationKey(fx.data / "keys" / "station_ed25519.pem").load().private
    a, b = members(fx.bundle_a), members(fx.bundle_b)
    rid = fx.record_ids[B][0]
    for part in ("records", "proofs", "decision"):
        a[f"{part}/{rid}.json"] = b[f"{part}/{rid}.json"]
    m = json.loads(a["manifest.json"])
    entry = json.loads(b["manifest.json"])["records"][0]
    entry.update(images=[], annotated=[], missing_images=[i["sha256"] for i in json.loads(
        b[f"records/{rid}.json"])["images"]])
    m["records"].append(entry)
    m["record_count"] += 1
    a["manifest.json"] = json.dumps(m).encode()
    path = tmp_path / "t.zip"
    path.write_bytes(tamper._zip(tamper._resign(list(a.items()), station_key)))
    code, res = verify_bundle(path, fx)
    assert code == 1 and any(f"belongs to order '{B}'" in p for p in res["problems"]), res["problems"]


def test_dropping_the_override_record_or_an_image_fails(fx, tmp_path):
    override = fx.record_ids[A][-1]
    files = {n: b for n, b in members(fx.bundle_a).items() if override not in n}
    m = json.loads(files["manifest.json"])
    m["records"] = [e for e in m["records"] if e["record_id"] != override]
    m["record_count"] = len(m["records"])
    files["manifest.json"] = json.dumps(m).encode()
    code, res = verify_bundle(write(tmp_path / "t.zip", files), fx)
    assert code == 1 and any("manifest's signature does not verify" in p for p in res["problems"])
    assert any(f"records/{override}.json is listed in the signed manifest but missing" in p for p in res["problems"])

    files = members(fx.bundle_a)
    image = next(n for n in files if n.startswith("images/"))
    del files[image]
    code, res = verify_bundle(write(tmp_path / "t2.zip", files), fx)
    assert code == 1 and any(image in p and "missing" in p for p in res["problems"])


# ------------------------------------------------------------------------------------------- a trusted key


def test_without_a_trusted_key_the_answer_is_unverified_exit_1(fx):
    proc = station("verify-bundle", str(fx.bundle_a))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "UNVERIFIED" in proc.stdout and "station key export" in proc.stdout
    code, res = verify_bundle(fx.bundle_a, fx, trusted=False)
    assert code == 1 and res["status"] == "unverified" and not res["ok"] and res["problems"] == []


def test_a_bundle_resigned_with_an_attackers_key(fx, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    attacker = Ed25519PrivateKey.generate()
    path = tmp_path / "attacker.zip"
    path.write_bytes(tamper._zip(tamper.attacker_rebuild(list(members(fx.bundle_a).items()), attacker,
                                                         fx.record_ids[A][0])))
    code, res = verify_bundle(path, fx, trusted=False)
    assert code == 1 and res["status"] == "unverified" and res["key_id"] == ev.key_id_of(attacker.public_key())
    code, res = verify_bundle(path, fx)
    assert code == 1 and res["status"] == "failed"
    assert any("manifest's signature does not verify with the given key" in p for p in res["problems"])
    assert any("signed head (size 3) does not verify with the given key" in p for p in res["problems"])
    # Re-signing only the manifest leaves the station's head, which the attacker's key does not verify.
    path.write_bytes(tamper._zip(tamper._resign(list(members(fx.bundle_a).items()), attacker)))
    code, res = verify_bundle(path, fx, trusted=False)
    assert code == 1 and res["status"] == "failed"


def test_key_export_gives_the_key_a_brand_verifies_with(fx, tmp_path):
    proc = station("key", "export", "--data-dir", str(fx.data))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == fx.key_pem.read_text()
    fp = ev.key_fingerprint(ev.load_public_key(fx.key_pem.read_bytes()))
    assert fp in proc.stderr
    out = tmp_path / "station.pub"
    code, text = cli("key", "export", "--data-dir", str(fx.data), "--out", str(out), "--json")
    assert code == 0 and json.loads(text)["fingerprint_sha256"] == fp and out.read_bytes() == fx.key_pem.read_bytes()
    code, text = cli("verify-bundle", str(fx.bundle_a), "--public-key", str(out))
    assert code == 0 and "bundle OK" in text
    code, text = cli("key", "export", "--data-dir", str(tmp_path / "nowhere"))
    assert code == 2 and "no station key" in text


# ------------------------------------------------------------------------------------------- rollback and witnesses


def _rollback(data: Path, n: int = 1, witnesses_too: bool = False) -> None:
    tamper._rollback(n, drop_state=witnesses_too, drop_file=witnesses_too)(data, None)


def test_rollback_of_the_newest_records_is_caught_by_the_stations_witness(data):
    code, text = cli("verify", "--data-dir", str(data))
    assert code == 0, text
    _rollback(data, 1)
    code, text = cli("verify", "--data-dir", str(data), "--json")
    rep = json.loads(text)
    assert code == 1 and not rep["ok"]
    assert any(p.startswith("rollback:") and "covers 4 record(s) but the log holds 3" in p for p in rep["problems"])


def test_rollback_with_every_station_copy_removed_is_caught_with_head_file(data, fx):
    _rollback(data, 2, witnesses_too=True)
    code, text = cli("verify", "--data-dir", str(data), "--json")
    assert code == 0 and json.loads(text)["notes"] == [ev.NO_WITNESS_NOTE]  # said plainly, nothing to compare
    code, text = cli("verify", "--data-dir", str(data), "--head", str(fx.platform_heads), "--json")
    rep = json.loads(text)
    assert code == 1 and any("rollback:" in p and "log holds 2" in p for p in rep["problems"]), rep["problems"]
    head_json = data.parent / "head.json"
    head_json.write_bytes(members(fx.bundle_a)["head.json"])  # a bundle's head is a witness too
    code, text = cli("verify", "--data-dir", str(data), "--head", str(head_json))
    assert code == 1 and "rollback" in text


def test_database_replaced_by_an_empty_one(data, fx):
    from station.records import StationStore

    (data / "station.db").unlink()
    StationStore(data / "station.db").open().close()
    code, text = cli("verify", "--data-dir", str(data))
    assert code == 1 and "rollback" in text and "log holds 0" in text
    ev.witness_path(data / "keys" / "station_ed25519.pem").unlink()
    code, text = cli("verify", "--data-dir", str(data), "--head", str(fx.platform_heads))
    assert code == 1 and "rollback" in text


def test_a_witness_head_from_another_key_or_unreadable_fails(data, fx, tmp_path):
    other = ev.StationKey(tmp_path / "other.pem").load()
    fake = tmp_path / "fake_head.json"
    fake.write_text(json.dumps(other.sign_head(4, bytes(32), "2030-01-01").to_json()))
    code, text = cli("verify", "--data-dir", str(data), "--head", str(fake))
    assert code == 1 and "does not verify with this station's key" in text
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2")
    code, text = cli("verify", "--data-dir", str(data), "--head", str(junk))
    assert code == 2 and "not valid JSON" in text
    code, text = cli("verify", "--data-dir", str(data), "--head", str(tmp_path / "missing.json"))
    assert code == 2 and "not found" in text


def test_sync_keeps_the_acknowledged_head_outside_the_database(tmp_path):
    from station.records import StationStore
    from station.server.api import create_app, create_token, init_db, make_engine
    from station.server.runner import ServerThread
    from station.sync import SyncClient, SyncSettings

    fx = tamper.make_fixture(tmp_path / "fx")
    witness = ev.witness_path(fx.data / "keys" / "station_ed25519.pem")
    witness.unlink()
    engine = make_engine(f"sqlite:///{tmp_path / 'platform.db'}")
    init_db(engine)
    token = create_token(engine, "station", "st-tamper")
    try:
        with ServerThread(create_app(engine=engine)) as srv, StationStore(fx.data / "station.db") as store:
            SyncClient(store, SyncSettings(url=srv.url, token=token, upload_images=False)).sync_once()
            assert store.pending_count() == 0
    finally:
        engine.dispose()
    kept = ev.load_witness_file(witness)
    assert [w.head.tree_size for w in kept] == [4]
    _rollback(fx.data, 1, witnesses_too=False)
    with sqlite3.connect(fx.data / "station.db") as db:
        db.execute("DELETE FROM sync_state WHERE key='platform_head'")
    code, text = cli("verify", "--data-dir", str(fx.data))
    assert code == 1 and "rollback" in text and str(witness) in text


# ------------------------------------------------------------------------------------------- pruned images, integrity


def _image(data: Path, i: int = 0) -> tuple[str, Path]:
    with sqlite3.connect(data / "station.db") as db:
        sha, rel = db.execute("SELECT sha256, relpath FROM images ORDER BY created_at, sha256").fetchall()[i]
    return sha, data / "images" / rel


def test_marking_an_image_pruned_does_not_hide_an_edit(data):
    sha, path = _image(data)
    with sqlite3.connect(data / "station.db") as db:
        db.execute("UPDATE images SET pruned_at='2030-01-01', uploaded_at='2030-01-01' WHERE sha256=?", (sha,))
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 1
    path.write_bytes(bytes(raw))
    code, text = cli("verify", "--data-dir", str(data), "--json")
    assert code == 1 and any(sha in p and "was altered" in p for p in json.loads(text)["problems"])


def test_a_pruned_image_must_be_on_the_platform(data):
    sha, path = _image(data)
    with sqlite3.connect(data / "station.db") as db:
        db.execute("UPDATE images SET pruned_at='2030-01-01' WHERE sha256=?", (sha,))
    path.unlink()
    code, text = cli("verify", "--data-dir", str(data), "--json")
    rep = json.loads(text)
    assert code == 1 and rep["images_pruned"] == 1
    assert any("never uploaded" in p for p in rep["problems"])
    with sqlite3.connect(data / "station.db") as db:
        db.execute("UPDATE images SET uploaded_at='2030-01-01' WHERE sha256=?", (sha,))
    code, text = cli("verify", "--data-dir", str(data), "--json")
    assert code == 0 and json.loads(text)["images_pruned"] == 1  # honestly pruned after sync: fine


def test_verify_runs_the_integrity_check_and_a_corrupted_index_is_a_clean_failure(data):
    code, text = cli("verify", "--data-dir", str(data), "--json")
    assert code == 0 and json.loads(text)["integrity"] == "ok"
    tamper._corrupt_index(data, None)
    proc = station("verify", "--data-dir", str(data))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "integrity check failed" in proc.stdout and "inspections_order" in proc.stdout
    for args in (("evidence", A, "--out", str(data / "x.zip")),):
        proc = station(*args, "--data-dir", str(data))
        assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr, proc.stderr


def test_verify_is_read_only_and_never_seals_a_forged_record(data):
    tamper._forged_record(False)(data, None)
    before = (data / "station.db").read_bytes()
    for _ in range(2):
        code, text = cli("verify", "--data-dir", str(data))
        assert code == 1 and "1 record(s) not in the log" in text
    assert (data / "station.db").read_bytes() == before


# ------------------------------------------------------------------------------------------- malformed bundles


def _bad_bundles(fx, tmp_path) -> dict[str, tuple[bytes, bool]]:
    """name -> (bundle bytes, with a trusted key)."""
    a = members(fx.bundle_a)
    rid = fx.record_ids[A][0]

    def edited(name, fn):
        files = dict(a)
        files[name] = fn(files[name])
        return tamper._zip(list(files.items()))

    def proof(fn):
        def f(b):
            o = json.loads(b)
            fn(o)
            return json.dumps(o).encode()
        return f

    no_key = dict(a)
    del no_key["public_key.pem"]
    lying = bytearray(tamper._zip(list(a.items()) + [("images/big.png", bytes(30 * 1024 * 1024))]))
    # The central directory and the local header claim 1000 bytes; the data unpacks to 30 MB.
    pos = lying.rfind(b"PK\x01\x02")
    lying[pos + 24:pos + 28] = (1000).to_bytes(4, "little")
    local = int.from_bytes(lying[pos + 42:pos + 46], "little")
    lying[local + 22:local + 26] = (1000).to_bytes(4, "little")
    return {
        "non-integer leaf_index": (edited(f"proofs/{rid}.json", proof(lambda o: o.update(leaf_index="1"))), True),
        "non-hex proof": (edited(f"proofs/{rid}.json", proof(lambda o: o["audit_path"].__setitem__(0, "xy" * 32))),
                          True),
        "proof a list": (edited(f"proofs/{rid}.json", lambda b: b"[]"), True),
        "manifest a list": (edited("manifest.json", lambda b: b"[]"), True),
        "manifest records a list of lists": (edited("manifest.json", lambda b: json.dumps(
            {**json.loads(b), "records": [[1]]}).encode()), True),
        "head a list": (edited("manifest.json", lambda b: json.dumps(
            {**json.loads(b), "signed_head": []}).encode()), True),
        "missing public_key.pem": (tamper._zip(list(no_key.items())), False),
        "CRC error": (tamper._crc_error(list(a.items())), True),
        "not a zip": (b"PK\x03\x04 not really", True),
        "truncated": (fx.bundle_a.read_bytes()[:-100], True),
        "nested JSON": (edited("manifest.json", lambda b: tamper._nested(200_000)), True),
        "zip bomb by size": (tamper._zip(list(a.items()) + [("images/bomb.png", bytes(70 * 1024 * 1024))]), True),
        "zip bomb by ratio": (tamper._zip(list(a.items()) + [("images/r.png", bytes(8 * 1024 * 1024))]), True),
        "member lies about its size": (bytes(lying), True),
        "duplicate names": (tamper._zip(list(a.items()) + [("head.json", a["head.json"])]), True),
        "unknown compression": (tamper._patch_method(tamper._zip(list(a.items())), "manifest.json", method=99), True),
    }


def test_malformed_bundles_give_a_message_and_exit_1_or_2_never_a_traceback(fx, tmp_path):
    for name, (raw, trusted) in _bad_bundles(fx, tmp_path).items():
        path = tmp_path / "bad.zip"
        path.write_bytes(raw)
        args = ["verify-bundle", str(path)] + (["--public-key", str(fx.key_pem)] if trusted else [])
        code, text = cli(*args)  # raises on a traceback
        assert code in (1, 2) and text.strip(), (name, code, text)
        if code == 2:
            assert text.startswith("error:"), (name, text)


def test_a_zip_bomb_is_refused_before_it_is_unpacked(fx, tmp_path):
    import resource

    files = list(members(fx.bundle_a).items()) + [("images/bomb.png", bytes(400 * 1024 * 1024))]
    path = tmp_path / "bomb.zip"
    path.write_bytes(tamper._zip(files))
    assert path.stat().st_size < 4 * 1024 * 1024
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ev.EvidenceError, match="unpacks to 419430400 bytes"):
        ev.verify_bundle(path, fx.key_pem.read_bytes())
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB: nothing unpacked


def test_a_real_cli_run_on_malformed_input_is_one_line_and_exit_2(fx, tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(tamper._zip(list(members(fx.bundle_a).items()) + [("x", bytes(70 * 1024 * 1024))]))
    proc = station("verify-bundle", str(bad), "--public-key", str(fx.key_pem))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:") and "unpacks to" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""
    junk_key = tmp_path / "junk.pem"
    junk_key.write_text("not a key")
    proc = station("verify-bundle", str(fx.bundle_a), "--public-key", str(junk_key))
    assert proc.returncode == 2 and "not a PEM public key" in proc.stderr and "Traceback" not in proc.stderr
