"""Disposition webhooks (issue 24, part 4): a real HTTP receiver on 127.0.0.1 (http.server in a thread), the
outbox in its own SQLite file, HMAC signatures, idempotency keys, backoff and the dead-letter list.

No test sleeps through a backoff: the sender's clock is a counter the test moves to the next due time."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from station import webhooks as wh
from station.domain import Decision, Disposition, Grade, LiabilityShare, Party, ReturnReason, ReturnRequest
from station.records import record_from_parts

SECRET = b"0123456789abcdef-test-secret"


class Receiver:
    """A webhook endpoint: checks the signature, answers the scripted statuses first, and keeps each event
    once by its Idempotency-Key (a repeat is acknowledged, not taken again)."""

    def __init__(self, script: list[int] | None = None, secret: bytes = SECRET, drop_first_reply: bool = False):
        self.script = list(script or [])
        self.secret = secret
        self.drop_first_reply = drop_first_reply
        self.requests: list[tuple[str, int]] = []  # (key, status answered)
        self.events: dict[str, list[dict]] = {}  # key -> bodies taken
        self.repeats = 0
        self.retry_after: str | None = None
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                key = self.headers.get("Idempotency-Key", "")
                with lock:
                    if not wh.verify_signature(receiver.secret, body, self.headers.get(wh.SIGNATURE_HEADER, "")):
                        status = 401
                    elif receiver.script:
                        status = receiver.script.pop(0)
                    else:
                        status = 200
                        if key in receiver.events:
                            receiver.repeats += 1
                        else:
                            receiver.events[key] = [json.loads(body)]
                        if receiver.drop_first_reply:
                            receiver.drop_first_reply = False
                            receiver.requests.append((key, -1))
                            self.close_connection = True
                            self.connection.shutdown(socket.SHUT_RDWR)  # taken, but the reply is lost
                            return
                    receiver.requests.append((key, status))
                self.send_response(status)
                if receiver.retry_after and status in (429, 503):
                    self.send_header("Retry-After", receiver.retry_after)
                answer = b'{"ok": true}' if status == 200 else b'{"error": "scripted"}'
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class Clock:
    """Starts at the real time: the receiver checks the signature's timestamp against its own clock."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


def _record(i: int, overrides: str | None = None):
    dec = Decision(Grade.C, Disposition.REFURBISH, (LiabilityShare(Party.BRAND, 1.0, "L-BRAND", "crack"),), False,
                   ("G-C",))
    rec = record_from_parts(ReturnRequest(f"O-{i}", "SKU-1", ReturnReason.QUALITY_ISSUE, unit_code=f"U{i}"), [], dec,
                            3, [("front", "0" * 64)], "m-1", "bench-03", {})
    if overrides:
        import dataclasses

        rec = dataclasses.replace(rec, overrides=overrides)
    return rec


@pytest.fixture()
def outbox(tmp_path):
    with wh.WebhookOutbox(tmp_path / "webhooks.db") as o:
        yield o


def _sender(url: str, clock: Clock, secret: bytes = SECRET, **kw) -> wh.WebhookSender:
    return wh.WebhookSender(url, secret, timeout_s=5, backoff_base_s=2, backoff_max_s=60, rng=random.Random(7),
                            clock=clock, **kw)


def _queue(outbox, n: int) -> list[str]:
    keys = []
    for i in range(n):
        payload = wh.disposition_payload(_record(i), wh.EventType.DISPOSITION_DECIDED,
                                         marketplace={"ebay_condition_id": 2500}, category="electronics")
        assert outbox.enqueue(payload)
        keys.append(payload["idempotency_key"])
    return keys


def _drain(sender, outbox, clock, rounds: int = 30) -> list[float]:
    """Delivery rounds, moving the clock to each next due time; returns the waits it was told."""
    waits = []
    for _ in range(rounds):
        report = sender.deliver_pending(outbox)
        if report.next_attempt_at is None:
            return waits
        if report.next_attempt_at > clock.t:
            waits.append(report.next_attempt_at - clock.t)
            clock.t = report.next_attempt_at
    raise AssertionError(f"outbox not drained in {rounds} rounds: {outbox.status()}")


