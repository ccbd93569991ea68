"""Records, evidence and sync commands: verify, evidence, verify-bundle, prune, sync, serve-platform, and the
`bench sync` / `bench crash` benchmarks. Registered into the main CLI by ``register(app, bench_app)``.

Exit codes: 0 ok; 1 a check failed (tampering found, sync could not finish); 2 bad input (clear message).
"""


import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Optional

import typer


def _cli():
    from station import cli

    return cli


def _open_store(cfg):
    from station.records import StationStore, StoreError

    cli = _cli()
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


TOKEN_ON_COMMAND_LINE = ("--token puts the token on the command line, where other users of this machine can read "
                         "it (ps, /proc/PID/cmdline): prefer --token-file FILE (mode 0600) or env {env}")


def _sync_settings(cfg, url: str | None = None, token: str | None = None, token_file: Path | None = None):
    from rich.markup import escape

    from station.sync import TOKEN_ENV, SyncError, read_token_file, settings_from_config

    cli = _cli()
    if url is not None and not url.lower().startswith(("http://", "https://")):
        cli.fail(f"--url {url}: the platform URL must start with http:// or https:// "
                 f"(e.g. http://platform:8700)")
    if token is not None and token_file is not None:
        cli.fail("pass either --token or --token-file, not both (prefer --token-file)")
    try:
        if token_file is not None:
            token, warning = read_token_file(token_file)
            if warning:
                cli.err.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)
        elif token is not None:
            cli.err.print(f"[bold yellow]warning:[/] {escape(TOKEN_ON_COMMAND_LINE.format(env=TOKEN_ENV))}",
                          highlight=False)
        return settings_from_config(cfg.sync, url, token)
    except SyncError as exc:
        cli.fail(str(exc))


