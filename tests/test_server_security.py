"""The platform as one station (or a stolen token) would attack it, run for real on 127.0.0.1 (issue 21,
"Platform server"): writes and reads scoped by station and role, ``decision_json`` validated as a decision
(aggregates never 500), signed heads witnessed only when a consistency proof shows they extend the last one
(forks answered 409 and kept), integers beyond the database answered 422, chunked bodies limited like
others, tokens looked up on every request, expiring, and revocable by an admin. On SQLite and on PostgreSQL
(tests/postgres_support.py)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import socket
import time
import uuid

import httpx
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from station.evidence import StationKey, consistency_proof, leaf_hash, merkle_root, record_leaf_data
from station.records import StationStore
from station.server.api import MAX_BODY_BYTES, create_app, create_token, init_db, make_engine
from station.server.models import Thumbnail, Token, TreeHead, TreeHeadConflict
from station.server.runner import ServerThread
from station.server.schema import upgrade
from station.sync import SyncClient, SyncSettings
from tests.postgres_support import BACKENDS, backend_url, postgres_server  # noqa: F401 - a fixture


@pytest.fixture(params=BACKENDS)
def platform(request, tmp_path):
    engine = make_engine(backend_url(request, tmp_path))
    init_db(engine)
    tokens = {
        "st1": create_token(engine, "station", "st-1"),
        "st2": create_token(engine, "station", "st-2"),
        "ins1": create_token(engine, "inspector", "ina", station_id="st-1"),
        "ins2": create_token(engine, "inspector", "ivo", station_id="st-2"),
        "ins_none": create_token(engine, "inspector", "nobody"),
        "sup": create_token(engine, "supervisor", "sue"),
        "admin": create_token(engine, "admin", "root"),
    }
    with ServerThread(create_app(engine=engine)) as srv:
        clients = {k: httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {t}"}, timeout=60)
                   for k, t in tokens.items()}
        clients["url"] = srv.url
        clients["engine"] = engine
        clients["tokens"] = tokens
        yield clients
        for k, c in clients.items():
            if isinstance(c, httpx.Client):
                c.close()
    engine.dispose()


def make_record(i: int, station_id: str = "st-1", decision: dict | None = None, **over) -> dict:
    decision = decision or {"grade": "C", "disposition": "refurbish", "rules_fired": ["G-C"],
                            "liability": [{"party": "brand", "share": 0.7, "rule": "L-MFG"},
                                          {"party": "streamer", "share": 0.3, "rule": "L-STREAM"}]}
    rec = {"record_id": uuid.uuid4().hex, "created_at": "2026-11-24T10:00:00.000+00:00", "station_id": station_id,
           "order_id": f"O-{i}", "sku": "SKU-1", "unit_code": f"U-{i}", "reason": "quality_issue",
           "channel": "live", "streamer": "s-1", "brand": "brand-a", "carrier": "c-1",
           "grade": decision.get("grade", "C") if isinstance(decision, dict) else "C",
           "disposition": decision.get("disposition", "refurbish") if isinstance(decision, dict) else "refurbish",
           "review": 0, "lane": 3, "confidence": 0.9, "model_version": "m", "rules_fired": "G-C",
           "decision_json": json.dumps(decision), "findings_json": "[]", "timings_json": "{}", "operator": "op",
           "overrides": None, "override_reason": None,
           "images": [{"view": "front", "sha256": hashlib.sha256(b"%s-img%d" % (station_id.encode(), i)).hexdigest()}]}
    rec.update(over)
    rec["leaf_index"] = over.get("leaf_index", i)
    rec["leaf_hash"] = leaf_hash(record_leaf_data(rec, [(im["view"], im["sha256"]) for im in rec["images"]])).hex()
    return rec


def brands(client) -> dict:
    r = client.get("/api/v1/aggregates/brands")
    assert r.status_code == 200, r.text
    return {b["id"]: b for b in r.json()["brands"]}


# ------------------------------------------------------------------------------------------- writes by station


def test_a_station_cannot_override_another_stations_record(platform):
    recs = [make_record(i) for i in range(3)]
    assert platform["st1"].post("/api/v1/records/batch", json={"records": recs}).status_code == 200
    before = brands(platform["sup"])["brand-a"]
    assert before["inspections"] == 3 and before["liability_totals"]["brand"] == pytest.approx(2.1)
    # station 2 "overrides" station 1's record with a decision that clears the brand
    cleared = {"grade": "A", "disposition": "restock", "rules_fired": ["OVERRIDE"],
               "liability": [{"party": "consumer", "share": 1.0, "rule": "X"}]}
    evil = make_record(9, station_id="st-2", decision=cleared, overrides=recs[0]["record_id"],
                       override_reason="mine now")
    r = platform["st2"].post("/api/v1/records/batch", json={"records": [evil]})
    assert r.status_code == 403 and "own records" in r.json()["detail"]
    assert platform["sup"].get(f"/api/v1/inspections/{evil['record_id']}").status_code == 404
    assert brands(platform["sup"])["brand-a"] == before

    # pushed before station 1's record arrived, it is stored (the target was unknown) but replaces nothing
    later = make_record(5)
    early = make_record(8, station_id="st-2", decision=cleared, overrides=later["record_id"], override_reason="x")
    assert platform["st2"].post("/api/v1/records/batch", json={"records": [early]}).status_code == 200
    assert platform["st1"].post("/api/v1/records/batch", json={"records": [later]}).status_code == 200
    agg = brands(platform["sup"])["brand-a"]
    assert agg["liability_totals"]["brand"] == pytest.approx(2.8)  # st-1's 4 records; st-2's 1 record adds 0
    assert agg["inspections"] == 5

    # a station's own override does replace its record
    own = make_record(10, decision=cleared, overrides=recs[1]["record_id"], override_reason="re-checked")
    assert platform["st1"].post("/api/v1/records/batch", json={"records": [own]}).status_code == 200
    agg = brands(platform["sup"])["brand-a"]
    assert agg["inspections"] == 5 and agg["liability_totals"]["brand"] == pytest.approx(2.1)


def test_a_station_cannot_reuse_another_stations_record_id(platform):
    rec = make_record(1)
    assert platform["st1"].post("/api/v1/records/batch", json={"records": [rec]}).status_code == 200
    clash = make_record(2, station_id="st-2", record_id=rec["record_id"])
    r = platform["st2"].post("/api/v1/records/batch", json={"records": [clash]})
    assert r.status_code == 403 and "another station" in r.json()["detail"]
    assert platform["ins1"].get(f"/api/v1/inspections/{rec['record_id']}").json()["conflicting_versions"] == 0


def test_thumbnails_are_kept_per_station_not_first_writer_wins(platform):
    rec1 = make_record(1)
    sha = rec1["images"][0]["sha256"]
    fake = base64.b64encode(b"\xff\xd8 station two's picture").decode()
    real = base64.b64encode(b"\xff\xd8 the real thumbnail").decode()
    # station 2 learns the hash and gets there first, with a record of its own naming that image
    rec2 = make_record(2, station_id="st-2", images=[{"view": "front", "sha256": sha}])
    assert platform["st2"].post("/api/v1/records/batch", json={"records": [rec2], "thumbnails": {sha: fake}}
                                ).status_code == 200
    assert platform["st1"].post("/api/v1/records/batch", json={"records": [rec1], "thumbnails": {sha: real}}
                                ).status_code == 200
    got = platform["ins1"].get(f"/api/v1/images/{sha}", params={"thumbnail": True})
    assert got.status_code == 200 and got.content == b"\xff\xd8 the real thumbnail"
    sup = platform["sup"].get(f"/api/v1/images/{sha}", params={"thumbnail": True, "station_id": "st-1"})
    assert sup.content == b"\xff\xd8 the real thumbnail"
    r = platform["sup"].get(f"/api/v1/images/{sha}", params={"thumbnail": True})
    assert r.status_code == 409 and "station" in r.json()["detail"]  # two versions: which one is said
    # a thumbnail of an image no record of the batch has is refused
    other = hashlib.sha256(b"someone else's").hexdigest()
    r = platform["st2"].post("/api/v1/records/batch", json={"records": [], "thumbnails": {other: fake}})
    assert r.status_code == 422 and "not of an image" in r.json()["detail"]
    with Session(platform["engine"]) as s:
        assert {t.station_id for t in s.scalars(select(Thumbnail).where(Thumbnail.sha256 == sha))} == {"st-1", "st-2"}


# ------------------------------------------------------------------------------------------- reads by role


def test_inspectors_read_only_their_stations_records_and_images(platform):
    r1, r2 = make_record(1), make_record(2, station_id="st-2")
    assert platform["st1"].post("/api/v1/records/batch", json={"records": [r1]}).status_code == 200
    assert platform["st2"].post("/api/v1/records/batch", json={"records": [r2]}).status_code == 200
    data = b"\x89PNG station one's image"
    sha = hashlib.sha256(data).hexdigest()
    r1b = make_record(3, images=[{"view": "front", "sha256": sha}])
    assert platform["st1"].post("/api/v1/records/batch", json={"records": [r1b]}).status_code == 200
    assert platform["st1"].post("/api/v1/images/batch", json={"images": [
        {"sha256": sha, "data_b64": base64.b64encode(data).decode()}]}).status_code == 200

    mine = platform["ins1"].get("/api/v1/inspections").json()
    assert mine["total"] == 2 and {i["station_id"] for i in mine["items"]} == {"st-1"}
    assert platform["ins2"].get("/api/v1/inspections").json()["total"] == 1
    r = platform["ins1"].get("/api/v1/inspections", params={"station_id": "st-2"})
    assert r.status_code == 403 and "st-1" in r.json()["detail"]
    assert platform["ins1"].get("/api/v1/inspections", params={"order_id": "O-2"}).json()["total"] == 0
    assert platform["ins1"].get(f"/api/v1/inspections/{r2['record_id']}").status_code == 404
    assert platform["ins2"].get(f"/api/v1/inspections/{r1['record_id']}").status_code == 404
    assert platform["ins1"].get(f"/api/v1/images/{sha}").content == data
    assert platform["ins2"].get(f"/api/v1/images/{sha}").status_code == 404
    r = platform["ins_none"].get("/api/v1/inspections")
    assert r.status_code == 403 and "station_id" in r.json()["detail"]
    assert platform["sup"].get("/api/v1/inspections").json()["total"] == 3  # a supervisor reads every station
    assert platform["admin"].get(f"/api/v1/inspections/{r2['record_id']}").status_code == 200
    assert platform["ins1"].get("/api/v1/whoami").json() == {"role": "inspector", "subject": "ina",
                                                             "station_id": "st-1"}
    r = platform["admin"].post("/api/v1/tokens", json={"role": "inspector", "subject": "ian", "station_id": "st-2"})
    ian = httpx.Client(base_url=platform["url"], headers={"Authorization": f"Bearer {r.json()['token']}"})
    assert ian.get("/api/v1/inspections").json()["total"] == 1
    ian.close()


# ------------------------------------------------------------------------------------------- decision_json


BAD_DECISIONS = [
    [],
    "C",
    None,
    {"grade": "C", "disposition": "refurbish", "rules_fired": ["G"], "liability": {"brand": 1}},
    {"grade": "C", "disposition": "refurbish", "rules_fired": ["G"], "liability": [[]]},
    {"grade": "C", "disposition": "refurbish", "rules_fired": ["G"], "liability": [{"party": "brand", "share": "1"}]},
    {"grade": "C", "disposition": "refurbish", "rules_fired": ["G"], "liability": [{"party": "brand", "share": 1000}]},
    {"grade": "C", "disposition": "refurbish", "rules_fired": ["G"], "liability": [{"party": "god", "share": 0.5}]},
    {"grade": "C", "disposition": "refurbish", "rules_fired": ["G"],
     "liability": [{"party": "brand", "share": 0.9}, {"party": "streamer", "share": 0.9}]},
    {"grade": "C", "disposition": "refurbish", "rules_fired": "G", "liability": []},
    {"grade": "Z", "disposition": "refurbish", "rules_fired": [], "liability": []},
    {"disposition": "refurbish", "rules_fired": [], "liability": []},
]


@pytest.mark.parametrize("decision", BAD_DECISIONS, ids=range(len(BAD_DECISIONS)))
def test_a_record_whose_decision_json_is_not_a_decision_is_refused(platform, decision):
    rec = make_record(1, decision_json=json.dumps(decision))
    r = platform["st1"].post("/api/v1/records/batch", json={"records": [rec]})
    assert r.status_code == 422 and "decision" in json.dumps(r.json()["detail"]), r.text
    assert brands(platform["sup"]) == {}


@pytest.mark.parametrize("decision_json", ['{"grade": NaN}', "[" * 30000 + "]" * 30000,
                                           '{"grade": "C", "disposition": "refurbish", "rules_fired": [], '
                                           '"liability": [{"party": "brand", "share": NaN}]}'])
def test_nan_and_nesting_bombs_in_decision_json_are_422(platform, decision_json):
    rec = make_record(1, decision_json=decision_json)
    r = platform["st1"].post("/api/v1/records/batch", json={"records": [rec]})
    assert r.status_code == 422, r.text


def test_a_decision_that_contradicts_its_record_is_refused(platform):
    dec = {"grade": "A", "disposition": "restock", "rules_fired": [], "liability": []}
    rec = make_record(1, decision_json=json.dumps(dec))  # the record says grade C, refurbish
    r = platform["st1"].post("/api/v1/records/batch", json={"records": [rec]})
    assert r.status_code == 422 and "decision_json says grade A" in r.text


def test_aggregates_survive_malformed_decisions_stored_before_validation(platform):
    good = make_record(1)
    assert platform["st1"].post("/api/v1/records/batch", json={"records": [good]}).status_code == 200
    legacy = make_record(2)
    assert platform["st1"].post("/api/v1/records/batch", json={"records": [legacy]}).status_code == 200
    with platform["engine"].begin() as conn:  # as an older platform stored it
        conn.execute(text("UPDATE records SET decision_json = '[]' WHERE record_id = :r"),
                     {"r": legacy["record_id"]})
    agg = brands(platform["sup"])["brand-a"]
    assert agg["inspections"] == 2 and agg["malformed_decisions"] == 1
    assert agg["liability_totals"]["brand"] == pytest.approx(0.7)
    assert platform["sup"].get("/api/v1/aggregates/streamers").status_code == 200
    r = platform["sup"].post("/api/v1/overrides", json={"overrides": legacy["record_id"], "reason": "fix"})
    assert r.status_code == 409 and "malformed" in r.json()["detail"]
    assert platform["sup"].get(f"/api/v1/inspections/{legacy['record_id']}").status_code == 200


# ------------------------------------------------------------------------------------------- signed heads


class Log:
    """A station's log, signed with a real station key, to push heads by hand."""

    def __init__(self, tmp_path, name: str = "key") -> None:
        self.key = StationKey(tmp_path / f"{name}.pem").load()
        self.leaves: list[bytes] = []

    def grow(self, n: int, tag: str = "") -> None:
        start = len(self.leaves)
        self.leaves += [leaf_hash(f"{tag}leaf-{i}".encode()) for i in range(start, start + n)]

    def head(self, leaves=None) -> dict:
        leaves = self.leaves if leaves is None else leaves
        return self.key.sign_head(len(leaves), merkle_root(leaves), "2026-11-28T10:00:00.000+00:00").to_json()

    def proof(self, old_size: int, leaves=None) -> dict:
        leaves = self.leaves if leaves is None else leaves
        return {"old_size": old_size, "proof": [h.hex() for h in consistency_proof(old_size, leaves)]}

    def push(self, client, head: dict, consistency: dict | None = None) -> httpx.Response:
        body = {"records": [], "head": head, "public_key_pem": self.key.public_pem().decode()}
        if consistency is not None:
            body["consistency"] = consistency
        return client.post("/api/v1/records/batch", json=body)


