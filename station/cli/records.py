"""Records and evidence commands: verify, key export, evidence, verify-bundle, prune. The sync commands are in
station.cli.sync.

Exit codes: 0 ok; 1 a check failed (tampering found); 2 bad input (clear message).
"""

import sqlite3
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from station.cli import common as cli
from station.cli.common import ConfigOpt, DataDirOpt


def open_store(cfg):
    from station.records import StationStore, StoreError

    db = cfg.database_path()
    if not db.exists():
        cli.fail(f"no station database at {db}: run an inspection first or pass --data-dir")
    mb = cfg.records.min_free_mb
    try:
        return StationStore(db, min_free_bytes=int(mb * 1024 * 1024)).open()
    except StoreError as exc:
        cli.fail(str(exc))
    except sqlite3.DatabaseError as exc:
        cli.fail(f"the station database {db} cannot be read: {exc}: run `station verify`")



def _read_key(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        cli.fail(f"cannot read public key {path}: {exc.strerror}")


app = typer.Typer()


# ------------------------------------------------------------------------------------ verify
@app.command()
def verify(
    record: Annotated[Optional[str], typer.Option(help="also prove one record's inclusion in the latest head")] = None,
    consistency: Annotated[Optional[tuple[int, int]], typer.Option(
        help="prove the signed head of size OLD is a prefix of the one of size NEW")] = None,
    public_key: Annotated[Optional[Path], typer.Option(help="check heads with this PEM key, not the station's")] = None,
    head: Annotated[Optional[Path], typer.Option(
        "--head", help="witness: a signed head the log must extend (the platform's GET /stations/ID/heads "
                       "answer, a bundle's head.json, or the station's keys/platform_head.json)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Check the whole evidence log read-only: SQLite's integrity check, every record and image re-hashed,
    every signed head, and the last head the platform acknowledged (kept next to the station key) or
    --head FILE; exit 1 if anything was altered or rolled back, 2 if the input is unusable."""
    import sqlite3

    from station import evidence as ev
    from station.evidence import EvidenceError

    cfg = cli.station_config(config, data_dir)
    db_path = cfg.database_path()
    if not db_path.exists():
        cli.fail(f"no station database at {db_path}: run an inspection first or pass --data-dir")
    key_path = db_path.parent / "keys" / "station_ed25519.pem"
    db = None
    try:
        if public_key is not None:
            key = ev.load_public_key(_read_key(public_key))
        elif key_path.exists():
            key = ev.StationKey(key_path).load().public
        else:
            cli.fail(f"no station key at {key_path}: pass --public-key with the station's public key")
        witnesses, problems_in = [], []
        own = ev.witness_path(key_path)
        if own.exists():
            try:
                witnesses += ev.load_witness_file(own)
            except EvidenceError as exc:
                problems_in.append(f"the station's witness head is unreadable: {exc}")
        if head is not None:
            if not head.is_file():
                cli.fail(f"witness head {head} not found")
            witnesses += ev.load_witness_file(head)
        db = ev.open_readonly(db_path)
        report = ev.verify_store(db, db_path.parent / "images", key, witnesses=witnesses,
                                 problems_in=problems_in)
        out = report.to_json()
        if record is not None:
            row = db.execute("SELECT idx FROM evidence_leaves WHERE record_id=?", (record,)).fetchone()
            if row is None:
                cli.fail(f"record {record} is not in the evidence log")
            latest = ev.latest_head(db)
            if latest is None or row[0] >= latest.tree_size:
                cli.fail(f"record {record} is not covered by a signed head")
            leaves = ev.all_leaves(db)[:latest.tree_size]
            proof = ev.inclusion_proof(row[0], leaves)
            lh = ev.leaf_hash(ev.record_leaf_from_db(db, record))
            ok = ev.verify_inclusion(row[0], latest.tree_size, lh, proof, bytes.fromhex(latest.root_hash))
            out["inclusion"] = {"record_id": record, "leaf_index": row[0], "tree_size": latest.tree_size,
                                "leaf_hash": lh.hex(), "audit_path": [p.hex() for p in proof], "ok": ok}
            out["ok"] = out["ok"] and ok
        if consistency is not None:
            old, new = consistency
            h_old, h_new = ev.head_of_size(db, old), ev.head_of_size(db, new)
            if h_old is None or h_new is None or old > new or new > report.tree_size:
                cli.fail(f"need signed heads of sizes {old} <= {new}; the log has sizes 1..{report.tree_size}")
            leaves = ev.all_leaves(db)[:new]
            proof = ev.consistency_proof(old, leaves)
            ok = ev.verify_consistency(old, new, bytes.fromhex(h_old.root_hash), bytes.fromhex(h_new.root_hash),
                                       proof)
            out["consistency"] = {"old_size": old, "new_size": new, "old_root": h_old.root_hash,
                                  "new_root": h_new.root_hash, "proof": [p.hex() for p in proof], "ok": ok}
            out["ok"] = out["ok"] and ok
    except EvidenceError as exc:
        cli.fail(str(exc))
    except (sqlite3.DatabaseError, ValueError) as exc:  # --record / --consistency on a damaged log
        cli.fail(f"the station database {db_path} cannot be read: {exc}", 1)
    finally:
        if db is not None:
            db.close()
    if json_out:
        cli.print_json(out)
    else:
        status = "[bold green]OK[/]" if out["ok"] else "[bold red]FAILED[/]"
        cli.out.print(f"evidence log {status}: {out['records']} records, {out['images_checked']} images "
                      f"re-hashed ({out['images_pruned']} pruned after sync), {out['heads_checked']} signed heads, "
                      f"tree size {out['tree_size']}, integrity {out['integrity']}, "
                      f"{len(out['witnesses'])} witness head(s)")
        for p in out["problems"]:
            cli.out.print(f"  [red]{p}[/]", highlight=False)
        for k in ("inclusion", "consistency"):
            if k in out:
                cli.out.print(f"  {k} proof: {'ok' if out[k]['ok'] else 'FAILED'}")
        for n in out["notes"]:
            cli.out.print(f"  note: {n}", highlight=False)
    if not out["ok"]:
        raise typer.Exit(1)

# ------------------------------------------------------------------------------------ station key
key_app = typer.Typer(no_args_is_help=True, help="The station's signing key: export its public half for "
                                                 "brands, streamers and the platform.")
app.add_typer(key_app, name="key")

@key_app.command("export")
def key_export(
    out_path: Annotated[Optional[Path], typer.Option("--out", help="write the PEM here (default: stdout)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Export the station's public key (PEM) and its fingerprint. A brand checks bundles with this key
    (`station verify-bundle B.zip --public-key station.pub`), obtained from the station or the platform, never
    from the bundle; read the fingerprint to them over a second channel."""
    from station import evidence as ev
    from station.evidence import EvidenceError

    cfg = cli.station_config(config, data_dir)
    key_path = cfg.database_path().parent / "keys" / "station_ed25519.pem"
    if not key_path.exists():
        cli.fail(f"no station key at {key_path}: the station creates it with its first record "
                 f"(or pass --data-dir)")
    try:
        key = ev.StationKey(key_path).load()
        pem, fp = key.public_pem(), ev.key_fingerprint(key.public)
    except EvidenceError as exc:
        cli.fail(str(exc))
    if out_path is not None:
        try:
            out_path.write_bytes(pem)
        except OSError as exc:
            cli.fail(f"cannot write {out_path}: {exc.strerror}")
    res = {"key_id": fp[:16], "fingerprint_sha256": fp, "public_key_pem": pem.decode(),
           "station_id": getattr(cfg.station, "station_id", None), "out": str(out_path) if out_path else None}
    if json_out:
        cli.print_json(res)
    elif out_path is not None:
        cli.out.print(f"wrote {out_path}: station public key {res['key_id']}, SHA-256 fingerprint {fp}",
                      highlight=False)
    else:
        sys.stdout.write(pem.decode())
        sys.stdout.flush()
        cli.err.print(f"key id {res['key_id']}, SHA-256 fingerprint {fp}", highlight=False)

# ------------------------------------------------------------------------------------ evidence bundle
@app.command()
def evidence(
    order_id: Annotated[str, typer.Argument(help="order id of the return")],
    out_path: Annotated[Path, typer.Option("--out", help="bundle zip to write")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Write an evidence bundle for one order: images, annotated images, decision, proofs, signed head, key,
    and a manifest of every file signed with the station key."""
    import sqlite3

    from station.evidence import EvidenceError, build_bundle

    cfg = cli.station_config(config, data_dir)
    store = open_store(cfg)
    try:
        res = build_bundle(store.db, store.image_dir, store.evidence.key, order_id, out_path)
    except EvidenceError as exc:
        cli.fail(str(exc))
    except OSError as exc:
        cli.fail(f"cannot write {out_path}: {exc.strerror}")
    except sqlite3.DatabaseError as exc:
        cli.fail(f"the station database cannot be read: {exc}: run `station verify`")
    finally:
        store.close()
    if json_out:
        cli.print_json(res)
    else:
        cli.out.print(f"wrote {out_path}: {res['records']} record(s) of order {order_id}, "
                      f"proved against signed head {res['tree_size']}")

@app.command("verify-bundle")
def verify_bundle_cmd(
    bundle: Annotated[Path, typer.Argument(help="evidence bundle zip")],
    public_key: Annotated[Optional[Path], typer.Option(
        help="the station's public key (PEM) obtained independently (`station key export`); without it the "
             "answer is at best UNVERIFIED")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Verify an evidence bundle without the station: the signed manifest and every file in it, the signed
    head, inclusion proofs, completeness of the order, decision files, image hashes. Exit 0 verified, 1 failed
    or unverified (no trusted key), 2 unusable input."""
    from station.evidence import EvidenceError, verify_bundle

    if not bundle.is_file():
        cli.fail(f"bundle {bundle} not found")
    try:
        res = verify_bundle(bundle, _read_key(public_key))
    except EvidenceError as exc:
        cli.fail(str(exc))
    if json_out:
        cli.print_json(res)
    else:
        status = {"verified": "[bold green]OK[/]", "unverified": "[bold yellow]UNVERIFIED[/]"}.get(
            res["status"], "[bold red]FAILED[/]")
        cli.out.print(f"bundle {status}: order {res['order_id']}, {res['records']} record(s), "
                      f"{res['images_checked']} image(s), head {res['tree_size']} (key {res['key_id']}, "
                      f"{res['key_source']})", highlight=False)
        if res["status"] == "unverified":
            cli.out.print("  unverified: no trusted key was given. The bundle is intact and consistent with the "
                          "key inside it, but anyone can make such a bundle with a key of their own. Get the "
                          "station's public key from the station (`station key export`) or the platform and "
                          "run again with --public-key FILE.", highlight=False)
        for p in res["problems"]:
            cli.out.print(f"  [red]{p}[/]", highlight=False)
    if not res["ok"]:
        raise typer.Exit(1)

# ------------------------------------------------------------------------------------ retention
@app.command()
def prune(
    budget_mb: Annotated[Optional[float], typer.Option(help="image budget (default: records.image_budget_mb)")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Retention: delete synced images, oldest first, until the images fit the budget (never unsynced ones)."""
    from station.records import StoreError

    cfg = cli.station_config(config, data_dir)
    budget = budget_mb if budget_mb is not None else cfg.records.image_budget_mb
    if budget is None:
        cli.fail("no image budget: pass --budget-mb or set records.image_budget_mb")
    if not 0 <= budget < float("inf"):  # also NaN: one clear line, not "pass --budget-mb" when it was passed
        cli.fail(f"--budget-mb {budget:g} is not a budget: pass a size in MB, 0 or more")
    store = open_store(cfg)
    try:
        rep = store.enforce_image_budget(int(budget * 1024 * 1024))
    except StoreError as exc:
        cli.fail(str(exc))
    finally:
        store.close()
    if json_out:
        cli.print_json(rep.to_json())
    else:
        cli.out.print(f"pruned {rep.pruned} synced image(s), freed {rep.freed_bytes} bytes; images now "
                      f"{rep.image_bytes} bytes (budget {rep.budget_bytes}; {rep.unsynced_bytes} unsynced)")