def _read_key(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        _cli().fail(f"cannot read public key {path}: {exc.strerror}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    cli = _cli()
    ConfigOpt, DataDirOpt = cli.ConfigOpt, cli.DataDirOpt

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

        cfg = cli._config(config, data_dir)
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
            cli._print_json(out)
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

        cfg = cli._config(config, data_dir)
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
            cli._print_json(res)
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

        cfg = cli._config(config, data_dir)
        store = _open_store(cfg)
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
            cli._print_json(res)
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
            cli._print_json(res)
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

        cfg = cli._config(config, data_dir)
        budget = budget_mb if budget_mb is not None else cfg.records.image_budget_mb
        if budget is None:
            cli.fail("no image budget: pass --budget-mb or set records.image_budget_mb")
        if not 0 <= budget < float("inf"):  # also NaN: one clear line, not "pass --budget-mb" when it was passed
            cli.fail(f"--budget-mb {budget:g} is not a budget: pass a size in MB, 0 or more")
        store = _open_store(cfg)
        try:
            rep = store.enforce_image_budget(int(budget * 1024 * 1024))
        except StoreError as exc:
            cli.fail(str(exc))
        finally:
            store.close()
        if json_out:
            cli._print_json(rep.to_json())
        else:
            cli.out.print(f"pruned {rep.pruned} synced image(s), freed {rep.freed_bytes} bytes; images now "
                          f"{rep.image_bytes} bytes (budget {rep.budget_bytes}; {rep.unsynced_bytes} unsynced)")

    # ------------------------------------------------------------------------------------ sync
    @app.command()
    def sync(
        once: Annotated[bool, typer.Option("--once", help="push everything pending, pull, and exit")] = False,
        status: Annotated[bool, typer.Option("--status", help="print the sync state only (no network)")] = False,
        retry_dead: Annotated[bool, typer.Option(
            "--retry-dead", help="queue the records the platform refused (dead letters) again, after a fix; "
                                 "with --once or alone it then syncs")] = False,
        url: Annotated[Optional[str], typer.Option(help="platform URL (default: sync.url)")] = None,
        token_file: Annotated[Optional[Path], typer.Option(
            "--token-file", help="file holding the station token on its first line (chmod 600)")] = None,
        token: Annotated[Optional[str], typer.Option(
            help="station token; visible to other users of this machine (ps): prefer --token-file or env "
                 "STATION_SYNC_TOKEN")] = None,
        json_out: Annotated[bool, typer.Option("--json")] = False,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """Push the outbox to the platform and pull RMAs/catalogue updates (forever, or --once). The token comes
        from --token-file, env STATION_SYNC_TOKEN or the config's sync.token. Records the platform refuses for
        good are set aside (dead letters, listed by --status) and the rest flow on."""
        import threading

        from rich.markup import escape

        from station.records import StoreError
        from station.sync import SyncClient, SyncError, read_status

        cfg = cli._config(config, data_dir)
        if status and retry_dead:
            cli.fail("--status only reads the state: run --retry-dead without it")
        store = _open_store(cfg)
        try:
            if status:
                from station import licence_plate, webhooks

                st = read_status(store).to_json()
                # what else waits to leave the station: disposition webhooks and licence-plate labels
                st["webhooks"] = webhooks.status(cfg.station.data_dir / "webhooks.db")
                st["labels"] = licence_plate.labels_status(cfg.station.data_dir / "labels.db")
                if json_out:
                    cli._print_json(st)
                else:
                    # escaped: a stored error naming a TOML section ("set [sync] token") is text, not markup
                    cli.out.print(f"pending {st['pending']}, last success {st['last_success'] or 'never'}, "
                                  f"last error {escape(st['last_error'] or '-')}, "
                                  f"refused by the platform {st['dead_letter']}", highlight=False)
                    for d in st["dead_letters"]:
                        cli.out.print(f"  refused {d['record_id']} (order {escape(d['order_id'][:40])}): "
                                      f"{escape(d['reason'])}", highlight=False)
                    if st["dead_letter"] > len(st["dead_letters"]):
                        cli.out.print(f"  ... and {st['dead_letter'] - len(st['dead_letters'])} more "
                                      f"(--json lists the oldest {len(st['dead_letters'])})")
                    if st["dead_letter"]:
                        cli.out.print("  fix the cause, then run `station sync --retry-dead` to send them again")
                    wh, lb = st["webhooks"], st["labels"]
                    cli.out.print(f"webhooks: pending {wh['pending']}, delivered {wh['delivered']}, dead letters "
                                  f"{wh['dead']}, last error {escape(wh['last_error'] or '-')}", highlight=False)
                    for d in wh["dead_letters"]:
                        cli.out.print(f"  refused {escape(str(d.get('key')))} ({d.get('status')}): "
                                      f"{escape(str(d.get('error')))}", highlight=False)
                    cli.out.print(f"labels: printed {lb['printed']}, unprinted {lb['unprinted']}", highlight=False)
                return
            settings = _sync_settings(cfg, url, token, token_file)
            if retry_dead:
                from station.webhooks import WebhookError, WebhookOutbox

                try:
                    requeued = store.retry_dead()
                    hooks = cfg.station.data_dir / "webhooks.db"
                    if hooks.exists():
                        with WebhookOutbox(hooks) as outbox:
                            requeued_hooks = outbox.requeue_dead()
                        cli.err.print(f"queued {requeued_hooks} refused webhook event(s) again")
                except (StoreError, WebhookError) as exc:
                    cli.fail(str(exc))
                cli.err.print(f"queued {requeued} refused record(s) again")
            client = SyncClient(store, settings)
            if not once:
                stop = threading.Event()
                cli.err.print(f"syncing to {settings.url} (Ctrl-C to stop)")

                def show(st) -> None:
                    if json_out:
                        sys.stdout.write(json.dumps(st.to_json()) + "\n")
                        sys.stdout.flush()

                try:
                    client.run_forever(stop, on_status=show)
                except KeyboardInterrupt:
                    stop.set()
                return
            error = None
            try:
                res = client.sync_once()
            except SyncError as exc:
                if exc.local:  # the station's disk (full, read-only), not the platform: bad input, exit 2
                    cli.fail(f"sync stopped: {exc}")
                res, error = None, str(exc)
            finally:
                client.close()
            st = read_status(store).to_json()
            report = {**st, "ok": error is None, "server": settings.url,
                      **({k: res[k] for k in ("pushed", "created", "existing", "conflicts", "images", "dead",
                                              "pulled")} if res else {"error": error})}
            if json_out:
                cli._print_json(report)
            elif error is None:
                cli.out.print(f"pushed {res['pushed']} record(s) ({res['created']} new), {res['images']} image(s); "
                              f"pending {st['pending']}")
                if res["dead"] or st["dead_letter"]:
                    cli.err.print(f"[bold yellow]{res['dead']} record(s) refused by the platform this time, "
                                  f"{st['dead_letter']} in all[/]: see `station sync --status`", highlight=False)
            else:
                cli.err.print(f"[bold red]sync failed:[/] {escape(error)} ({st['pending']} pending; retry later)",
                              highlight=False)
            if error is not None:
                raise typer.Exit(1)
        finally:
            store.close()

    # ------------------------------------------------------------------------------------ platform server
    @app.command("serve-platform")
    def serve_platform(
        database_url: Annotated[str, typer.Option(envvar="PLATFORM_DATABASE_URL",
                                                  help="SQLAlchemy URL (sqlite:///platform.db, postgresql+psycopg://...)")]
        = "sqlite:///platform.db",
        host: Annotated[str, typer.Option()] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=1, max=65535)] = 8700,
        token: Annotated[Optional[list[str]], typer.Option(
            help="create a token: ROLE:SUBJECT:TOKEN (role station, inspector, supervisor or admin); repeatable; "
                 "visible to other users of this machine (ps): prefer --token-file")] = None,
        token_file: Annotated[Optional[Path], typer.Option(
            "--token-file", help="create the tokens in FILE: one ROLE:SUBJECT:TOKEN per line, # comments "
                                 "(chmod 600)")] = None,
        metrics_token_file: Annotated[Optional[Path], typer.Option(
            "--metrics-token-file", help="file holding the token Prometheus scrapes GET /metrics with "
                                         "(chmod 600); admin tokens read /metrics too")] = None,
    ) -> None:
        """Run the platform server (API under /api/v1/, docs at /docs, Prometheus metrics at /metrics)."""
        from rich.markup import escape
        from sqlalchemy.exc import SQLAlchemyError

        from station.server.api import ROLES, create_app, create_token, init_db, make_engine
        from station.server.runner import serve
        from station.server.schema import SchemaError
        from station.sync import SyncError, read_token_file

        lines: list[tuple[str, str]] = [("--token", t) for t in token or []]
        if token:
            cli.err.print("[bold yellow]warning:[/] --token puts tokens on the command line, where other users of "
                          "this machine can read them (ps, /proc/PID/cmdline): prefer --token-file FILE (mode 0600)",
                          highlight=False)
        if token_file is not None:
            try:
                _, warning = read_token_file(token_file)  # the same checks as the station's token file
                text = token_file.read_text(encoding="utf-8")
            except (SyncError, OSError, UnicodeDecodeError) as exc:
                cli.fail(str(exc) if isinstance(exc, SyncError) else f"cannot read token file {token_file}: {exc}")
            if warning:
                cli.err.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)
            lines += [(f"{token_file} line {n}", ln.strip()) for n, ln in enumerate(text.splitlines(), 1)
                      if ln.strip() and not ln.strip().startswith("#")]
        metrics_token = None
        if metrics_token_file is not None:
            try:
                metrics_token, warning = read_token_file(metrics_token_file)
            except SyncError as exc:
                cli.fail(str(exc))
            if warning:
                cli.err.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)
            if len(metrics_token) < 16:
                cli.fail(f"the metrics token in {metrics_token_file} is shorter than 16 characters: "
                         f"write one from `openssl rand -hex 16`")
        specs = []
        for where, t in lines:
            parts = t.split(":", 2)
            if len(parts) != 3 or parts[0] not in ROLES or not parts[1] or len(parts[2]) < 8:
                shown = t if where == "--token" else f"{parts[0]}:{parts[1] if len(parts) > 1 else ''}:..."
                cli.fail(f"bad token in {where} ({shown!r}): use ROLE:SUBJECT:TOKEN, role one of "
                         f"{', '.join(ROLES)}, token at least 8 characters")
            specs.append(parts)
        try:
            engine = make_engine(database_url)
            init_db(engine)
            for role, subject, tok in specs:
                create_token(engine, role, subject, tok)
        except (SQLAlchemyError, ImportError, ValueError, SchemaError) as exc:
            cli.fail(f"cannot open the platform database {database_url}: {str(exc).splitlines()[0]}")
        cli.err.print(f"platform on http://{host}:{port} (API /api/v1, docs /docs), database {database_url}")
        serve(create_app(engine=engine, metrics_token=metrics_token), host, port)

    # ------------------------------------------------------------------------------------ benches
    @bench_app.command("tamper")
    def bench_tamper(
        json_out: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Tamper suite: alter an evidence bundle (83 ways) and a station's data (43 ways), run `station
        verify-bundle` / `station verify` on each and count what was caught; exit 1 if any alteration passed
        or gave a traceback."""
        from station.tamper import run_suite

        with tempfile.TemporaryDirectory(prefix="station-tamper-") as d:
            res = run_suite(Path(d))
        bad = not res["controls_ok"] or any(res[k]["missed"] or res[k]["traceback"] for k in ("bundle", "database"))
        if json_out:
            cli._print_json(res)
        else:
            for kind in ("bundle", "database"):
                r = res[kind]
                cli.out.print(f"{kind} alterations: {r['tried']} tried, {r['caught'] + r['refused']} caught "
                              f"({r['caught']} failed verification, {r['refused']} refused as unusable), "
                              f"{r['missed']} missed, {r['traceback']} tracebacks", highlight=False)
                for u in r["unexpected"]:
                    cli.out.print(f"  [red]{u['result']}: {u['name']}: {u['message'][:200]}[/]", highlight=False)
            if not res["controls_ok"]:
                cli.out.print("  [red]the untouched bundle or store did not verify: the suite proves nothing[/]")
        if bad:
            raise typer.Exit(1)

    @bench_app.command("sync")
    def bench_sync(
        records: Annotated[int, typer.Option(min=1, help="records to sync")] = 10000,
        batch_size: Annotated[int, typer.Option(min=1, max=1000)] = 500,
        json_out: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Sync N records (one image each, thumbnails inline, full images uploaded) to a local platform."""
        from station.server.api import create_app, create_token, init_db, make_engine
        from station.server.runner import ServerThread
        from station.sync import SyncClient, SyncSettings, wait_until_synced

        with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
            tmpd = Path(tmp)
            t0 = time.perf_counter()
            store = _fill_store(tmpd / "station", records)
            setup_s = time.perf_counter() - t0
            engine = make_engine(f"sqlite:///{tmpd / 'platform.db'}")
            init_db(engine)
            tok = create_token(engine, "station", "bench-station")
            with ServerThread(create_app(engine=engine)) as srv:
                client = SyncClient(store, SyncSettings(url=srv.url, token=tok, batch_size=batch_size, pull=False))
                t1 = time.perf_counter()
                done = wait_until_synced(client, deadline_s=600)
                seconds = time.perf_counter() - t1
                client.close()
            from sqlalchemy import func, select
            from sqlalchemy.orm import Session

            from station.server.models import Image, Record

            with Session(engine) as s:
                on_server = s.scalar(select(func.count()).select_from(Record))
                thumbs = s.scalar(select(func.count()).select_from(Image).where(Image.thumbnail.is_not(None)))
            store.close()
            engine.dispose()
        report = {"records": records, "seconds": round(seconds, 3), "records_per_s": round(records / seconds, 1),
                  "on_server": on_server, "thumbnails_on_server": thumbs, "complete": done,
                  "setup_seconds": round(setup_s, 2)}
        if json_out:
            cli._print_json(report)
        else:
            cli.out.print(f"synced {records} records in {seconds:.2f} s ({report['records_per_s']} records/s)")
        if not done or on_server != records:
            raise typer.Exit(1)

    @bench_app.command("crash")
    def bench_crash(
        trials: Annotated[int, typer.Option(min=1, help="SIGKILLs of the inspecting+syncing process")] = 100,
        per_trial: Annotated[int, typer.Option(min=1, help="inspections planned per trial")] = 5,
        seed: Annotated[int, typer.Option()] = 0,
        json_out: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Kill a process that inspects and syncs with SIGKILL at random moments, restart it, and check that every
        inspection is on the station and on the platform exactly once and that the evidence log verifies."""
        res = run_crash_bench(trials, per_trial, seed)
        if json_out:
            cli._print_json(res)
        else:
            cli.out.print(f"{res['trials']} kills, {res['inspections']} inspections: lost {res['lost']}, "
                          f"duplicated {res['duplicated']}, evidence log {'verifies' if res['verify_ok'] else 'FAILS'}")
        if res["lost"] or res["duplicated"] or not res["verify_ok"]:
            raise typer.Exit(1)

    @app.command("crash-worker", hidden=True)
    def crash_worker(
        db: Annotated[Path, typer.Option()],
        url: Annotated[str, typer.Option()],
        total: Annotated[int, typer.Option()],
    ) -> None:
        """(bench crash) inspect CRASH-00000.. up to --total while syncing; exits when all are synced. The
        token comes in env STATION_SYNC_TOKEN (never on the command line)."""
        from station.sync import TOKEN_ENV

        token = os.environ.get(TOKEN_ENV)
        if not token:
            cli.fail(f"set env {TOKEN_ENV} to the station token")
        _crash_worker(db, url, token, total)


# ------------------------------------------------------------------------------------------- bench helpers


def _bench_record(i: int, sha: str, station_id: str, order_prefix: str = "BENCH"):
    from station.domain import Decision, Disposition, Grade, LiabilityShare, Party, ReturnReason, ReturnRequest
    from station.records import record_from_parts

    reasons = list(ReturnReason)
    dec = Decision(Grade.B, Disposition.OPEN_BOX,
                   (LiabilityShare(Party.BRAND, 0.5, "L-BENCH", "bench"), LiabilityShare(Party.STREAMER, 0.5, "L-BENCH",
                                                                                         "bench")),
                   False, ("G-BENCH",), ("bench record",), 0.9)
    req = ReturnRequest(f"{order_prefix}-{i:05d}", "GAD-EARBUD-X2", reasons[i % len(reasons)], f"U-{i}", "live",
                        f"streamer-{i % 7}", f"brand-{i % 5}", "carrier-1")
    return record_from_parts(req, [], dec, 2, [("front", sha)], "bench-model", station_id, {"record": 1.0}, "bench")


def _bench_image(rng, i: int):
    import numpy as np

    img = np.empty((120, 160, 3), np.uint8)
    img[:] = rng.integers(40, 220, 3, dtype=np.uint8)
    x, y = (i * 7) % 140, (i // 20) % 100
    img[y:y + 20, x:x + 20] = (i % 256, (i // 256) % 256, 255 - i % 256)
    return img


def _fill_store(dirpath: Path, n: int):
    import numpy as np

    from station.records import StationStore

    store = StationStore(dirpath / "station.db").open()
    rng = np.random.default_rng(0)
    batch = []
    for i in range(n):
        sha = store.put_image(_bench_image(rng, i)).sha256
        batch.append(_bench_record(i, sha, "bench-station"))
        if len(batch) == 500:
            store.append_many(batch)
            batch = []
    store.append_many(batch)
    return store


def _crash_worker(db: Path, url: str, token: str, total: int) -> None:
    import threading

    import numpy as np

    from station.records import StationStore
    from station.sync import SyncClient, SyncError, SyncSettings

    store = StationStore(db).open()
    sync_store = StationStore(db).open()
    client = SyncClient(sync_store, SyncSettings(url=url, token=token, batch_size=7, pull=False, timeout_s=5))
    stop = threading.Event()

    def syncer() -> None:
        while not stop.is_set():
            try:
                client.sync_once()
            except SyncError:
                pass
            stop.wait(0.005)

    th = threading.Thread(target=syncer, daemon=True)
    th.start()
    print("ready", flush=True)
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    done = {r[0] for r in store.db.execute("SELECT order_id FROM inspections WHERE order_id LIKE 'CRASH-%'")}
    for i in range(total):
        if f"CRASH-{i:05d}" in done:
            continue
        sha = store.put_image(_bench_image(rng, i)).sha256
        store.append(_bench_record(i, sha, "crash-station", "CRASH"))
        time.sleep(rng.uniform(0, 0.02))  # items arrive spaced, as on a line
    stop.set()
    th.join()
    while sync_store.pending_count():
        try:
            client.sync_once()
        except SyncError:
            time.sleep(0.05)
    print("done", flush=True)


def run_crash_bench(trials: int, per_trial: int, seed: int) -> dict:
    """The crash test: returns {"trials", "inspections", "lost", "duplicated", "verify_ok", ...}."""
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from station.records import StationStore
    from station.server.api import create_app, create_token, init_db, make_engine
    from station.server.models import Record
    from station.server.runner import ServerThread

    rng = random.Random(seed)
    total = trials * per_trial
    kills = mid_run = 0
    with tempfile.TemporaryDirectory(prefix="bench-crash-") as tmp:
        tmpd = Path(tmp)
        db = tmpd / "station" / "station.db"
        engine = make_engine(f"sqlite:///{tmpd / 'platform.db'}")
        init_db(engine)
        tok = create_token(engine, "station", "crash-station")
        with ServerThread(create_app(engine=engine)) as srv:
            from station.sync import TOKEN_ENV

            cmd = [sys.executable, "-m", "station.cli", "crash-worker", "--db", str(db), "--url", srv.url,
                   "--total", str(total)]
            env = {**os.environ, TOKEN_ENV: tok}  # not in argv: other users could read it there
            for _ in range(trials):
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
                line = proc.stdout.readline()  # "ready": the store is open and the syncer runs
                if line.strip() == "ready":
                    time.sleep(rng.uniform(0.0, 0.03 * per_trial))
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    kills += 1
                proc.wait()
                proc.stdout.close()
                with StationStore(db) as probe:
                    n_done = probe.db.execute("SELECT COUNT(*) FROM inspections").fetchone()[0]
                    mid_run += int(n_done < total or probe.pending_count() > 0)
            # Final restart, not killed: finishes what is left and syncs everything.
            final = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        with StationStore(db) as store:
            counts = dict(store.db.execute(
                "SELECT order_id, COUNT(*) FROM inspections WHERE order_id LIKE 'CRASH-%' GROUP BY order_id"))
            report = store.verify()
            pending = store.pending_count()
        with Session(engine) as s:
            server_counts = dict(s.execute(select(Record.order_id, func.count()).where(
                Record.station_id == "crash-station").group_by(Record.order_id)).all())
        engine.dispose()
    expected = {f"CRASH-{i:05d}" for i in range(total)}
    lost = len(expected - set(counts)) + len(expected - set(server_counts))
    duplicated = sum(c - 1 for c in counts.values()) + sum(c - 1 for c in server_counts.values())
    return {"trials": trials, "kills": kills, "kills_before_all_synced": mid_run, "inspections": total, "on_station": len(counts),
            "on_server": len(server_counts), "lost": lost, "duplicated": duplicated, "pending": pending,
            "verify_ok": report.ok, "worker_rc": final.returncode,
            "problems": list(report.problems)[:5]}
