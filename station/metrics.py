"""Prometheus metrics, written by hand in the text exposition format (version 0.0.4; no client library).

Two users: the platform server (``station/server/metrics.py``: counters its handlers bump) and the station
(``station metrics --port P``: figures read from the station's own databases at each scrape, see
``StationMetrics``). The station side opens its databases read-only (``mode=ro``): a scrape never writes a
row and never takes the write lock from the inspecting station, and creates no database that is not there.
(Like any reader of a WAL database, SQLite may create its ``-wal``/``-shm`` side files, with the database's
own mode, 0600 for the station's.)
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: from a 5 ms stage to a slow batch of a thousand records.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

LabelPairs = tuple[tuple[str, str], ...]


class MetricKind(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class Sample:
    name: str  # the full sample name (``_total``, ``_bucket``, ``_sum``, ``_count`` included)
    labels: LabelPairs
    value: float


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    help: str
    kind: MetricKind
    samples: tuple[Sample, ...]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    if float(v).is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(float(v))


def render(families: Iterable[Family]) -> str:
    """The exposition text: per family a HELP and a TYPE line, then its samples ``name{labels} value``."""
    lines = []
    for fam in families:
        lines.append(f"# HELP {fam.name} {_escape_help(fam.help)}")
        lines.append(f"# TYPE {fam.name} {fam.kind.value}")
        for s in fam.samples:
            labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in s.labels)
            lines.append(f"{s.name}{{{labels}}} {format_value(s.value)}" if labels
                         else f"{s.name} {format_value(s.value)}")
    return "\n".join(lines) + "\n"


def _pairs(names: Sequence[str], values: Sequence[str]) -> LabelPairs:
    if len(names) != len(values):
        raise ValueError(f"labels {list(names)} need {len(names)} values, got {len(values)}")
    return tuple(zip(names, (str(v) for v in values)))


class Counter:
    """A monotonic counter per label set; thread-safe (handlers run on a thread pool)."""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        if not name.endswith("_total"):
            raise ValueError(f"counter {name} must end in _total")
        self.name, self.help, self.labels = name, help, tuple(labels)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *label_values: str, by: float = 1.0) -> None:
        if by < 0:
            raise ValueError("a counter only goes up")
        key = tuple(str(v) for v in label_values)
        _pairs(self.labels, key)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + by

    def value(self, *label_values: str) -> float:
        with self._lock:
            return self._values.get(tuple(str(v) for v in label_values), 0.0)

    def family(self) -> Family:
        with self._lock:
            items = sorted(self._values.items())
        if not items and not self.labels:
            items = [((), 0.0)]  # an unlabelled counter reads 0 before its first event, not "no data"
        samples = tuple(Sample(self.name, _pairs(self.labels, k), v) for k, v in items)
        # The family is named without ``_total`` (OpenMetrics style); Prometheus reads either.
        return Family(self.name[: -len("_total")], self.help, MetricKind.COUNTER, samples)


class Histogram:
    """Cumulative buckets, ``_sum`` and ``_count`` per label set; thread-safe."""

    def __init__(self, name: str, help: str, labels: Sequence[str] = (),
                 buckets: Sequence[float] = LATENCY_BUCKETS_S) -> None:
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError("histogram buckets must be increasing")
        self.name, self.help, self.labels = name, help, tuple(labels)
        self.buckets = tuple(float(b) for b in buckets)
        self._series: dict[tuple[str, ...], list] = {}  # key -> [per-bucket counts (not cumulative), sum, count]
        self._lock = threading.Lock()

    def observe(self, value: float, *label_values: str) -> None:
        key = tuple(str(v) for v in label_values)
        _pairs(self.labels, key)
        with self._lock:
            series = self._series.setdefault(key, [[0] * len(self.buckets), 0.0, 0])
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    series[0][i] += 1
                    break
            series[1] += value
            series[2] += 1

    def count(self, *label_values: str) -> int:
        with self._lock:
            series = self._series.get(tuple(str(v) for v in label_values))
            return series[2] if series else 0

    def family(self) -> Family:
        with self._lock:
            items = sorted((k, ([*v[0]], v[1], v[2])) for k, v in self._series.items())
        samples = []
        for key, (per_bucket, total, count) in items:
            base = _pairs(self.labels, key)
            running = 0
            for bound, n in zip(self.buckets, per_bucket):
                running += n
                samples.append(Sample(f"{self.name}_bucket", base + (("le", format_value(bound)),), running))
            samples.append(Sample(f"{self.name}_bucket", base + (("le", "+Inf"),), count))
            samples.append(Sample(f"{self.name}_sum", base, total))
            samples.append(Sample(f"{self.name}_count", base, count))
        return Family(self.name, self.help, MetricKind.HISTOGRAM, tuple(samples))


def gauge(name: str, help: str, values: Iterable[tuple[LabelPairs, float]]) -> Family:
    return Family(name, help, MetricKind.GAUGE, tuple(Sample(name, labels, v) for labels, v in values))


# ------------------------------------------------------------------------------------------- station side


def _read_only(path: Path) -> sqlite3.Connection | None:
    """A read-only connection, or None when the database does not exist yet (nothing in it to count)."""
    path = Path(path)
    if not path.is_file():
        return None
    return sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=5, check_same_thread=False)


def _table_exists(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


class StationMetrics:
    """The station's figures, read at each scrape from ``<data_dir>``: ``station.db`` (inspections, the sync
    outbox), ``webhooks.db`` (disposition events) and ``labels.db`` (licence-plate labels).

    Inspections are append-only and numbered (``seq``): each scrape reads only the rows added since the last
    one and adds them to the counters and stage histograms, so a scrape costs the new rows, not the whole
    history (a restart reads the history once). Overrides are counted apart (``station_overrides_total``):
    an item inspected once and overridden is one item."""

    def __init__(self, data_dir: Path, database_path: Path | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.database_path = Path(database_path) if database_path else self.data_dir / "station.db"
        self._lock = threading.Lock()
        self._last_seq = 0
        self.items = Counter("station_items_inspected_total", "Items inspected (overrides not counted)")
        self.decisions = Counter("station_decisions_total", "Decisions of the station's inspections by grade, "
                                 "disposition and whether they went to manual review",
                                 ("grade", "disposition", "review"))
        self.overrides = Counter("station_overrides_total", "Overrides of earlier decisions, by the new grade "
                                 "and disposition", ("grade", "disposition"))
        self.stage_seconds = Histogram("station_stage_duration_seconds", "Time per pipeline stage of each "
                                       "inspection (the record's timings)", ("stage",))
        self.malformed_timings = Counter("station_malformed_timings_total",
                                         "Inspections whose stored timings could not be read")

    def _read_new_inspections(self, db: sqlite3.Connection) -> None:
        rows = db.execute("SELECT seq, grade, disposition, review, overrides, timings_json FROM inspections "
                          "WHERE seq > ? ORDER BY seq", (self._last_seq,)).fetchall()
        for seq, grade, disposition, review, overrides, timings_json in rows:
            self._last_seq = seq
            if overrides:
                self.overrides.inc(grade, disposition)
                continue
            self.items.inc()
            self.decisions.inc(grade, disposition, "true" if review else "false")
            try:
                timings = json.loads(timings_json)
                stages = [(str(k), float(v)) for k, v in timings.items()]
            except (ValueError, TypeError, AttributeError):
                self.malformed_timings.inc()
                continue
            for stage, ms in stages:
                if math.isfinite(ms) and ms >= 0:
                    self.stage_seconds.observe(ms / 1000.0, stage)

    def families(self) -> list[Family]:
        """Every family; raises sqlite3.Error when a database cannot be read (the scrape answers 503)."""
        with self._lock:
            backlog: dict[str, float] = {"pending": 0, "dead_letter": 0}
            failures = 0.0
            db = _read_only(self.database_path)
            if db is not None:
                try:
                    if _table_exists(db, "inspections"):
                        self._read_new_inspections(db)
                    if _table_exists(db, "outbox"):
                        # the definitions of StationStore.pending_count and dead_letter_count
                        backlog["pending"] = db.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND "
                                                        "dead_at IS NULL").fetchone()[0]
                        backlog["dead_letter"] = db.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL "
                                                            "AND dead_at IS NOT NULL").fetchone()[0]
                    if _table_exists(db, "sync_state"):
                        row = db.execute("SELECT value FROM sync_state WHERE key='consecutive_failures'").fetchone()
                        failures = float(row[0]) if row and str(row[0]).isdigit() else 0.0
                finally:
                    db.close()
            from station.licence_plate import LabelState
            from station.webhooks import EventState

            webhooks = self._counts(self.data_dir / "webhooks.db", "events", [s.value for s in EventState])
            labels = self._counts(self.data_dir / "labels.db", "labels", [s.value for s in LabelState])
            return [
                self.items.family(), self.decisions.family(), self.overrides.family(), self.stage_seconds.family(),
                self.malformed_timings.family(),
                gauge("station_sync_backlog", "Records waiting for the platform (pending) and refused by it for "
                      "good (dead_letter)", [((("state", k),), v) for k, v in backlog.items()]),
                gauge("station_sync_consecutive_failures", "Sync attempts failed in a row", [((), failures)]),
                gauge("station_webhook_events", "Disposition webhook events by state",
                      [((("state", k),), v) for k, v in webhooks.items()]),
                gauge("station_labels", "Licence-plate labels by state",
                      [((("state", k),), v) for k, v in labels.items()]),
            ]

    @staticmethod
    def _counts(path: Path, table: str, states: Sequence[str]) -> dict[str, float]:
        """Rows per ``state`` of an outbox (webhooks.db events, labels.db labels); zeros when there is none."""
        out = {s: 0.0 for s in states}
        db = _read_only(path)
        if db is None:
            return out
        try:
            if _table_exists(db, table):
                for state, n in db.execute(f"SELECT state, COUNT(*) FROM {table} GROUP BY state"):
                    if state in out:
                        out[state] = float(n)
        finally:
            db.close()
        return out

    def exposition(self) -> str:
        return render(self.families())


class _Handler(BaseHTTPRequestHandler):
    metrics: StationMetrics  # set on the subclass that ``serve_station_metrics`` makes

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.split("?", 1)[0] != "/metrics":
            self._answer(404, "not found: the metrics are at /metrics\n")
            return
        try:
            body = self.metrics.exposition()
        except sqlite3.Error as exc:
            self._answer(503, f"station database unreadable: {exc}\n")
            return
        self._answer(200, body, CONTENT_TYPE)

    def _answer(self, status: int, body: str, content_type: str = "text/plain; charset=utf-8") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # scrapes every few seconds: no log line each
        return


def station_metrics_server(metrics: StationMetrics, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A bound HTTP server answering ``GET /metrics`` (not yet serving: call ``serve_forever``). Raises
    OSError when the address is taken or cannot be bound."""
    handler = type("StationMetricsHandler", (_Handler,), {"metrics": metrics})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
