"""The platform's Prometheus endpoint, run for real on 127.0.0.1: who may scrape it (an admin token or the
metrics token, nobody else), that it counts what happened (records by station and grade, batches and their
latency, refused heads, 4xx/5xx answers), and that the text is the exposition format, checked line by line by
a parser written here, apart from the writer in station/metrics.py. On SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid

import httpx
import pytest
from fastapi import FastAPI

from station.evidence import StationKey, leaf_hash, merkle_root, record_leaf_data
from station.server.api import create_app, create_token, init_db, make_engine
from station.server.metrics import PlatformMetrics, StatusCountingMiddleware
from station.server.runner import ServerThread
from tests.postgres_support import BACKENDS, backend_url, postgres_server  # noqa: F401 - a fixture

METRICS_TOKEN = "scrape-secret-0123456789"

# ------------------------------------------------------------------------------ an exposition parser
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"^(?P<name>{NAME})(?:\{{(?P<labels>(?:{LABEL})(?:,{LABEL})*)?\}})? (?P<value>\S+)$")
VALUE = re.compile(r"^(?:[+-]?Inf|NaN|[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)$")
KINDS = {"counter", "gauge", "histogram", "summary", "untyped"}


class ExpositionError(ValueError):
    pass


def _labels(text: str | None) -> dict[str, str]:
    out = {}
    for m in re.finditer(rf'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"', text or ""):
        if m.group(1) in out:
            raise ExpositionError(f"label {m.group(1)} twice")
        out[m.group(1)] = m.group(2).replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
    return out


def parse_exposition(text: str) -> dict[str, dict]:
    """family name -> {"type", "help", "samples": [(sample name, labels, value)]}; ExpositionError naming the
    line for anything that is not the text format (version 0.0.4) or breaks a histogram's rules."""
    if not text.endswith("\n"):
        raise ExpositionError("the text must end with a newline")
    families: dict[str, dict] = {}
    current = None
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                if not re.fullmatch(NAME, parts[2]):
                    raise ExpositionError(f"line {n}: bad metric name {parts[2]!r}")
                fam = families.setdefault(parts[2], {"type": None, "help": None, "samples": []})
                key = parts[1].lower()
                if fam[key] is not None:
                    raise ExpositionError(f"line {n}: second {parts[1]} for {parts[2]}")
                if fam["samples"]:
                    raise ExpositionError(f"line {n}: {parts[1]} after the samples of {parts[2]}")
                value = parts[3] if len(parts) == 4 else ""
                if key == "type" and value not in KINDS:
                    raise ExpositionError(f"line {n}: unknown type {value!r}")
                fam[key] = value
                current = parts[2]
            continue
        m = SAMPLE.match(line)
        if not m or not VALUE.match(m.group("value")):
            raise ExpositionError(f"line {n}: not `name{{labels}} value`: {line!r}")
        name = m.group("name")
        owner = next((f for f in (name, re.sub(r"_(total|bucket|sum|count)$", "", name)) if f in families), None)
        if owner is None or owner != current:
            raise ExpositionError(f"line {n}: sample {name} outside its family's block (TYPE first)")
        families[owner]["samples"].append((name, _labels(m.group("labels")), float(m.group("value"))))
    for fname, fam in families.items():
        if fam["type"] is None or fam["help"] is None:
            raise ExpositionError(f"{fname}: needs HELP and TYPE lines")
        if fam["type"] == "counter" and any(not s[0].endswith("_total") or s[2] < 0 for s in fam["samples"]):
            raise ExpositionError(f"{fname}: counter samples are NAME_total and never negative")
        if fam["type"] == "histogram":
            _check_histogram(fname, fam["samples"])
    return families


def _check_histogram(fname: str, samples: list) -> None:
    series: dict[tuple, dict] = {}
    for name, labels, value in samples:
        base = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        s = series.setdefault(base, {"buckets": [], "sum": None, "count": None})
        if name == f"{fname}_bucket":
            s["buckets"].append((float(labels["le"]), value))
        elif name == f"{fname}_sum":
            s["sum"] = value
        elif name == f"{fname}_count":
            s["count"] = value
        else:
            raise ExpositionError(f"{fname}: stray sample {name}")
    for base, s in series.items():
        bounds = [b for b, _ in s["buckets"]]
        counts = [c for _, c in s["buckets"]]
        if not bounds or bounds != sorted(bounds) or not math.isinf(bounds[-1]):
            raise ExpositionError(f"{fname}{dict(base)}: buckets must increase and end at +Inf")
        if counts != sorted(counts):
            raise ExpositionError(f"{fname}{dict(base)}: bucket counts must be cumulative")
        if s["count"] != counts[-1] or s["sum"] is None:
            raise ExpositionError(f"{fname}{dict(base)}: _count must equal the +Inf bucket, _sum is needed")


