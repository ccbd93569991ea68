"""The station store's schema: every migration in order (``PRAGMA user_version`` counts those applied), and
the splitter that runs one statement at a time."""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: inspections, images and their links; append-only enforced by triggers.
    """
    CREATE TABLE inspections (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        record_id TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        station_id TEXT NOT NULL,
        order_id TEXT NOT NULL,
        sku TEXT NOT NULL,
        unit_code TEXT,
        reason TEXT NOT NULL,
        channel TEXT, streamer TEXT, brand TEXT, carrier TEXT,
        grade TEXT NOT NULL,
        disposition TEXT NOT NULL,
        review INTEGER NOT NULL,
        lane INTEGER,
        confidence REAL NOT NULL,
        model_version TEXT NOT NULL,
        rules_fired TEXT NOT NULL,
        decision_json TEXT NOT NULL,
        findings_json TEXT NOT NULL,
        timings_json TEXT NOT NULL,
        operator TEXT,
        overrides TEXT REFERENCES inspections(record_id),
        override_reason TEXT
    );
    CREATE INDEX inspections_unit ON inspections(unit_code);
    CREATE INDEX inspections_order ON inspections(order_id);
    CREATE TABLE images (
        sha256 TEXT PRIMARY KEY,
        relpath TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE inspection_images (
        record_id TEXT NOT NULL REFERENCES inspections(record_id),
        view TEXT NOT NULL,
        sha256 TEXT NOT NULL REFERENCES images(sha256),
        PRIMARY KEY (record_id, view, sha256)
    );
    CREATE TRIGGER inspections_no_update BEFORE UPDATE ON inspections
        BEGIN SELECT RAISE(ABORT, 'inspection records are append-only: write an override instead'); END;
    CREATE TRIGGER inspections_no_delete BEFORE DELETE ON inspections
        BEGIN SELECT RAISE(ABORT, 'inspection records are append-only: write an override instead'); END;
    CREATE TRIGGER inspection_images_no_update BEFORE UPDATE ON inspection_images
        BEGIN SELECT RAISE(ABORT, 'inspection records are append-only'); END;
    CREATE TRIGGER inspection_images_no_delete BEFORE DELETE ON inspection_images
        BEGIN SELECT RAISE(ABORT, 'inspection records are append-only'); END;
    """,
    # 2: outbox (records to send, written with the record), evidence log (leaves + signed heads), image sync and
    #    retention state, sync state, RMAs and catalogue deltas pulled from the platform.
    """
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        record_id TEXT NOT NULL UNIQUE REFERENCES inspections(record_id),
        created_at TEXT NOT NULL,
        sent_at TEXT
    );
    CREATE INDEX outbox_pending ON outbox(sent_at, seq);
    INSERT INTO outbox(record_id, created_at) SELECT record_id, created_at FROM inspections ORDER BY seq;
    CREATE TABLE evidence_leaves (
        idx INTEGER PRIMARY KEY,
        record_id TEXT NOT NULL UNIQUE REFERENCES inspections(record_id),
        leaf_hash TEXT NOT NULL
    );
    CREATE TABLE tree_heads (
        tree_size INTEGER PRIMARY KEY,
        root_hash TEXT NOT NULL,
        signed_at TEXT NOT NULL,
        key_id TEXT NOT NULL,
        signature TEXT NOT NULL
    );
    CREATE TRIGGER evidence_leaves_no_update BEFORE UPDATE ON evidence_leaves
        BEGIN SELECT RAISE(ABORT, 'the evidence log is append-only'); END;
    CREATE TRIGGER evidence_leaves_no_delete BEFORE DELETE ON evidence_leaves
        BEGIN SELECT RAISE(ABORT, 'the evidence log is append-only'); END;
    CREATE TRIGGER tree_heads_no_update BEFORE UPDATE ON tree_heads
        BEGIN SELECT RAISE(ABORT, 'the evidence log is append-only'); END;
    CREATE TRIGGER tree_heads_no_delete BEFORE DELETE ON tree_heads
        BEGIN SELECT RAISE(ABORT, 'the evidence log is append-only'); END;
    ALTER TABLE images ADD COLUMN uploaded_at TEXT;
    ALTER TABLE images ADD COLUMN pruned_at TEXT;
    CREATE INDEX images_created ON images(created_at);
    CREATE INDEX inspection_images_sha ON inspection_images(sha256);
    CREATE TABLE sync_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE rmas (order_id TEXT PRIMARY KEY, payload TEXT NOT NULL, server_seq INTEGER NOT NULL);
    CREATE TABLE catalogue_updates (sku TEXT PRIMARY KEY, payload TEXT NOT NULL, server_seq INTEGER NOT NULL);
    """,
    # 3: dead letters. A record the platform refuses for good (a 4xx about the record itself) is set aside with
    #    the status and the platform's reason, so it no longer blocks every later record; it stays in the
    #    outbox (sent_at NULL) and `station sync --retry-dead` queues it again after a fix on either side.
    """
    ALTER TABLE outbox ADD COLUMN dead_at TEXT;
    ALTER TABLE outbox ADD COLUMN dead_status INTEGER;
    ALTER TABLE outbox ADD COLUMN dead_reason TEXT;
    ALTER TABLE outbox ADD COLUMN dead_attempts INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX outbox_dead ON outbox(dead_at);
    """,
)


def split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (BEGIN ... END;) whole."""
    statements, buf = [], []
    for line in script.strip().splitlines():
        buf.append(line)
        joined = "\n".join(buf).strip()
        if joined.endswith(";") and sqlite3.complete_statement(joined):
            statements.append(joined)
            buf = []
    if "\n".join(buf).strip():
        statements.append("\n".join(buf).strip())
    return statements