def test_receiver_failing_three_times_gets_each_event_once_and_none_is_lost(outbox):
    keys = _queue(outbox, 5)
    with Receiver(script=[500, 500, 500]) as receiver:
        clock = Clock()
        sender = _sender(receiver.url, clock)
        waits = _drain(sender, outbox, clock)
        sender.close()
    assert [s for _, s in receiver.requests] == [500, 500, 500, 200, 200, 200, 200, 200]
    assert sorted(receiver.events) == sorted(keys)  # every event arrived ...
    assert all(len(bodies) == 1 for bodies in receiver.events.values()) and receiver.repeats == 0  # ... once
    assert outbox.status()["pending"] == 0 and outbox.status()["delivered"] == 5 and outbox.status()["dead"] == 0
    assert outbox.state_of(keys[0]) == (wh.EventState.DELIVERED, 4)
    assert [outbox.state_of(k)[1] for k in keys[1:]] == [1, 1, 1, 1]
    # a round stops at the first failure: the receiver was asked once per round, the order kept
    assert [k for k, _ in receiver.requests[:4]] == [keys[0]] * 4
    # exponential backoff with equal jitter: each wait within [step/2, step], step doubling from 2 s
    assert len(waits) == 3
    for n, wait in enumerate(waits):
        step = 2 * 2 ** n
        assert step / 2 <= wait <= step


def test_a_lost_reply_means_a_repeat_the_idempotency_key_makes_harmless(outbox):
    keys = _queue(outbox, 2)
    with Receiver(drop_first_reply=True) as receiver:
        clock = Clock()
        _drain(_sender(receiver.url, clock), outbox, clock)
    assert receiver.repeats == 1  # the station could not know the first one arrived, so it sent it again
    assert {k: len(v) for k, v in receiver.events.items()} == {keys[0]: 1, keys[1]: 1}
    assert outbox.status()["delivered"] == 2


def test_body_and_headers_are_what_the_receiver_needs(outbox):
    rec = _record(1)
    payload = wh.disposition_payload(rec, "disposition.decided", marketplace={"ebay_condition_id": 2500})
    outbox.enqueue(payload)
    with Receiver() as receiver:
        clock = Clock()
        _drain(_sender(receiver.url, clock), outbox, clock)
    body = receiver.events[f"{rec.record_id}:disposition.decided"][0]
    assert body == json.loads(json.dumps(payload))
    assert (body["grade"], body["disposition"], body["lane"], body["order_id"]) == ("C", "refurbish", 3, "O-1")
    assert body["liability"] == [{"party": "brand", "share": 1.0}] and body["marketplace"]["ebay_condition_id"] == 2500


def test_the_same_event_queued_twice_is_sent_once_an_override_is_a_new_event(outbox):
    rec = _record(1)
    first = wh.disposition_payload(rec, wh.EventType.DISPOSITION_DECIDED)
    assert outbox.enqueue(first) and not outbox.enqueue(first)
    override = wh.disposition_payload(_record(2, overrides=rec.record_id), wh.EventType.DISPOSITION_OVERRIDDEN)
    assert outbox.enqueue(override) and override["idempotency_key"].endswith(":disposition.overridden")
    assert outbox.status()["pending"] == 2


def test_permanent_4xx_goes_to_the_dead_letter_list_and_the_rest_still_go(outbox):
    keys = _queue(outbox, 3)
    with Receiver(script=[422]) as receiver:
        clock = Clock()
        report = _sender(receiver.url, clock).deliver_pending(outbox)
    assert (report.delivered, report.dead, report.retrying) == (2, 1, 0)
    st = outbox.status()
    assert (st["pending"], st["delivered"], st["dead"]) == (0, 2, 1)
    [dead] = st["dead_letters"]
    assert dead["key"] == keys[0] and dead["status"] == 422 and "scripted" in dead["error"]
    assert outbox.requeue_dead(keys[0], now=clock.t) == 1  # the receiver was fixed
    with Receiver() as fixed:
        clock = Clock()
        _drain(_sender(fixed.url, clock), outbox, clock)
    assert list(fixed.events) == [keys[0]] and outbox.status()["dead"] == 0 and outbox.status()["delivered"] == 3


def test_a_wrong_secret_is_refused_by_the_receiver_and_dead_lettered(outbox):
    _queue(outbox, 1)
    with Receiver() as receiver:
        clock = Clock()
        _sender(receiver.url, clock, secret=b"another-secret-of-16-bytes").deliver_pending(outbox)
    assert receiver.events == {} and outbox.status()["dead_letters"][0]["status"] == 401


def test_receiver_down_keeps_everything_pending_and_says_why(outbox):
    keys = _queue(outbox, 3)
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    clock = Clock()
    report = _sender(f"http://127.0.0.1:{port}/hooks", clock).deliver_pending(outbox)
    assert (report.delivered, report.retrying, report.dead) == (0, 1, 0)
    st = outbox.status()
    assert st["pending"] == 3 and "ConnectError" in st["last_error"] and st["next_attempt_at"]
    assert [outbox.state_of(k)[1] for k in keys] == [1, 0, 0]  # one attempt per round while it is down
    assert outbox.due(clock.t, 10) == []  # the head backs off and the rest wait behind it, in order
    assert [e.key for e in outbox.due(report.next_attempt_at, 10)] == keys