def value_of(families: dict, sample: str, **labels: str) -> float:
    """The value of the one sample of that name whose labels include ``labels``; 0 when there is none."""
    fam = families.get(sample) or families.get(re.sub(r"_(total|bucket|sum|count)$", "", sample))
    hits = [v for name, lab, v in (fam or {"samples": []})["samples"]
            if name == sample and all(lab.get(k) == v for k, v in labels.items())]
    assert len(hits) <= 1, f"{sample}{labels}: {len(hits)} samples"
    return hits[0] if hits else 0.0


def test_the_parser_refuses_what_is_not_the_exposition_format():
    good = '# HELP a_total A thing.\n# TYPE a_total counter\na_total{x="1"} 3\n'
    assert value_of(parse_exposition(good), "a_total", x="1") == 3
    for bad in (good.rstrip("\n"),                                        # no final newline
                good + "b 1\n",                                           # sample without a family
                good.replace('{x="1"}', "{x=1}"),                         # unquoted label value
                good.replace(" 3\n", " three\n"),                         # not a number
                good.replace("counter", "countr"),                        # unknown type
                good + "# TYPE a_total counter\n",                        # TYPE twice / after samples
                "# HELP h H\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
                "# HELP h H\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n"):
        with pytest.raises(ExpositionError):
            parse_exposition(bad)


# ------------------------------------------------------------------------------ the platform


@pytest.fixture(params=BACKENDS)
def platform(request, tmp_path):
    engine = make_engine(backend_url(request, tmp_path))
    init_db(engine)
    tokens = {"st1": create_token(engine, "station", "st-1"), "st2": create_token(engine, "station", "st-2"),
              "sup": create_token(engine, "supervisor", "sue"), "admin": create_token(engine, "admin", "root")}
    with ServerThread(create_app(engine=engine, metrics_token=METRICS_TOKEN)) as srv:
        clients = {k: httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {t}"}, timeout=60)
                   for k, t in tokens.items()}
        clients["anon"] = httpx.Client(base_url=srv.url, timeout=60)
        clients["scraper"] = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                                          timeout=60)
        yield clients
        for c in clients.values():
            c.close()
    engine.dispose()


def make_record(i: int, station_id: str = "st-1", grade: str = "C", disposition: str = "refurbish") -> dict:
    decision = {"grade": grade, "disposition": disposition, "rules_fired": ["G"],
                "liability": [{"party": "brand", "share": 1.0, "rule": "L"}]}
    rec = {"record_id": uuid.uuid4().hex, "created_at": "2026-12-01T10:00:00.000+00:00", "station_id": station_id,
           "order_id": f"O-{i}", "sku": "SKU-1", "unit_code": f"U-{i}", "reason": "quality_issue", "channel": "live",
           "streamer": "s", "brand": "b", "carrier": "c", "grade": grade, "disposition": disposition, "review": 0,
           "lane": 1, "confidence": 0.9, "model_version": "m", "rules_fired": "G",
           "decision_json": json.dumps(decision),
           "findings_json": "[]", "timings_json": "{}", "operator": None, "overrides": None, "override_reason": None,
           "images": [{"view": "front", "sha256": hashlib.sha256(b"img%d" % i).hexdigest()}]}
    rec["leaf_index"] = i
    rec["leaf_hash"] = leaf_hash(record_leaf_data(rec, [(im["view"], im["sha256"]) for im in rec["images"]])).hex()
    return rec


def scrape(client: httpx.Client) -> dict:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse_exposition(r.text)


