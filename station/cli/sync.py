"""Sync commands: sync, serve-platform, the hidden crash-worker, and the `bench tamper` / `bench sync` /
`bench crash` benchmarks (their work in station.bench).

Exit codes: 0 ok; 1 a check failed (tampering found, sync could not finish); 2 bad input (clear message).
"""


import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from station.bench.crash import crash_worker as run_crash_worker
from station.bench.crash import run_crash_bench
from station.bench.sync import run_sync_bench
from station.cli import common as cli
from station.cli.common import ConfigOpt, DataDirOpt
from station.cli.records import open_store

TOKEN_ON_COMMAND_LINE = ("--token puts the token on the command line, where other users of this machine can read "
                         "it (ps, /proc/PID/cmdline): prefer --token-file FILE (mode 0600) or env {env}")


def _sync_settings(cfg, url: str | None = None, token: str | None = None, token_file: Path | None = None):
    from rich.markup import escape

    from station.sync import TOKEN_ENV, SyncError, read_token_file, settings_from_config

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



app = typer.Typer()
bench_app = typer.Typer()


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

    cfg = cli.station_config(config, data_dir)
    if status and retry_dead:
        cli.fail("--status only reads the state: run --retry-dead without it")
    store = open_store(cfg)
    try:
        if status:
            from station import licence_plate, webhooks

            st = read_status(store).to_json()
            # what else waits to leave the station: disposition webhooks and licence-plate labels
            st["webhooks"] = webhooks.status(cfg.station.data_dir / "webhooks.db")
            st["labels"] = licence_plate.labels_status(cfg.station.data_dir / "labels.db")
            if json_out:
                cli.print_json(st)
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
            cli.print_json(report)
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
        cli.print_json(res)
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
    report, seconds = run_sync_bench(records, batch_size)
    if json_out:
        cli.print_json(report)
    else:
        cli.out.print(f"synced {records} records in {seconds:.2f} s ({report['records_per_s']} records/s)")
    if not report["complete"] or report["on_server"] != records:
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
        cli.print_json(res)
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
    run_crash_worker(db, url, token, total)
