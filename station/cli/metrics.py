"""`station metrics [--host 127.0.0.1] [--port 9108] [--once]`: the station's Prometheus metrics.

Serves ``GET /metrics`` (items inspected, decisions by grade and disposition, stage latency histograms from
the records' timings, sync backlog and dead letters, webhook and label backlogs), read from the data dir at each scrape without
writing anything (station/metrics.py). The metrics carry no token: they listen on 127.0.0.1 unless told.
No `from __future__ import annotations` here: typer must see the option types of the nested commands.
"""

import ipaddress
import signal
import sqlite3
import sys
import threading
from typing import Annotated

import typer

from station.cli.common import ConfigOpt, DataDirOpt, err, fail, station_config

DEFAULT_PORT = 8701  # beside the platform's 8700


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


app = typer.Typer()


@app.command()
def metrics(
    host: Annotated[str, typer.Option(help="address to listen on; anything but loopback exposes the metrics "
                                           "(no token) to the network")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port (0: any free port, printed)")] = DEFAULT_PORT,
    once: Annotated[bool, typer.Option("--once", help="print the metrics once to stdout and exit (e.g. for "
                                                      "node_exporter's textfile collector)")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Serve the station's Prometheus metrics at http://HOST:PORT/metrics until stopped (Ctrl-C, SIGTERM)."""
    from station.metrics import StationMetrics, station_metrics_server

    cfg = station_config(config, data_dir)
    collector = StationMetrics(cfg.station.data_dir, cfg.database_path())
    if once:
        try:
            sys.stdout.write(collector.exposition())
        except sqlite3.Error as exc:
            fail(f"cannot read the station database {collector.database_path}: {exc}: run `station verify`")
        return
    if not _is_loopback(host):
        err.print(f"[bold yellow]warning:[/] metrics on {host} are readable by anyone who can reach it "
                  f"(no token): keep them on 127.0.0.1 behind a proxy, or firewall the port", highlight=False)
    try:
        server = station_metrics_server(collector, host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}: pick another --port or --host")
    bound = server.server_address[1]
    err.print(f"station metrics on http://{host}:{bound}/metrics (data dir {cfg.station.data_dir})",
              highlight=False)
    # serve_forever in a thread: a signal handler may then call shutdown(), which waits for it
    thread = threading.Thread(target=server.serve_forever, name="station-metrics", daemon=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    thread.start()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