def test_metrics_need_an_admin_token_or_the_metrics_token(platform):
    assert platform["anon"].get("/metrics").status_code == 401
    assert platform["anon"].get("/metrics", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    for who in ("st1", "sup"):  # valid tokens of other roles: forbidden, and told what is needed
        r = platform[who].get("/metrics")
        assert r.status_code == 403 and "admin" in r.json()["detail"]
    # the metrics token opens /metrics and nothing else
    assert platform["scraper"].get("/api/v1/inspections").status_code == 401
    assert "platform_records_received" in scrape(platform["scraper"])
    assert "platform_records_received" in scrape(platform["admin"])


def test_metrics_count_records_batches_refused_heads_and_error_answers(platform, tmp_path):
    before = scrape(platform["scraper"])
    assert value_of(before, "platform_records_received_total", station_id="st-1", grade="C") == 0

    batch = [make_record(i) for i in range(3)] + [make_record(3, grade="A", disposition="restock")]
    assert platform["st1"].post("/api/v1/records/batch", json={"records": batch}).json()["created"] == 4
    again = platform["st1"].post("/api/v1/records/batch", json={"records": batch}).json()  # a retry: nothing new
    assert again["created"] == 0 and again["existing"] == 4
    assert platform["st2"].post("/api/v1/records/batch", json={"records": [make_record(9, "st-2")]}).status_code == 200
    bad = make_record(5)
    bad["grade"] = "Z"
    assert platform["st1"].post("/api/v1/records/batch", json={"records": [bad]}).status_code == 422
    assert platform["anon"].get("/api/v1/whoami").status_code == 401
    assert platform["sup"].get("/api/v1/inspections/no-such-record").status_code == 404

    key = StationKey(tmp_path / "key.pem").load()
    leaves = [leaf_hash(b"leaf-%d" % i) for i in range(4)]
    pem = key.public_pem().decode()

    def push_head(ls):
        head = key.sign_head(len(ls), merkle_root(ls), "2026-12-01T10:00:00.000+00:00").to_json()
        return platform["st1"].post("/api/v1/records/batch", json={"records": [], "head": head, "public_key_pem": pem})

    assert push_head(leaves).status_code == 200
    assert push_head([leaf_hash(b"rewritten")] + leaves[1:]).status_code == 409  # a fork

    m = scrape(platform["scraper"])
    assert value_of(m, "platform_records_received_total", station_id="st-1", grade="C") == 3
    assert value_of(m, "platform_records_received_total", station_id="st-1", grade="A") == 1
    assert value_of(m, "platform_records_received_total", station_id="st-2", grade="C") == 1
    assert value_of(m, "platform_records", station_id="st-1", grade="C") == 3  # what the database holds
    # stored batches: the first, its retry, the head; st-2's one; the fork is refused
    assert value_of(m, "platform_batches_total", station_id="st-1", outcome="stored") == 3
    assert value_of(m, "platform_batches_total", station_id="st-2", outcome="stored") == 1
    assert value_of(m, "platform_batches_total", station_id="st-1", outcome="head_refused") == 1
    assert value_of(m, "platform_heads_refused_total", station_id="st-1", fork="true") == 1
    # every batch request is timed, the 422 and the 409 too
    assert value_of(m, "platform_batch_duration_seconds_count") == 6
    assert value_of(m, "platform_batch_duration_seconds_sum") > 0
    assert value_of(m, "platform_http_error_responses_total", code="422") == 1
    assert value_of(m, "platform_http_error_responses_total", code="409") == 1
    assert value_of(m, "platform_http_error_responses_total", code="404") == 1
    # the anonymous whoami: answered by the auth middleware before any handler, and counted all the same
    assert value_of(m, "platform_http_error_responses_total", code="401") == 1


def test_an_unhandled_exception_is_counted_as_the_500_it_becomes():
    metrics = PlatformMetrics()
    app = FastAPI()

    @app.get("/boom")
    def boom() -> dict:
        raise RuntimeError("a bug")

    @app.get("/fine")
    def fine() -> dict:
        return {"ok": True}

    app.add_middleware(StatusCountingMiddleware, metrics=metrics)
    with ServerThread(app) as srv:
        # one connection each: uvicorn closes the connection of a request that raised
        assert httpx.get(f"{srv.url}/boom", timeout=30).status_code == 500
        assert httpx.get(f"{srv.url}/fine", timeout=30).status_code == 200
        assert httpx.get(f"{srv.url}/missing", timeout=30).status_code == 404
    assert metrics.responses.value("500") == 1 and metrics.responses.value("404") == 1
    assert metrics.responses.value("200") == 0  # only 4xx and 5xx are counted
