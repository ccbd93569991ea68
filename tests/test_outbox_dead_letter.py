"""Issue 21: one record the platform refuses for good must not block the outbox. Against the real platform on
127.0.0.1: a 422 for one record sets it aside (dead letter, with status and reason) and the rest flow on; a
refusal that names no record is bisected; transient failures, auth and head refusals set nothing aside; the
schema migration keeps existing rows; the platform's limits are checked at input."""

from __future__ import annotations

import http.server
import json
import sqlite3
import threading

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.responses import JSONResponse
from typer.testing import CliRunner

import station.records as records_mod
from station.domain import Decision, Disposition, Grade, ReturnReason, ReturnRequest
from station.limits import ID_PATTERN, RECORD_FIELD_LIMITS, LimitError, check_request
from station.records import MIGRATIONS, RecordLimitError, StationStore, record_from_parts
from station.server import api
from station.server.api import create_app, create_token, init_db, make_engine
from station.server.models import Record, TreeHead
from station.server.runner import ServerThread
from station.sync import SyncClient, SyncError, SyncSettings, read_status
from ui.status import sync_text

LONG_ORDER = "ORD-" + "9" * 196  # 200 characters: what an older station accepted and the platform refuses


@pytest.fixture()
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'platform.db'}")
    init_db(engine)
    yield engine
    engine.dispose()


@pytest.fixture()
def token(engine):
    return create_token(engine, "station", "st-1")


def _serve(app):
    return ServerThread(app).start()


def _record(store: StationStore, i: int, order_id: str | None = None):
    img = np.full((40, 56, 3), (i * 37) % 256, np.uint8)
    img[3:9, i % 30:i % 30 + 6] = (255, 0, 0)
    sha = store.put_image(img).sha256
    dec = Decision(Grade.A, Disposition.RESTOCK, (), False, ("G-A",))
    return record_from_parts(ReturnRequest(order_id or f"O-{i}", "SKU-1", ReturnReason.NO_REASON_7DAY, brand="b"),
                             [], dec, 1, [("front", sha)], "m", "st-1", {})


def _append(store: StationStore, i: int, order_id: str | None = None) -> str:
    rec = _record(store, i, order_id)
    store.append(rec)
    return rec.record_id


def _append_unchecked(store: StationStore, monkeypatch, i: int, order_id: str) -> str:
    """A record written by a station from before the input limits (the store refuses it now)."""
    with monkeypatch.context() as m:
        m.setattr(records_mod, "_check_limits", lambda values: None)
        return _append(store, i, order_id)


def _on_platform(engine) -> set[str]:
    with Session(engine) as s:
        return set(s.scalars(select(Record.record_id)))


def test_the_station_limits_are_the_platforms():
    def max_len(model, name):
        return next(m.max_length for m in model.model_fields[name].metadata if hasattr(m, "max_length"))

    for name, lim in RECORD_FIELD_LIMITS.items():
        model = api.ImageRef if name == "view" else api.RecordIn
        if lim.pattern is not None:
            assert lim.pattern == api.ID and ID_PATTERN == api.ID
            continue
        assert max_len(model, name) == lim.max_length, name
    for name in ("order_id", "sku", "unit_code", "channel", "streamer", "brand", "carrier"):
        assert max_len(api.RmaIn, name) == RECORD_FIELD_LIMITS[name].max_length, name
    with pytest.raises(LimitError, match="order_id is 200 characters long; the platform accepts at most 128"):
        check_request(ReturnRequest(LONG_ORDER, "SKU", ReturnReason.WRONG_ITEM))
    with pytest.raises(LimitError, match="control character") as exc:
        check_request(ReturnRequest("ORD-1", "SKU\x00", ReturnReason.WRONG_ITEM))
    assert exc.value.field == "sku"
    check_request(ReturnRequest("O" * 128, "S" * 128, ReturnReason.WRONG_ITEM, streamer="s" * 128))


def test_a_refused_record_is_set_aside_and_every_other_record_flows_on(engine, token, tmp_path, monkeypatch):
    srv = _serve(create_app(engine=engine))
    store = StationStore(tmp_path / "st" / "station.db").open()
    try:
        good = [_append(store, i) for i in range(3)]
        bad = _append_unchecked(store, monkeypatch, 3, LONG_ORDER)
        good += [_append(store, i) for i in range(4, 7)]
        client = SyncClient(store, SyncSettings(url=srv.url, token=token, batch_size=3, pull=False))
        res = client.sync_once()
        assert res["pushed"] == 6 and res["dead"] == 1
        assert _on_platform(engine) == set(good)
        assert store.pending_count() == 0 and store.dead_letter_count() == 1
        (dead,) = store.dead_letters()
        assert dead.record_id == bad and dead.order_id == LONG_ORDER and dead.status == 422 and dead.attempts == 1
        assert "order_id" in dead.reason and "128" in dead.reason
        # The platform witnessed the head that covers the refused record too: the log itself is fine.
        with Session(engine) as s:
            assert s.scalar(select(func.max(TreeHead.tree_size))) == store.latest_head().tree_size == 7

        # Later records are not blocked behind it.
        later = [_append(store, i) for i in range(7, 9)]
        res = client.sync_once()
        assert res["pushed"] == 2 and res["dead"] == 0 and set(later) <= _on_platform(engine)

        st = read_status(store)
        assert st.dead_letter == 1 and [d.record_id for d in st.dead_letters] == [bad]
        assert st.to_json()["dead_letters"][0]["status"] == 422 and st.last_error is None
        assert "1 record refused by the platform" in sync_text(True, st)
        assert "refused" not in sync_text(True, read_status_without_dead(st))

        # Retry after a fix: queued again, refused again (the platform was not changed), counted twice.
        assert store.retry_dead() == 1 and store.pending_count() == 1 and store.dead_letter_count() == 0
        res = client.sync_once()
        assert res["dead"] == 1 and res["pushed"] == 0
        assert store.dead_letters()[0].attempts == 2 and bad not in _on_platform(engine)
        client.close()
    finally:
        store.close()
        srv.stop()