def test_a_fork_at_the_same_size_is_409_and_both_heads_are_kept(platform, tmp_path):
    log = Log(tmp_path)
    log.grow(4)
    first = log.head()
    assert log.push(platform["st1"], first).status_code == 200
    forked = log.head([leaf_hash(b"rewritten") ] + log.leaves[1:])  # validly signed, same size, other root
    r = log.push(platform["st1"], forked)
    assert r.status_code == 409 and r.json()["fork"] is True and "fork" in r.json()["detail"]
    heads = platform["sup"].get("/api/v1/stations/st-1/heads").json()
    assert [h["root_hash"] for h in heads["heads"]] == [first["root_hash"]]
    assert [(c["root_hash"], c["last_root_hash"]) for c in heads["conflicts"]] == \
        [(forked["root_hash"], first["root_hash"])]
    assert log.push(platform["st1"], forked).status_code == 409  # again: still refused, kept once
    assert len(platform["sup"].get("/api/v1/stations/st-1/heads").json()["conflicts"]) == 1


def test_a_larger_head_must_prove_it_extends_the_last_one(platform, tmp_path):
    log = Log(tmp_path)
    log.grow(3)
    assert log.push(platform["st1"], log.head()).status_code == 200
    last = log.head()
    # a larger head over a rewritten history, with the proof it can give (from its own old tree): 409, kept
    other = [leaf_hash(b"x")] + log.leaves[1:] + [leaf_hash(b"new-%d" % i) for i in range(4)]
    r = log.push(platform["st1"], log.head(other), log.proof(3, other))
    assert r.status_code == 409 and r.json()["fork"] is True and "does not extend" in r.json()["detail"]
    # without a proof: 409 naming the head to prove from
    log.grow(5)
    r = log.push(platform["st1"], log.head())
    assert r.status_code == 409 and r.json()["fork"] is False and r.json()["platform_head"] == last
    # a proof from the wrong size: 409 too
    assert log.push(platform["st1"], log.head(), log.proof(2)).status_code == 409
    # the right proof: stored
    r = log.push(platform["st1"], log.head(), log.proof(3))
    assert r.status_code == 200 and r.json()["head"]["tree_size"] == 8
    with Session(platform["engine"]) as s:
        assert [h.tree_size for h in s.scalars(select(TreeHead).order_by(TreeHead.tree_size))] == [3, 8]
        refused = list(s.scalars(select(TreeHeadConflict).order_by(TreeHeadConflict.id)))
    assert refused[0].tree_size == 7 and refused[0].last_tree_size == 3 and refused[0].root_hash == \
        log.head(other)["root_hash"]
    # records sent with a refused head are not stored either: the whole batch is refused
    log2 = list(log.leaves) + [leaf_hash(b"y")]
    forked = log.head([leaf_hash(b"z")] + log2[1:])
    body = {"records": [make_record(1)], "head": forked, "consistency": log.proof(8, [leaf_hash(b"z")] + log2[1:])}
    assert platform["st1"].post("/api/v1/records/batch", json=body).status_code == 409
    assert platform["sup"].get("/api/v1/inspections").json()["total"] == 0


