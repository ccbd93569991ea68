"""Sync client: pushes the store's outbox to the platform in batches and pulls RMAs and catalogue deltas.

- Never blocks inspection: it runs on its own SQLite connection (WAL: readers never wait for the writer) and,
  in the station, on its own thread (:class:`BackgroundSync`).
- Resumes after any failure: a record leaves the outbox only after the platform acknowledged it, and the
  platform is idempotent by record id (images by content hash), so a crash or a lost reply at any point
  means the batch is sent again and counted once.
- Exponential backoff with jitter between failed attempts; state (pending, last success, last error) is kept
  in the store so the CLI and the UI can show it.
- A record the platform refuses for good (a 4xx about the record itself, e.g. a 422 for an order id beyond its
  limit) is set aside as a dead letter with the status and the platform's reason, and the rest of the outbox
  flows on: the records a refusal names are set aside and the others sent again; when the answer names none,
  the batch is halved until the refused record is alone. ``station sync --status`` lists dead letters and
  ``station sync --retry-dead`` queues them again after a fix. Transient failures (network, 5xx, 408, 429)
  keep the batch in the outbox and are retried with backoff.
- The platform witnesses the station's signed tree head only when it extends the last one it holds: each
  push with a head carries an RFC 9162 consistency proof from that head, whose copy the station keeps in its
  sync state (``platform_head``, JSON: the last head the platform acknowledged).
"""

from __future__ import annotations

import base64
import json
import os
import random
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import httpx
import numpy as np

from station.evidence import keep_acknowledged_head
from station.records import DEFAULT_MIN_FREE_BYTES, DeadLetter, PruneReport, StationStore, StoreError, utc_now

API = "/api/v1"
TOKEN_ENV = "STATION_SYNC_TOKEN"
# 4xx answers that are not about the records themselves, so they never make a dead letter: the token or its
# scope (401, 403: fix the config), a wrong URL or an older platform (404, 405: every record would be set
# aside), retry later (408, 429), and a signed-head conflict (409, handled in push_batch).
NOT_ABOUT_RECORDS = frozenset({401, 403, 404, 405, 408, 409, 429})
DEAD_LETTERS_SHOWN = 50  # how many dead letters the status lists one by one