def read_status_without_dead(st):
    from dataclasses import replace

    return replace(st, dead_letter=0, dead_letters=())


def _refusing(app, marker: bytes, answer: dict):
    """The platform behind a gateway that answers 422 ``answer`` to a batch containing ``marker`` (a refusal
    that names no record): bytes over real HTTP, everything else passed to the platform untouched."""
    async def gateway(scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/api/v1/records/batch":
            return await app(scope, receive, send)
        chunks, more = [], True
        while more:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        body = b"".join(chunks)
        if marker in body:
            return await JSONResponse(answer, 422)(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await app(scope, replay, send)

    return gateway


def test_a_refusal_that_names_no_record_is_bisected_to_the_refused_one(engine, token, tmp_path):
    srv = _serve(_refusing(create_app(engine=engine), b"REFUSE-ME", {"detail": "refused by the platform's policy"}))
    store = StationStore(tmp_path / "st" / "station.db").open()
    try:
        ids = [_append(store, i, "REFUSE-ME" if i == 3 else None) for i in range(7)]
        client = SyncClient(store, SyncSettings(url=srv.url, token=token, batch_size=7, pull=False))
        res = client.sync_once()
        assert res["pushed"] == 6 and res["dead"] == 1
        assert _on_platform(engine) == set(ids) - {ids[3]}
        (dead,) = store.dead_letters()
        assert dead.record_id == ids[3] and dead.status == 422 and "policy" in dead.reason
        client.close()
    finally:
        store.close()
        srv.stop()


def test_head_refusals_auth_wrong_urls_and_server_errors_set_nothing_aside(engine, token, tmp_path):
    head_refused = {"detail": [{"loc": ["body", "head", "signature"], "msg": "bad signature", "type": "value_error"}]}
    gateway = _serve(_refusing(create_app(engine=engine), b'"head"', head_refused))
    srv = _serve(create_app(engine=engine))
    store = StationStore(tmp_path / "st" / "station.db").open()

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"detail": "maintenance"}')

        def log_message(self, *a):
            pass

    broken = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=broken.serve_forever, daemon=True).start()
    try:
        for i in range(4):
            _append(store, i)
        cases = [(gateway.url, token, 422, False),  # the batch's head, not a record
                 (srv.url, "not-the-token", 401, False),
                 (srv.url + "/wrong-prefix", token, 404, False),
                 (f"http://127.0.0.1:{broken.server_port}", token, 503, True)]
        for url, tok, status, transient in cases:
            client = SyncClient(store, SyncSettings(url=url, token=tok, batch_size=2, pull=False))
            with pytest.raises(SyncError) as exc:
                client.sync_once()
            client.close()
            assert exc.value.status == status and exc.value.transient is transient
            assert store.pending_count() == 4 and store.dead_letter_count() == 0, status
        assert _on_platform(engine) == set()
    finally:
        broken.shutdown()
        store.close()
        srv.stop()
        gateway.stop()


def test_migration_to_dead_letters_keeps_every_outbox_row(tmp_path):
    db_path = tmp_path / "st" / "station.db"
    with StationStore(db_path).open() as store:
        ids = [_append(store, i) for i in range(3)]
        store.mark_sent(ids[:1])
    # Back to schema 2 as an older station left it (same rows, no dead-letter columns).
    db = sqlite3.connect(db_path)
    db.execute("DROP INDEX outbox_dead")
    for col in ("dead_at", "dead_status", "dead_reason", "dead_attempts"):
        db.execute(f"ALTER TABLE outbox DROP COLUMN {col}")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    with StationStore(db_path).open() as store:
        assert store.schema_version() == len(MIGRATIONS) == 3
        assert store.pending_count() == 2 and store.dead_letter_count() == 0 and store.count() == 3
        assert [r["record_id"] for r in store.outbox_batch(10)] == ids[1:]
        assert store.verify().ok