def test_the_sync_client_proves_consistency_and_recovers_a_lost_platform_head(platform, tmp_path):
    from station.domain import Decision, Disposition, Grade, ReturnReason, ReturnRequest
    from station.records import record_from_parts

    store = StationStore(tmp_path / "st" / "station.db").open()

    def fill(n: int, start: int) -> None:
        for i in range(start, start + n):
            dec = Decision(Grade.A, Disposition.RESTOCK, (), False, ("G-A",))
            store.append(record_from_parts(ReturnRequest(f"O-{i}", "SKU", ReturnReason.NO_REASON_7DAY, brand="b"),
                                           [], dec, 1, [], "m", "st-1", {}))

    client = SyncClient(store, SyncSettings(url=platform["url"], token=platform["tokens"]["st1"], pull=False,
                                            upload_images=False))
    fill(3, 0)
    client.sync_once()
    assert json.loads(store.get_state("platform_head"))["tree_size"] == 3
    fill(4, 3)
    client.sync_once()  # 3 -> 7 with a consistency proof
    store.set_state({"platform_head": None})  # the station lost its copy of the platform's head
    fill(2, 7)
    client.sync_once()  # the platform names its head, the client proves from it
    assert json.loads(store.get_state("platform_head"))["tree_size"] == 9 and store.pending_count() == 0
    with Session(platform["engine"]) as s:
        assert [h.tree_size for h in s.scalars(select(TreeHead).order_by(TreeHead.tree_size))] == [3, 7, 9]
    r = platform["st1"].get("/api/v1/heads/latest")
    assert r.status_code == 200 and r.json()["head"]["tree_size"] == 9
    client.close()
    store.close()


