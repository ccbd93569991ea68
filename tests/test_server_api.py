"""The platform server, run for real on 127.0.0.1: auth (401 before the body, 403 by role), idempotent pushes,
4xx with a message on bad payloads, overrides, RMAs, catalogue and aggregates. On SQLite and on PostgreSQL
(tests/postgres_support.py: a throwaway cluster, or STATION_TEST_POSTGRES_URL; skipped with the reason when
neither is there)."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid

import httpx
import pytest

from station.evidence import leaf_hash, record_leaf_data
from station.server.api import create_app, create_token, init_db, make_engine
from station.server.runner import ServerThread
from tests.postgres_support import BACKENDS, backend_url, postgres_server  # noqa: F401 - a fixture


@pytest.fixture(params=BACKENDS)
def platform(request, tmp_path):
    engine = make_engine(backend_url(request, tmp_path))
    init_db(engine)
    tokens = {role: create_token(engine, role, subject) for role, subject in
              (("station", "st-1"), ("supervisor", "sue"), ("admin", "root"))}
    tokens["inspector"] = create_token(engine, "inspector", "ina", station_id="st-1")  # reads station st-1
    tokens["other_station"] = create_token(engine, "station", "st-2")
    with ServerThread(create_app(engine=engine)) as srv:
        clients = {k: httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {t}"}, timeout=30)
                   for k, t in tokens.items()}
        clients["anon"] = httpx.Client(base_url=srv.url, timeout=30)
        yield clients
        for c in clients.values():
            c.close()
    engine.dispose()


def make_record(i: int, station_id: str = "st-1", **over) -> dict:
    decision = {"grade": "C", "disposition": "refurbish", "rules_fired": ["G-C"],
                "liability": [{"party": "brand", "share": 0.7, "rule": "L-MFG"},
                              {"party": "streamer", "share": 0.3, "rule": "L-STREAM"}]}
    rec = {"record_id": uuid.uuid4().hex, "created_at": "2026-11-24T10:00:00.000+00:00", "station_id": station_id,
           "order_id": f"O-{i}", "sku": "SKU-1", "unit_code": f"U-{i}", "reason": "quality_issue" if i % 2 else
           "colour_difference", "channel": "live", "streamer": f"s-{i % 2}", "brand": "brand-a", "carrier": "c-1",
           "grade": "C", "disposition": "refurbish", "review": 0, "lane": 3, "confidence": 0.9,
           "model_version": "m", "rules_fired": "G-C", "decision_json": json.dumps(decision),
           "findings_json": "[]", "timings_json": "{}", "operator": "op", "overrides": None,
           "override_reason": None, "images": [{"view": "front", "sha256": hashlib.sha256(b"img%d" % i).hexdigest()}]}
    rec.update(over)
    rec["leaf_index"] = i
    rec["leaf_hash"] = leaf_hash(record_leaf_data(rec, [(im["view"], im["sha256"]) for im in rec["images"]])).hex()
    return rec


def test_requests_without_a_valid_token_get_401_before_the_body_is_read(platform):
    anon = platform["anon"]
    for method, path in (("GET", "/api/v1/whoami"), ("POST", "/api/v1/records/batch"), ("GET", "/api/v1/nope"),
                         ("PUT", "/api/v1/rmas")):
        r = anon.request(method, path, content=b"{ this is not json")
        assert r.status_code == 401 and "token" in r.json()["detail"]
    r = anon.post("/api/v1/records/batch", content=b"{bad", headers={"Authorization": "Bearer wrong-token"})
    assert r.status_code == 401 and r.json()["detail"] == "invalid or revoked token"
    assert anon.get("/openapi.json").status_code == 200  # the docs are public
    assert "/api/v1/records/batch" in anon.get("/openapi.json").json()["paths"]


def test_roles_acting_beyond_their_rights_get_403(platform):
    batch = {"records": [make_record(1)]}
    assert platform["inspector"].post("/api/v1/records/batch", json=batch).status_code == 403
    assert platform["supervisor"].put("/api/v1/rmas", json={"rmas": []}).status_code == 403
    assert platform["station"].get("/api/v1/aggregates/brands").status_code == 403
    assert platform["inspector"].get("/api/v1/aggregates/streamers").status_code == 403
    assert platform["station"].get("/api/v1/inspections").status_code == 403
    r = platform["station"].post("/api/v1/tokens", json={"role": "admin", "subject": "me"})
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    r = platform["other_station"].post("/api/v1/records/batch", json=batch)
    assert r.status_code == 403 and "st-1" in r.json()["detail"]


def test_push_is_idempotent_by_record_id_and_keeps_conflicting_versions(platform):
    st = platform["station"]
    recs = [make_record(i) for i in range(5)]
    thumb = base64.b64encode(b"\xff\xd8fake-jpeg").decode()
    r = st.post("/api/v1/records/batch", json={"records": recs, "thumbnails": {recs[0]["images"][0]["sha256"]: thumb}})
    assert r.status_code == 200 and r.json() == {"created": 5, "existing": 0, "conflicts": 0}
    r = st.post("/api/v1/records/batch", json={"records": recs})
    assert r.json() == {"created": 0, "existing": 5, "conflicts": 0}
    changed = make_record(0, record_id=recs[0]["record_id"], order_id="O-other")
    r = st.post("/api/v1/records/batch", json={"records": [changed]})
    assert r.json()["conflicts"] == 1
    got = platform["inspector"].get(f"/api/v1/inspections/{recs[0]['record_id']}").json()
    assert got["order_id"] == "O-0" and got["conflicting_versions"] == 1 and got["decision"]["grade"] == "C"
    assert platform["inspector"].get("/api/v1/inspections").json()["total"] == 5
    t = platform["inspector"].get(f"/api/v1/images/{recs[0]['images'][0]['sha256']}", params={"thumbnail": True})
    assert t.status_code == 200 and t.content == b"\xff\xd8fake-jpeg"


def test_images_must_hash_to_their_name(platform):
    st = platform["station"]
    data = b"\x89PNG pretend"
    sha = hashlib.sha256(data).hexdigest()
    ok = st.post("/api/v1/images/batch", json={"images": [{"sha256": sha, "data_b64": base64.b64encode(data).decode()}]})
    assert ok.status_code == 200 and ok.json() == {"stored": 1, "existing": 0}
    again = st.post("/api/v1/images/batch", json={"images": [{"sha256": sha, "data_b64": base64.b64encode(data).decode()}]})
    assert again.json() == {"stored": 0, "existing": 1}
    bad = st.post("/api/v1/images/batch", json={"images": [{"sha256": "0" * 64,
                                                           "data_b64": base64.b64encode(data).decode()}]})
    assert bad.status_code == 422 and "does not hash" in bad.json()["detail"]
    assert platform["supervisor"].get(f"/api/v1/images/{sha}").content == data
    assert platform["inspector"].get(f"/api/v1/images/{sha}").status_code == 404  # no record of its station has it


@pytest.mark.parametrize("body", [
    b"{not json",
    b"[]",
    json.dumps({"records": "nope"}).encode(),
    json.dumps({"records": [{"record_id": "x"}]}).encode(),
    json.dumps({"records": [make_record(1, buyer_name="Ann Example")]}).encode(),  # PII field: refused
    json.dumps({"records": [make_record(1, reason="because")]}).encode(),
    json.dumps({"records": [make_record(1, confidence=7)]}).encode(),
    json.dumps({"records": [make_record(1, decision_json="{oops")]}).encode(),
    json.dumps({"records": [dict(make_record(1), grade="A")]}).encode(),  # no longer matches its leaf
    json.dumps({"records": [], "thumbnails": {"a" * 64: "%%%not-base64"}}).encode(),
    json.dumps({"records": [make_record(1)] * 2}).encode(),
    json.dumps({"records": [], "head": {"tree_size": 1, "root_hash": "0" * 64, "signed_at": "x", "key_id": "k",
                                        "signature": "AAAA"}}).encode(),
])
def test_bad_payloads_get_4xx_with_a_message_never_500(platform, body):
    r = platform["station"].post("/api/v1/records/batch", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert r.json().get("detail")


def test_supervisor_override_rmas_catalogue_and_aggregates(platform):
    recs = [make_record(i) for i in range(4)]
    assert platform["station"].post("/api/v1/records/batch", json={"records": recs}).status_code == 200
    r = platform["supervisor"].post("/api/v1/overrides", json={"overrides": recs[0]["record_id"], "grade": "B",
                                                               "disposition": "open_box", "reason": "photo check"})
    assert r.status_code == 201
    new = platform["inspector"].get(f"/api/v1/inspections/{r.json()['record_id']}").json()
    assert new["overrides"] == recs[0]["record_id"] and new["operator"] == "sue" and new["grade"] == "B"
    assert "OVERRIDE" in new["decision"]["rules_fired"]
    assert platform["supervisor"].post("/api/v1/overrides", json={"overrides": "missing", "reason": "x"}).status_code == 404

    brands = platform["supervisor"].get("/api/v1/aggregates/brands").json()["brands"]
    assert len(brands) == 1 and brands[0]["id"] == "brand-a" and brands[0]["inspections"] == 4  # override replaces
    assert brands[0]["brand_attributed_share"] == 1.0
    assert brands[0]["liability_totals"]["brand"] == pytest.approx(2.8)
    assert brands[0]["return_share_by_reason"]["quality_issue"]["count"] == 2
    streamers = platform["admin"].get("/api/v1/aggregates/streamers").json()["streamers"]
    assert {s["id"] for s in streamers} == {"s-0", "s-1"}

    r = platform["admin"].put("/api/v1/rmas", json={"rmas": [
        {"order_id": "O-9", "sku": "SKU-1", "reason": "wrong_item", "brand": "brand-a"},
        {"order_id": "O-10", "sku": "SKU-2", "reason": "quality_issue"}]})
    assert r.status_code == 200
    first = platform["station"].get("/api/v1/rmas").json()
    assert [x["order_id"] for x in first["items"]] == ["O-9", "O-10"]
    assert platform["station"].get("/api/v1/rmas", params={"since": first["next_since"]}).json()["items"] == []
    bad = platform["admin"].put("/api/v1/rmas", json={"rmas": [{"order_id": "O-1", "sku": "S", "reason": "meh"}]})
    assert bad.status_code == 422
    r = platform["admin"].put("/api/v1/catalogue", json={"items": [{"sku": "SKU-3", "category": "toys",
                                                                    "brand": "brand-b"}]})
    assert r.status_code == 200
    assert platform["station"].get("/api/v1/catalogue").json()["items"][0]["sku"] == "SKU-3"


def test_admin_issues_tokens_and_a_revoked_token_is_refused(platform):
    r = platform["admin"].post("/api/v1/tokens", json={"role": "inspector", "subject": "new-user"})
    assert r.status_code == 201
    tok = r.json()["token"]
    c = httpx.Client(base_url=str(platform["anon"].base_url), headers={"Authorization": f"Bearer {tok}"})
    assert c.get("/api/v1/whoami").json() == {"role": "inspector", "subject": "new-user"}
    assert c.delete("/api/v1/tokens/current").status_code == 200
    assert c.get("/api/v1/whoami").status_code == 401
    assert platform["admin"].post("/api/v1/tokens", json={"role": "god", "subject": "x"}).status_code == 422