def test_values_beyond_the_platforms_limits_are_refused_before_anything_is_written(tmp_path):
    with StationStore(tmp_path / "st" / "station.db").open() as store:
        with pytest.raises(RecordLimitError, match="order_id is 200 characters long") as exc:
            _append(store, 1, LONG_ORDER)
        assert exc.value.field == "order_id" and "nothing was written" in str(exc.value)
        assert store.count() == 0 and store.pending_count() == 0
        rid = _append(store, 2)
        with pytest.raises(RecordLimitError, match="operator is 129 characters"):
            store.override(rid, "x" * 129, "checked")
        with pytest.raises(RecordLimitError, match="override_reason"):
            store.override(rid, "sue", "r" * 4097)
        store.override(rid, "sue", "line one\nline two")  # a typed reason may span lines
        assert store.count() == 2


def _cli(*args: str):
    from station.cli import app

    res = CliRunner().invoke(app, list(args), catch_exceptions=True, env={"COLUMNS": "400"})
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"traceback: {type(res.exception).__name__}: {res.exception}")
    return res


@pytest.mark.parametrize("args, needle", [
    (["--order-id", LONG_ORDER], "--order-id: order_id is 200 characters long; the platform accepts at most 128"),
    (["--streamer", "s" * 129], "--streamer: streamer is 129 characters long"),
    (["--unit-code", "U\x1b[2J"], "--unit-code: unit_code contains a control character"),
])
def test_inspect_refuses_values_the_platform_would_refuse(args, needle, tmp_path):
    img = tmp_path / "front.png"
    import cv2

    cv2.imwrite(str(img), np.full((64, 64, 3), 128, np.uint8))
    res = _cli("inspect", str(img), "--sku", "GAD-EARBUD-X2", "--reason", "wrong_item", *args,
               "--data-dir", str(tmp_path / "data"))
    assert res.exit_code == 2 and needle in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data" / "station.db").exists()


def test_decide_refuses_an_order_id_the_platform_would_refuse(tmp_path):
    payload = tmp_path / "in.json"
    payload.write_text(json.dumps({"request": {"sku": "GAD-EARBUD-X2", "reason": "wrong_item",
                                               "order_id": LONG_ORDER}, "findings": []}))
    res = _cli("decide", str(payload), "--json", "--data-dir", str(tmp_path / "data"))
    assert res.exit_code == 2 and "request.order_id: order_id is 200 characters long" in res.stderr


def test_sync_status_lists_dead_letters_and_retry_dead_requeues_them(engine, token, tmp_path, monkeypatch):
    srv = _serve(create_app(engine=engine))
    data = tmp_path / "st"
    try:
        with StationStore(data / "station.db").open() as store:
            ok = _append(store, 0)
            bad = _append_unchecked(store, monkeypatch, 1, LONG_ORDER)
        monkeypatch.setenv("STATION_SYNC_TOKEN", token)
        res = _cli("sync", "--once", "--json", "--url", srv.url, "--data-dir", str(data))
        assert res.exit_code == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["ok"] and out["pushed"] == 1 and out["dead"] == 1 and out["pending"] == 0
        assert out["dead_letter"] == 1 and out["dead_letters"][0]["record_id"] == bad
        assert _on_platform(engine) == {ok}

        res = _cli("sync", "--status", "--data-dir", str(data))
        assert res.exit_code == 0
        assert "refused by the platform 1" in res.stdout and f"refused {bad}" in res.stdout
        assert "order_id" in res.stdout and "--retry-dead" in res.stdout
        res = _cli("sync", "--status", "--json", "--data-dir", str(data))
        st = json.loads(res.stdout)
        assert st["dead_letter"] == 1 and st["dead_letters"][0]["status"] == 422

        res = _cli("sync", "--once", "--retry-dead", "--json", "--url", srv.url, "--data-dir", str(data))
        assert res.exit_code == 0 and "queued 1 refused record(s) again" in res.stderr
        out = json.loads(res.stdout)
        assert out["dead"] == 1 and out["dead_letters"][0]["attempts"] == 2
        res = _cli("sync", "--status", "--retry-dead", "--data-dir", str(data))
        assert res.exit_code == 2 and "--status only reads" in res.stderr
    finally:
        srv.stop()


def test_the_status_bar_shows_records_the_platform_refused(qtbot, data_dir):
    from station.config import StationConfig, StationSection, SyncConfig
    from tests.ui_support import WAIT_MS, make_window, seed_flagged

    refused = seed_flagged(data_dir, "ORD-D-1")
    seed_flagged(data_dir, "ORD-D-2")
    with StationStore(data_dir / "station.db").open() as store:  # what the sync client writes on a 422
        store.mark_dead([(refused.record_id, 422, "422: order_id: String should have at most 128 characters")])
    cfg = StationConfig(station=StationSection(data_dir=data_dir), sync=SyncConfig(url="http://platform:8700"))
    win = make_window(qtbot, data_dir, config=cfg)
    qtbot.waitUntil(lambda: "1 record refused by the platform" in win.sync.text(), timeout=WAIT_MS)
    assert "1 record pending" in win.sync.text()
    with StationStore(data_dir / "station.db").open() as store:
        store.retry_dead()
    win.refresh_status()
    qtbot.waitUntil(lambda: "2 records pending" in win.sync.text(), timeout=WAIT_MS)
    assert "refused" not in win.sync.text()