# ------------------------------------------------------------------------------------------- numbers and sizes


BIG = 2**63


@pytest.mark.parametrize("over", [{"lane": BIG}, {"lane": -BIG - 1}, {"leaf_index": BIG}, {"lane": 2**31},
                                  {"lane": 10**30}])
def test_integers_beyond_the_database_in_a_record_are_422(platform, over):
    r = platform["st1"].post("/api/v1/records/batch", json={"records": [make_record(1, **over)]})
    assert r.status_code == 422, r.text


def test_integers_beyond_the_database_in_heads_proofs_and_queries_are_422(platform, tmp_path):
    log = Log(tmp_path)
    log.grow(2)
    head = log.head()
    assert log.push(platform["st1"], dict(head, tree_size=BIG)).status_code == 422
    assert log.push(platform["st1"], head, {"old_size": BIG, "proof": []}).status_code == 422
    for path, params in (("/api/v1/rmas", {"since": BIG}), ("/api/v1/catalogue", {"since": BIG}),
                         ("/api/v1/rmas", {"since": "9" * 5000})):
        r = platform["st1"].get(path, params=params)
        assert r.status_code == 422, (path, r.text)
    r = platform["sup"].get("/api/v1/inspections", params={"offset": BIG})
    assert r.status_code == 422, r.text
    assert platform["st1"].get("/api/v1/rmas", params={"since": 2**31 - 1}).status_code == 200