class SyncError(RuntimeError):
    """A sync attempt failed; ``transient`` says whether retrying later can help."""

    def __init__(self, message: str, transient: bool = True, status: int | None = None,
                 body: dict | None = None, local: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status  # the platform's HTTP status, when it answered
        self.body = body or {}  # and its JSON answer
        self.local = local  # the station's own store failed (disk full, read-only), not the platform


@dataclass(frozen=True, slots=True)
class SyncSettings:
    url: str
    token: str
    batch_size: int = 200
    timeout_s: float = 15.0
    upload_images: bool = True
    thumbnail_px: int = 160
    image_batch_bytes: int = 8 * 1024 * 1024
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    idle_s: float = 5.0
    pull: bool = True
    blur_faces: bool = False
    blur_labels: bool = False


@dataclass(frozen=True, slots=True)
class SyncStatus:
    pending: int
    pushed_total: int
    last_success: str | None
    last_attempt: str | None
    last_error: str | None
    consecutive_failures: int
    dead_letter: int = 0  # records the platform refused for good (not counted in ``pending``)
    dead_letters: tuple[DeadLetter, ...] = field(default=())  # the oldest DEAD_LETTERS_SHOWN of them

    def to_json(self) -> dict:
        return {"pending": self.pending, "pushed_total": self.pushed_total, "last_success": self.last_success,
                "last_attempt": self.last_attempt, "last_error": self.last_error,
                "consecutive_failures": self.consecutive_failures, "dead_letter": self.dead_letter,
                "dead_letters": [d.to_json() for d in self.dead_letters]}


def read_token_file(path: Path) -> tuple[str, str | None]:
    """The token in ``path`` (its first non-empty line, surrounding blanks stripped) and a warning when the
    file is readable by group or others. Raises SyncError (not transient) saying what is wrong."""
    path = Path(path)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise SyncError(f"token file {path} is not a file: pass a file holding the token", transient=False)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SyncError(f"token file {path} not found: pass the file that holds the station token",
                        transient=False) from None
    except UnicodeDecodeError:
        raise SyncError(f"token file {path} is not UTF-8 text: write the token on one line", transient=False) from None
    except OSError as exc:
        raise SyncError(f"cannot read token file {path}: {exc.strerror or exc}", transient=False) from None
    token = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not token:
        raise SyncError(f"token file {path} is empty: write the station token on its first line", transient=False)
    warning = None
    if st.st_mode & 0o077:
        warning = (f"token file {path} is readable by {'group and others' if st.st_mode & 0o007 else 'its group'} "
                   f"(mode {stat.S_IMODE(st.st_mode):04o}): run `chmod 600 {path}`")
    return token, warning


def settings_from_config(sync_cfg, url: str | None = None, token: str | None = None) -> SyncSettings:
    """SyncSettings from the config's ``[sync]`` section. The token comes from ``token`` (--token or
    --token-file), else env STATION_SYNC_TOKEN, else ``sync.token``. Raises SyncError (not transient) naming
    what is missing."""
    url = url or sync_cfg.url
    token = token or os.environ.get(TOKEN_ENV) or sync_cfg.token
    if not url:
        raise SyncError("no platform URL: set [sync] url in the station config or pass --url", transient=False)
    if not token:
        raise SyncError(f"no sync token: pass --token-file FILE, set env {TOKEN_ENV}, or set [sync] token",
                        transient=False)
    s = sync_cfg
    if s.blur_faces and not face_blur_available():
        raise SyncError(FACE_BLUR_UNAVAILABLE, transient=False)
    return SyncSettings(url=url, token=token, batch_size=s.batch_size, timeout_s=s.timeout_s,
                        upload_images=s.upload_images, thumbnail_px=s.thumbnail_px, backoff_base_s=s.backoff_base_s,
                        backoff_max_s=s.backoff_max_s, idle_s=s.interval_s, pull=s.pull, blur_faces=s.blur_faces,
                        blur_labels=s.blur_labels)


def read_status(store: StationStore) -> SyncStatus:
    return SyncStatus(
        pending=store.pending_count(),
        pushed_total=int(store.get_state("pushed_total", "0") or 0),
        last_success=store.get_state("last_success"),
        last_attempt=store.get_state("last_attempt"),
        last_error=store.get_state("last_error"),
        consecutive_failures=int(store.get_state("consecutive_failures", "0") or 0),
        dead_letter=store.dead_letter_count(),
        dead_letters=tuple(store.dead_letters(DEAD_LETTERS_SHOWN)),
    )


def refuses_records(exc: SyncError) -> bool:
    """Whether the platform's answer refuses what the batch's records are (never to be accepted as they are)."""
    return exc.status is not None and 400 <= exc.status < 500 and exc.status not in NOT_ABOUT_RECORDS


def _refusal_text(exc: SyncError) -> str:
    detail = exc.body.get("detail")
    return f"{exc.status}: {detail if isinstance(detail, str) else str(exc)}"[:2000]


def named_refusals(exc: SyncError, records: list[dict]) -> dict[int, str] | None:
    """The records (index -> reason) a refusal names. FastAPI's validation answer locates every bad field
    (``loc`` = body, records, index, field); the platform's own checks name the record id. ``{}``: the answer
    is about another part of the batch (the signed head, a thumbnail, the key), so no record is to blame;
    ``None``: it does not say."""
    detail = exc.body.get("detail")
    if isinstance(detail, list):
        named: dict[int, list[str]] = {}
        elsewhere = False
        for err in detail:
            loc = err.get("loc") if isinstance(err, dict) else None
            if (isinstance(loc, list) and len(loc) >= 3 and loc[:2] == ["body", "records"]
                    and isinstance(loc[2], int) and 0 <= loc[2] < len(records)):
                where = ".".join(str(x) for x in loc[3:]) or "record"
                named.setdefault(loc[2], []).append(f"{where}: {err.get('msg', 'refused')}")
            else:
                elsewhere = True
        if named:
            return {i: f"{exc.status}: " + "; ".join(msgs) for i, msgs in named.items()}
        return {} if elsewhere else None
    if isinstance(detail, str):
        hits = {i: _refusal_text(exc) for i, r in enumerate(records) if str(r.get("record_id")) in detail}
        if hits:
            return hits
        if any(w in detail.lower() for w in ("head", "thumbnail", "public_key")):
            return {}
    return None


def backoff_delay(failures: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with equal jitter: half the step fixed, half random (spreads stations out)."""
    step = min(cap, base * (2 ** max(0, failures - 1)))
    return step / 2 + rng.uniform(0, step / 2)


# ------------------------------------------------------------------------------------------- privacy


def _blur_regions(image: np.ndarray, boxes) -> np.ndarray:
    out = image.copy()
    for x, y, w, h in boxes:
        roi = out[y:y + h, x:x + w]
        if roi.size:
            k = max(3, (min(w, h) // 3) | 1)
            out[y:y + h, x:x + w] = cv2.GaussianBlur(roi, (k, k), 0)
    return out


FACE_BLUR_UNAVAILABLE = ("sync.blur_faces needs OpenCV's Haar face cascades, which this OpenCV build lacks "
                         "(OpenCV 5 moved them out): set sync.blur_faces = false or install opencv-python-headless<5")


def face_blur_available() -> bool:
    return hasattr(cv2, "CascadeClassifier") and hasattr(cv2, "data")


def redact(image: np.ndarray, faces: bool, labels: bool) -> np.ndarray:
    """Blur faces (Haar cascade) and printed text blocks such as address labels before an image leaves."""
    if not (faces or labels):
        return image
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    boxes = []
    if faces:
        if not face_blur_available():
            raise SyncError(FACE_BLUR_UNAVAILABLE, transient=False)  # never send an unblurred face
        cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
        if not cascade.empty():
            boxes += [tuple(int(v) for v in b) for b in cascade.detectMultiScale(grey, 1.1, 5, minSize=(24, 24))]
    if labels:
        # Dense fine text: strong morphological gradient, closed horizontally into line blocks.
        grad = cv2.morphologyEx(grey, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        _, bw = cv2.threshold(grad, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
        closed = cv2.morphologyEx(bw, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (15, 3)))
        contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours:
            x, y, w, h = cv2.boundingRect(c)
            fill = cv2.countNonZero(bw[y:y + h, x:x + w]) / float(max(1, w * h))
            if w > 2.5 * h and h >= 6 and w >= 40 and 0.25 < fill < 0.85:
                boxes.append((x, y, w, h))
    return _blur_regions(image, boxes)


# ------------------------------------------------------------------------------------------- client


class SyncClient:
    """Pushes one store's outbox. Give it its own opened :class:`StationStore` (its own connection)."""

    def __init__(self, store: StationStore, settings: SyncSettings, client: httpx.Client | None = None,
                 rng: random.Random | None = None) -> None:
        self.store = store
        self.settings = settings
        self._client = client
        self.rng = rng or random.Random()

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.settings.url.rstrip("/"), timeout=self.settings.timeout_s,
                                        headers={"Authorization": f"Bearer {self.settings.token}"})
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -------------------------------------------------------------- http
    def _call(self, method: str, path: str, **kw) -> dict:
        try:
            resp = self.client.request(method, API + path, **kw)
        except httpx.HTTPError as exc:
            raise SyncError(f"platform {self.settings.url} unreachable: {type(exc).__name__}: {exc}") from None
        if resp.status_code >= 400:
            try:
                body = resp.json()
                body = body if isinstance(body, dict) else {}
                detail = body.get("detail")
            except ValueError:
                body, detail = {}, resp.text[:200]
            transient = resp.status_code >= 500 or resp.status_code in (408, 429)
            hint = " (check sync.token)" if resp.status_code in (401, 403) else ""
            raise SyncError(f"platform answered {resp.status_code} to {method} {path}: {detail}{hint}", transient,
                            status=resp.status_code, body=body)
        return resp.json()

    # -------------------------------------------------------------- images
    def _load(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def _prepare(self, data: bytes) -> np.ndarray | None:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            return None
        return redact(image, self.settings.blur_faces, self.settings.blur_labels)

    def thumbnail(self, data: bytes) -> bytes | None:
        image = self._prepare(data)
        if image is None:
            return None
        h, w = image.shape[:2]
        scale = self.settings.thumbnail_px / max(h, w)
        if scale < 1:
            image = cv2.resize(image, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 75])
        return buf.tobytes() if ok else None

    def _upload_images(self, shas: list[str]) -> int:
        """Full images not yet on the platform. With blurring on, full images stay on the station (only blurred
        thumbnails leave): the platform verifies every full image against its content hash."""
        if not self.settings.upload_images or self.settings.blur_faces or self.settings.blur_labels:
            return 0
        todo = self.store.images_to_upload(shas)
        sent = 0
        chunk, size = [], 0
        for sha, path in todo:
            data = self._load(path)
            if data is None:
                continue
            chunk.append((sha, data))
            size += len(data)
            if size >= self.settings.image_batch_bytes:
                sent += self._send_images(chunk)
                chunk, size = [], 0
        if chunk:
            sent += self._send_images(chunk)
        return sent

    def _send_images(self, chunk: list[tuple[str, bytes]]) -> int:
        self._call("POST", "/images/batch", json={"images": [
            {"sha256": sha, "data_b64": base64.b64encode(data).decode()} for sha, data in chunk]})
        self.store.mark_images_uploaded([sha for sha, _ in chunk])
        return len(chunk)

    # -------------------------------------------------------------- push / pull
    def push_batch(self) -> dict:
        """Send the oldest pending batch; returns counts (all zero when nothing is pending). Records the
        platform refuses for good are set aside (``dead``) and the rest of the batch is sent."""
        records = self.store.outbox_batch(self.settings.batch_size)
        if not records:
            return {"pushed": 0, "created": 0, "existing": 0, "conflicts": 0, "images": 0, "dead": 0}
        return self._push_isolating(records)

    def _push_isolating(self, records: list[dict]) -> dict:
        """Send ``records``; on a refusal about records, set aside the ones it names (or, when it names none,
        halve the batch until the refused record is alone) and send the others."""
        try:
            return {**self._send(records), "dead": 0}
        except SyncError as exc:
            if not refuses_records(exc):
                raise
            named = named_refusals(exc, records)
            if named == {}:
                raise  # the batch's head or thumbnails, not a record: no record is set aside for it
            if named is None:
                if len(records) > 1:
                    half = len(records) // 2
                    first, second = self._push_isolating(records[:half]), self._push_isolating(records[half:])
                    return {k: first[k] + second[k] for k in first}
                named = {0: _refusal_text(exc)}
            self.store.mark_dead([(records[i]["record_id"], exc.status, why) for i, why in named.items()])
            rest = [r for i, r in enumerate(records) if i not in named]
            res = self._push_isolating(rest) if rest else {
                "pushed": 0, "created": 0, "existing": 0, "conflicts": 0, "images": 0, "dead": 0}
            return {**res, "dead": res["dead"] + len(named)}

    def _send(self, records: list[dict]) -> dict:
        """One POST of ``records`` (images uploaded first, thumbnails and the signed head with it); marks them
        sent when the platform acknowledged them."""
        shas = [im["sha256"] for r in records for im in r["images"]]
        images = self._upload_images(shas)
        thumbs = {}
        for sha in dict.fromkeys(shas):
            try:
                data = self._load(self.store.image_path(sha))
            except StoreError:
                data = None
            thumb = self.thumbnail(data) if data is not None else None
            if thumb is not None:
                thumbs[sha] = base64.b64encode(thumb).decode()
        body: dict = {"records": records, "thumbnails": thumbs}
        head = self.store.latest_head()
        if head is not None:
            body["head"] = head.to_json()
            body["public_key_pem"] = self.store.public_key_pem().decode()
            self._add_consistency(body, head, self._platform_head_size())
        try:
            res = self._call("POST", "/records/batch", json=body)
        except SyncError as exc:
            known = exc.body.get("platform_head") if exc.status == 409 else None
            if head is None or not isinstance(known, dict) or exc.body.get("fork") or "tree_size" not in known:
                raise
            # The platform holds a head this station had not recorded (state lost, another sync process):
            # prove consistency from that one instead, once.
            self._save_platform_head(known)
            self._add_consistency(body, head, int(known["tree_size"]))
            res = self._call("POST", "/records/batch", json=body)
        if isinstance(res.get("head"), dict):
            self._save_platform_head(res["head"])
        self.store.mark_sent([r["record_id"] for r in records])
        return {"pushed": len(records), "created": res.get("created", 0), "existing": res.get("existing", 0),
                "conflicts": res.get("conflicts", 0), "images": images}

    def _platform_head_size(self) -> int | None:
        try:
            return int(json.loads(self.store.get_state("platform_head") or "null")["tree_size"])
        except (TypeError, ValueError, KeyError):
            return None

    def _save_platform_head(self, head: dict) -> None:
        self.store.set_state({"platform_head": json.dumps(head, sort_keys=True)})
        keep_acknowledged_head(self.store.evidence.key, head, self.settings.url)  # a copy outside the database

    def _add_consistency(self, body: dict, head, old_size: int | None) -> None:
        """The proof that ``head`` extends the platform's last head of ``old_size`` (none needed when the
        platform holds none, or holds this very size)."""
        body.pop("consistency", None)
        if old_size is None or not 0 < old_size < head.tree_size:
            return
        from station.evidence import all_leaves, consistency_proof

        leaves = all_leaves(self.store.db)[:head.tree_size]
        if len(leaves) == head.tree_size:
            body["consistency"] = {"old_size": old_size,
                                   "proof": [h.hex() for h in consistency_proof(old_size, leaves)]}

    def pull(self) -> dict:
        """RMAs and catalogue entries changed on the platform since the last pull."""
        got = {}
        for table, path, key in (("rmas", "/rmas", "order_id"), ("catalogue_updates", "/catalogue", "sku")):
            n = 0
            while True:
                since = self.store.pulled_max_seq(table)
                res = self._call("GET", path, params={"since": since, "limit": 1000})
                items = res.get("items", [])
                if not items:
                    break
                n += self.store.save_pulled(table, key, items)
            got[table] = n
        return got

    def sync_once(self, max_batches: int | None = None) -> dict:
        """Push until the outbox is empty (or ``max_batches``), then pull. Raises SyncError on failure, with
        the failure recorded in the sync state."""
        totals = {"pushed": 0, "created": 0, "existing": 0, "conflicts": 0, "images": 0, "dead": 0}
        try:
            self.store.set_state({"last_attempt": utc_now()})
        except StoreError as exc:
            raise SyncError(str(exc), transient=False, local=True) from None
        try:
            batches = 0
            while max_batches is None or batches < max_batches:
                res = self.push_batch()
                if not res["pushed"] and not res["dead"]:
                    break
                for k in totals:
                    totals[k] += res[k]
                batches += 1
                self.store.set_state({"pushed_total": str(int(self.store.get_state("pushed_total", "0")) +
                                                           res["pushed"])})
            pulled = self.pull() if self.settings.pull else {}
        except (SyncError, StoreError) as exc:
            try:
                failures = int(self.store.get_state("consecutive_failures", "0") or 0) + 1
                self.store.set_state({"last_error": str(exc), "consecutive_failures": str(failures)})
            except StoreError:
                pass  # the store itself cannot be written (disk full): the error below says so
            if isinstance(exc, StoreError):
                raise SyncError(str(exc), transient=False, local=True) from None
            raise
        try:
            self.store.set_state({"last_success": utc_now(), "last_error": None, "consecutive_failures": "0"})
        except StoreError as exc:  # what was pushed is marked sent already; only the bookkeeping failed
            raise SyncError(str(exc), transient=False, local=True) from None
        return {**totals, "pulled": pulled}

    def run_forever(self, stop: threading.Event, on_status: Callable[[SyncStatus], None] | None = None) -> None:
        """Loop until ``stop`` is set: sync, then wait ``idle_s`` (or the backoff after a failure)."""
        failures = 0
        while not stop.is_set():
            try:
                self.sync_once()
                failures = 0
                wait = self.settings.idle_s
            except SyncError:
                failures += 1
                wait = backoff_delay(failures, self.settings.backoff_base_s, self.settings.backoff_max_s, self.rng)
            if on_status is not None:
                try:
                    on_status(read_status(self.store))
                except StoreError:
                    pass
            stop.wait(wait)


class BackgroundSync:
    """Sync on a daemon thread with its own store connection, for the station app and the UI.

    With ``image_budget_bytes`` it also applies retention after every sync attempt (on the same thread, so
    inspection never waits for it): synced images are pruned, oldest first, down to the budget; an unsynced
    one never is (:meth:`StationStore.enforce_image_budget`)."""

    def __init__(self, db_path: Path, settings: SyncSettings, image_dir: Path | None = None,
                 key_path: Path | None = None, image_budget_bytes: int | None = None,
                 min_free_bytes: int = DEFAULT_MIN_FREE_BYTES) -> None:
        self.db_path = Path(db_path)
        self.image_dir = image_dir
        self.key_path = key_path
        self.settings = settings
        self.image_budget_bytes = image_budget_bytes
        self.min_free_bytes = min_free_bytes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_status: SyncStatus | None = None
        self.last_prune: PruneReport | None = None
        self.last_prune_error: str | None = None
        self.error: str | None = None  # why the thread stopped by itself (the store could not be opened)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _after_attempt(self, store: StationStore, status: SyncStatus) -> None:
        self.last_status = status
        if self.image_budget_bytes is None:
            return
        try:
            self.last_prune = store.enforce_image_budget(self.image_budget_bytes)
            self.last_prune_error = None
        except (StoreError, OSError) as exc:  # retention failing must not stop sync; it is retried next time
            self.last_prune_error = f"image retention failed: {exc}"

    def _run(self) -> None:
        try:
            store = StationStore(self.db_path, self.image_dir, self.key_path, self.min_free_bytes).open()
        except StoreError as exc:
            self.error = f"sync could not open the station store: {exc}"
            return
        client = SyncClient(store, self.settings)
        try:
            client.run_forever(self._stop, on_status=lambda s: self._after_attempt(store, s))
        finally:
            client.close()
            store.close()

    def start(self) -> "BackgroundSync":
        self._thread = threading.Thread(target=self._run, name="station-sync", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def wait_until_synced(client: SyncClient, deadline_s: float, rng: random.Random | None = None) -> bool:
    """Retry ``sync_once`` with backoff until the outbox is empty or the deadline passes (bench, tests)."""
    rng = rng or random.Random(0)
    end = time.monotonic() + deadline_s
    failures = 0
    while time.monotonic() < end:
        try:
            client.sync_once()
            if client.store.pending_count() == 0:
                return True
        except SyncError as exc:
            if not exc.transient:
                raise
            failures += 1
            time.sleep(min(backoff_delay(failures, 0.05, 1.0, rng), max(0.0, end - time.monotonic())))
    return client.store.pending_count() == 0
