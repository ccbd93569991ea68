"""Fleet commands: `station bench fleet` (its work in station/bench/fleet.py)."""

from __future__ import annotations

import signal
import sys
from typing import Annotated, Optional

import typer

from station.cli import common as cli


def _print_report(cli, report: dict) -> None:
    lat = report["batch_latency_ms"]
    cli.out.print(f"{report['stations']} stations x {report['records_per_station']} inspections "
                  f"({report['records']} records with overrides) on {report['database']}: "
                  f"{report['records_per_s']} records/s over {report['seconds']} s, batch latency p50 {lat['p50']} ms, "
                  f"p95 {lat['p95']} ms ({report['batches']} batches of {report['batch_size']}, "
                  f"{report['failed_attempts']} failed attempts retried)", highlight=False)
    for e in report["events"]:
        cli.out.print(f"  {e['at_s']:7.2f} s  {e['event']} at {e['progress']:.0%} on the platform"
                      + (f" ({e['detail']})" if e.get("detail") else ""), highlight=False)
    retried = report["heads_refused_then_proven"]
    cli.out.print(f"lost {report['lost']}, duplicated {report['duplicated']}, heads "
                  f"{'consistent' if report['heads_consistent'] else 'INCONSISTENT'}"
                  + (f" ({retried} refused for want of a proof, then proven)" if retried else "") + ", aggregates "
                  f"{'equal to the sum of the stations' if report['aggregates_equal'] else 'DIFFER'}"
                  + ("" if report["faults_mid_run"] else "; the faults did not all happen mid-run"), highlight=False)
    for m in report["aggregate_mismatches"]:
        cli.out.print(f"  [red]{m}[/]", highlight=False)
    for st in report["stations_detail"]:
        for p in st["problems"]:
            cli.out.print(f"  [red]{st['station_id']}: {p}[/]", highlight=False)


bench_app = typer.Typer()


@bench_app.command("fleet")
def bench_fleet(
    stations: Annotated[int, typer.Option(min=2, max=100, help="station processes")] = 20,
    records: Annotated[int, typer.Option(min=10, max=100000, help="inspections per station")] = 500,
    batch_size: Annotated[int, typer.Option(min=1, max=1000, help="records per push")] = 50,
    postgres_url: Annotated[Optional[str], typer.Option(
        envvar="STATION_BENCH_POSTGRES_URL",
        help="the platform's PostgreSQL (postgresql+psycopg://USER@HOST/DB); default: a throwaway cluster")] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """N station processes, each with its own data dir, sync concurrently to one platform on PostgreSQL; the
    platform is killed and restarted once mid-run and one station's network is cut and restored. Checks
    0 lost, 0 duplicated, every head consistent, aggregates equal to the sum of the stations; prints
    records/s and batch latency. Exit 1 if a check fails."""
    from station.bench.fleet import FleetError, FleetSettings, fleet_ok, run_fleet
    from station.server.pgcluster import PostgresUnavailable, ThrowawayPostgres

    if postgres_url is not None and not postgres_url.startswith(("postgresql://", "postgresql+psycopg://")):
        cli.fail(f"--postgres-url {postgres_url}: give a PostgreSQL URL, e.g. postgresql+psycopg://USER@HOST/DB")
    if postgres_url is not None and postgres_url.startswith("postgresql://"):
        postgres_url = "postgresql+psycopg://" + postgres_url.removeprefix("postgresql://")
    settings = FleetSettings(stations=stations, records=records, batch_size=batch_size)
    # SIGTERM unwinds like Ctrl-C: the throwaway cluster and the stations' folders are removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    say = None if json_out else (lambda msg: cli.err.print(msg, highlight=False))
    cluster = None
    try:
        if postgres_url is None:
            try:
                cluster = ThrowawayPostgres().start()
            except PostgresUnavailable as exc:
                cli.fail(f"bench fleet runs on PostgreSQL and none could be started here ({exc}): "
                         f"pass --postgres-url postgresql+psycopg://USER@HOST/DB")
            postgres_url = cluster.create_database("fleet")
            if say:
                say(f"throwaway PostgreSQL cluster in {cluster.root}")
        try:
            report = run_fleet(postgres_url, settings, progress=say)
        except FleetError as exc:
            cli.fail(f"the fleet benchmark could not run: {exc}", code=1)
        except Exception as exc:  # noqa: BLE001 - a database that cannot be reached is bad input, one line
            from sqlalchemy.exc import SQLAlchemyError

            if isinstance(exc, (SQLAlchemyError, ImportError)):
                cli.fail(f"cannot use the platform database {postgres_url}: {str(exc).splitlines()[0]}")
            raise
    finally:
        if cluster is not None:
            cluster.stop()
    if json_out:
        cli.print_json(report)
    else:
        _print_report(cli, report)
    if not fleet_ok(report):
        raise typer.Exit(1)