def _chunked_post(url: str, token: str, body_chunks, chunk_limit: int) -> tuple[int, bytes, int]:
    """POST with Transfer-Encoding: chunked (no Content-Length) over a raw socket; stops sending when the
    server answers or closes. Returns (status, response bytes, bytes sent)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    sent = 0
    try:
        sock.sendall(f"POST /api/v1/records/batch HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                     f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        sock.setblocking(True)
        for chunk in body_chunks:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                break
            sent += len(chunk)
            if sent > chunk_limit:
                break
        else:
            sock.sendall(b"0\r\n\r\n")
        sock.settimeout(60)
        data = b""
        while b"\r\n\r\n" not in data:
            got = sock.recv(65536)
            if not got:
                break
            data += got
    finally:
        sock.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1") else 0
    return status, data, sent


def test_a_chunked_body_without_content_length_is_limited_too(platform):
    pad = b" " * (1024 * 1024)

    def body(total_mb: int):
        yield b'{"records": []'
        for _ in range(total_mb):
            yield pad
        yield b"}"

    # a small chunked body is read as usual
    status, _, _ = _chunked_post(platform["url"], platform["tokens"]["st1"], body(1), 10 * MAX_BODY_BYTES)
    assert status == 200
    # 80 MiB of valid JSON: refused with 413 once 64 MiB are read, never read to the end
    status, data, sent = _chunked_post(platform["url"], platform["tokens"]["st1"], body(80), 10 * MAX_BODY_BYTES)
    assert status == 413, data[:300]
    assert b"body over" in data or sent <= 80 * 1024 * 1024


# ------------------------------------------------------------------------------------------- tokens


def test_a_token_revoked_in_the_database_is_refused_at_once(platform):
    c = platform["ins1"]
    assert c.get("/api/v1/whoami").status_code == 200  # looked up (and, before, cached)
    with Session(platform["engine"]) as s, s.begin():
        s.execute(update(Token).where(Token.subject == "ina").values(revoked=True))
    r = c.get("/api/v1/whoami")
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_tokens_expire(platform):
    engine = platform["engine"]
    stale = create_token(engine, "station", "st-9", expires_in_s=-1)
    c = httpx.Client(base_url=platform["url"], headers={"Authorization": f"Bearer {stale}"})
    assert c.get("/api/v1/whoami").status_code == 401
    r = platform["admin"].post("/api/v1/tokens", json={"role": "inspector", "subject": "temp", "station_id": "st-1",
                                                       "expires_in_s": 3})
    assert r.status_code == 201 and r.json()["expires_at"]
    c = httpx.Client(base_url=platform["url"], headers={"Authorization": f"Bearer {r.json()['token']}"})
    assert c.get("/api/v1/whoami").status_code == 200
    expires = dt.datetime.fromisoformat(r.json()["expires_at"])
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 0.2)
    assert c.get("/api/v1/whoami").status_code == 401
    # every token expires: one made without a lifetime has the role's default
    r = platform["admin"].post("/api/v1/tokens", json={"role": "supervisor", "subject": "sam"})
    assert r.status_code == 201 and r.json()["expires_at"] is not None
    with Session(engine) as s:
        assert all(t.expires_at for t in s.scalars(select(Token)))
    with pytest.raises(ValueError, match="expired"):
        create_token(engine, "station", "st-9", stale)  # an expired token is not brought back
    assert platform["admin"].post("/api/v1/tokens", json={"role": "admin", "subject": "x",
                                                          "expires_in_s": 10**12}).status_code == 422


def test_an_admin_revokes_another_users_token(platform):
    r = platform["admin"].post("/api/v1/tokens", json={"role": "supervisor", "subject": "mallory"})
    assert r.status_code == 201
    tok, tid = r.json()["token"], r.json()["id"]
    mallory = httpx.Client(base_url=platform["url"], headers={"Authorization": f"Bearer {tok}"})
    assert mallory.get("/api/v1/aggregates/brands").status_code == 200
    listed = platform["admin"].get("/api/v1/tokens", params={"subject": "mallory"}).json()["tokens"]
    assert [t["id"] for t in listed] == [tid] and "token" not in listed[0]
    assert platform["sup"].delete(f"/api/v1/tokens/{tid}").status_code == 403  # only an admin
    r = platform["admin"].delete(f"/api/v1/tokens/{tid}")
    assert r.status_code == 200 and r.json()["revoked"] is True
    assert mallory.get("/api/v1/aggregates/brands").status_code == 401
    assert platform["admin"].delete(f"/api/v1/tokens/{'0' * 64}").status_code == 404
    # every token of a stolen station at once
    st2 = platform["st2"]
    assert st2.get("/api/v1/rmas").status_code == 200
    r = platform["admin"].delete("/api/v1/tokens", params={"subject": "st-2"})
    assert r.status_code == 200 and r.json()["revoked"] == 1
    assert st2.get("/api/v1/rmas").status_code == 401
    with pytest.raises(ValueError, match="revoked"):  # a restart with the same token does not bring it back
        create_token(platform["engine"], "station", "st-2", platform["tokens"]["st2"])
    assert st2.get("/api/v1/rmas").status_code == 401
    mallory.close()


# ------------------------------------------------------------------------------------------- migration


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    return backend_url(request, tmp_path)


def test_the_migration_keeps_old_thumbnails_under_the_station_whose_record_has_the_image(db_url):
    engine = make_engine(db_url)
    try:
        assert upgrade(engine, "0001") == "0001"
        sha, orphan = "a" * 64, "b" * 64
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO tokens VALUES ('h', 'station', 'st-1', 'now', FALSE)"))
            conn.execute(text(
                "INSERT INTO records (record_id, station_id, created_at, received_at, order_id, sku, reason, "
                "grade, disposition, review, confidence, model_version, rules_fired, decision_json, findings_json, "
                "timings_json, source) VALUES ('r1', 'st-1', 't', 't', 'O', 'S', 'wrong_item', 'A', 'restock', 0, "
                "1.0, 'm', '', '{}', '[]', '{}', 'station')"))
            conn.execute(text("INSERT INTO record_images VALUES ('r1', 'front', :s)"), {"s": sha})
            for h in (sha, orphan):
                conn.execute(text("INSERT INTO images (sha256, thumbnail, data, size, received_at) "
                                  "VALUES (:s, :t, NULL, 0, 't')"), {"s": h, "t": b"thumb-" + h[:1].encode()})
        upgrade(engine)
        with Session(engine) as s:
            rows = [(t.station_id, t.sha256, t.thumbnail) for t in s.scalars(select(Thumbnail))]
            tok = s.get(Token, "h")
        assert rows == [("st-1", sha, b"thumb-a")]
        assert tok.station_id is None and tok.expires_at is not None and not tok.revoked  # now expires
    finally:
        engine.dispose()