def test_retry_after_is_honoured(outbox):
    _queue(outbox, 1)
    with Receiver(script=[429]) as receiver:
        receiver.retry_after = "45"
        clock = Clock()
        report = _sender(receiver.url, clock).deliver_pending(outbox)
    assert report.next_attempt_at - clock.t >= 45


def test_max_attempts_dead_letters_after_that_many_transient_failures(outbox):
    _queue(outbox, 1)
    with Receiver(script=[503, 503, 503]) as receiver:
        clock = Clock()
        _drain(_sender(receiver.url, clock, max_attempts=2), outbox, clock)
    [dead] = outbox.status()["dead_letters"]
    assert dead["attempts"] == 2 and dead["error"].startswith("gave up after 2 attempts: HTTP 503")
    assert receiver.events == {}


def test_signature_covers_timestamp_and_body():
    body = b'{"a":1}'
    header = wh.signature(SECRET, 1_800_000_000, body)
    assert wh.verify_signature(SECRET, body, header, now=1_800_000_010)
    assert not wh.verify_signature(SECRET, b'{"a":2}', header, now=1_800_000_010)
    assert not wh.verify_signature(b"x" * 16, body, header, now=1_800_000_010)
    assert not wh.verify_signature(SECRET, body, header, now=1_800_001_000)  # replayed 1000 s later
    assert not wh.verify_signature(SECRET, body, "garbage", now=1_800_000_000)


def test_secret_comes_from_a_private_file_or_the_environment(tmp_path):
    f = tmp_path / "secret"
    f.write_bytes(SECRET + b"\n")
    f.chmod(0o600)
    assert wh.load_secret(f, env={}) == SECRET
    f.chmod(0o644)
    with pytest.raises(wh.WebhookError, match="readable by others: chmod 600"):
        wh.load_secret(f, env={})
    assert wh.load_secret(None, env={wh.SECRET_ENV: SECRET.decode()}) == SECRET
    with pytest.raises(wh.WebhookError, match="no webhook secret"):
        wh.load_secret(None, env={})
    with pytest.raises(wh.WebhookError, match="shorter than 16 bytes"):
        wh.load_secret(None, env={wh.SECRET_ENV: "short"})
    with pytest.raises(wh.WebhookError, match="cannot read the webhook secret file"):
        wh.load_secret(tmp_path / "missing", env={})


def test_config_is_strict_and_the_sender_needs_a_url(tmp_path, monkeypatch):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="secret"):
        wh.WebhooksConfig.model_validate({"url": "https://x", "secret": "in the config"})
    with pytest.raises(ValidationError, match="url"):
        wh.WebhooksConfig.model_validate({"url": "ftp://x"})
    with pytest.raises(wh.WebhookError, match="webhooks are off"):
        wh.WebhookSender.from_config(wh.WebhooksConfig())
    monkeypatch.setenv(wh.SECRET_ENV, SECRET.decode())
    sender = wh.WebhookSender.from_config(wh.WebhooksConfig(url="https://wms.example/hooks"))
    assert sender.url == "https://wms.example/hooks"


def test_status_of_an_outbox_not_yet_made_is_empty(tmp_path):
    assert wh.status(tmp_path / "webhooks.db") == {"pending": 0, "delivered": 0, "dead": 0, "next_attempt_at": None,
                                                   "last_error": None, "dead_letters": []}
    assert not (tmp_path / "webhooks.db").exists()


def test_payload_from_a_store_row_matches_the_record_and_covers_overrides(tmp_path):
    import numpy as np

    from station.records import StationStore

    with StationStore(tmp_path / "station.db") as store:
        sha = store.put_image(np.full((16, 16, 3), 50, np.uint8)).sha256
        dec = Decision(Grade.B, Disposition.MANUAL_REVIEW, (LiabilityShare(Party.PLATFORM, 1.0, "L", "why"),), True,
                       ("G-B",), proposed_disposition=Disposition.OPEN_BOX)
        rec = record_from_parts(ReturnRequest("O-1", "S", ReturnReason.QUALITY_ISSUE), [], dec, 0, [("front", sha)],
                                "m", "st", {})
        store.append(rec)
        assert wh.disposition_payload_from_row(store.get(rec.record_id), "disposition.decided") == \
            wh.disposition_payload(rec, "disposition.decided")
        new_id = store.override(rec.record_id, "sup", "looked", grade=Grade.A, disposition=Disposition.RESTOCK, lane=1)
        over = wh.disposition_payload_from_row(store.get(new_id), wh.EventType.DISPOSITION_OVERRIDDEN)
    assert (over["overrides"], over["grade"], over["disposition"], over["lane"], over["review"]) == \
        (rec.record_id, "A", "restock", 1, False)
    assert over["idempotency_key"] == f"{new_id}:disposition.overridden"
