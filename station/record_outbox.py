"""The transactional outbox of the station store (records waiting for the platform, dead letters, uploaded
images, sync state, pulled RMAs and catalogue deltas) and the store's short transaction helper.

Mixed into :class:`station.records.StationStore`, whose ``db`` connection these methods use.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Sequence

from station.record_types import DeadLetter, StoreError, disk_full_hint, utc_now


class OutboxQueue:
    """Outbox and sync-state queries of :class:`station.records.StationStore` (a mixin: it needs ``db`` and
    ``image_dir``)."""

    # -------------------------------------------------------------------------------- outbox (sync)
    def pending_count(self) -> int:
        """Records waiting for the platform (dead letters not counted: see ``dead_letter_count``)."""
        return int(self.db.execute(
            "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND dead_at IS NULL").fetchone()[0])

    def dead_letter_count(self) -> int:
        return int(self.db.execute(
            "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND dead_at IS NOT NULL").fetchone()[0])

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """Records the platform refused for good, oldest first."""
        rows = self.db.execute(
            """SELECT o.record_id, i.order_id, o.dead_status, o.dead_reason, o.dead_at, o.dead_attempts
               FROM outbox o JOIN inspections i ON i.record_id = o.record_id
               WHERE o.sent_at IS NULL AND o.dead_at IS NOT NULL ORDER BY o.seq LIMIT ?""",
            (-1 if limit is None else int(limit),)).fetchall()
        return [DeadLetter(rid, order, status, reason or "", at, int(n)) for rid, order, status, reason, at, n in rows]

    def mark_dead(self, refusals: Sequence[tuple[str, int | None, str]]) -> None:
        """Set aside records the platform refused for good: ``(record_id, http_status, reason)`` each. Later
        batches skip them; the rest of the outbox flows on."""
        if not refusals:
            return
        now = utc_now()
        with self._tx(f"set aside {len(refusals)} refused record(s)"):
            self.db.executemany(
                "UPDATE outbox SET dead_at = ?, dead_status = ?, dead_reason = ?, dead_attempts = dead_attempts + 1 "
                "WHERE record_id = ? AND sent_at IS NULL",
                [(now, status, str(reason)[:2000], rid) for rid, status, reason in refusals])

    def retry_dead(self, record_ids: Sequence[str] | None = None) -> int:
        """Queue dead letters again (all, or those named), after the platform or the data was fixed; returns how
        many. The status and reason stay until the next attempt answers."""
        with self._tx("queue refused records again"):
            if record_ids is None:
                cur = self.db.execute("UPDATE outbox SET dead_at = NULL WHERE sent_at IS NULL AND dead_at IS NOT NULL")
                return cur.rowcount
            n = 0
            for rid in record_ids:
                n += self.db.execute("UPDATE outbox SET dead_at = NULL WHERE record_id = ? AND sent_at IS NULL "
                                     "AND dead_at IS NOT NULL", (rid,)).rowcount
            return n

    def outbox_batch(self, limit: int) -> list[dict]:
        """The oldest unsent records, each as the platform's record payload (row, images, log leaf)."""
        cur = self.db.execute(
            """SELECT i.*, l.idx AS leaf_index, l.leaf_hash AS leaf_hash FROM outbox o
               JOIN inspections i ON i.record_id = o.record_id
               LEFT JOIN evidence_leaves l ON l.record_id = o.record_id
               WHERE o.sent_at IS NULL AND o.dead_at IS NULL ORDER BY o.seq LIMIT ?""", (limit,))
        names = [d[0] for d in cur.description]
        out = []
        for row in cur.fetchall():
            rec = dict(zip(names, row))
            rec.pop("seq", None)
            rec["images"] = [{"view": v, "sha256": sh} for v, sh in self.db.execute(
                "SELECT view, sha256 FROM inspection_images WHERE record_id=? ORDER BY rowid", (rec["record_id"],))]
            out.append(rec)
        return out

    def mark_sent(self, record_ids: list[str]) -> None:
        if not record_ids:
            return
        now = utc_now()
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("UPDATE outbox SET sent_at = ?, dead_at = NULL WHERE record_id = ? AND sent_at IS NULL",
                                [(now, rid) for rid in record_ids])
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise StoreError(f"cannot mark {len(record_ids)} records as sent: {exc}{disk_full_hint(exc)}") from None

    def images_to_upload(self, shas: list[str]) -> list[tuple[str, Path]]:
        out = []
        for sha in dict.fromkeys(shas):
            row = self.db.execute("SELECT relpath FROM images WHERE sha256=? AND uploaded_at IS NULL "
                                  "AND pruned_at IS NULL", (sha,)).fetchone()
            if row is not None:
                out.append((sha, self.image_dir / row[0]))
        return out

    def mark_images_uploaded(self, shas: list[str]) -> None:
        if not shas:
            return
        now = utc_now()
        with self._tx("mark images uploaded"):
            self.db.executemany("UPDATE images SET uploaded_at = ? WHERE sha256 = ? AND uploaded_at IS NULL",
                                [(now, sha) for sha in shas])

    def get_state(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM sync_state WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_state(self, values: dict[str, str | None]) -> None:
        with self._tx("save sync state"):
            for k, v in values.items():
                if v is None:
                    self.db.execute("DELETE FROM sync_state WHERE key=?", (k,))
                else:
                    self.db.execute("INSERT INTO sync_state(key, value) VALUES (?,?) "
                                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (k, v))

    def save_pulled(self, table: str, key_field: str, items: list[dict]) -> int:
        """Store RMAs (``rmas``) or catalogue updates (``catalogue_updates``) pulled from the platform."""
        if table not in ("rmas", "catalogue_updates"):
            raise ValueError(table)
        col = "order_id" if table == "rmas" else "sku"
        with self._tx(f"save pulled {table}"):
            for item in items:
                self.db.execute(f"INSERT INTO {table}({col}, payload, server_seq) VALUES (?,?,?) "
                                f"ON CONFLICT({col}) DO UPDATE SET payload=excluded.payload, "
                                f"server_seq=excluded.server_seq",
                                (item[key_field], json.dumps(item, ensure_ascii=False), int(item["seq"])))
        return len(items)

    def pulled_max_seq(self, table: str) -> int:
        if table not in ("rmas", "catalogue_updates"):
            raise ValueError(table)
        return int(self.db.execute(f"SELECT COALESCE(MAX(server_seq), 0) FROM {table}").fetchone()[0])

    def _tx(self, what: str):
        store = self

        class _Tx:
            def __enter__(self_inner):
                try:
                    store.db.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as e:  # busy, disk I/O, read-only: the same one-line error as a failed write
                    raise StoreError(f"cannot {what}: {e}{disk_full_hint(e)}") from None

            def __exit__(self_inner, typ, exc, tb):
                if typ is None:
                    try:
                        store.db.execute("COMMIT")
                        return False
                    except sqlite3.Error as e:
                        exc = e
                if store.db.in_transaction:
                    store.db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"cannot {what}: {exc}{disk_full_hint(exc)}") from None
                return False

        return _Tx()
