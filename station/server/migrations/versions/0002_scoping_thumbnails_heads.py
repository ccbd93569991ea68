"""Station scoping and witnessed heads: tokens get a station scope and an expiry; thumbnails move out of
``images`` into ``thumbnails``, one per (station, image), so no station can replace another's; refused
signed heads (forks, heads that do not extend the last one) are kept in ``tree_head_conflicts``.

Tokens made before this revision expire after their role's default lifetime (station 365 days, users 30),
counted from the upgrade. Existing thumbnails are attributed to the station of the earliest record that references their image
(dropped when no record does: nobody can say whose they are).

Idempotent: a database made by ``create_all`` before migrations is stamped 0001 and upgraded from there, and
``create_all`` may already have made this revision's tables and columns; each step runs only when needed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _columns(table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def _tables() -> set[str]:
    return set(sa.inspect(op.get_bind()).get_table_names())


def upgrade() -> None:
    cols = _columns("tokens")
    with op.batch_alter_table("tokens") as batch:
        if "station_id" not in cols:
            batch.add_column(sa.Column("station_id", sa.String(64), nullable=True))
        if "expires_at" not in cols:
            batch.add_column(sa.Column("expires_at", sa.String(40), nullable=True))

    # Every token expires: those made before this revision get their role's default lifetime from now.
    now = dt.datetime.now(dt.timezone.utc)
    for role, days in (("station", 365), ("inspector", 30), ("supervisor", 30), ("admin", 30)):
        op.execute(sa.text("UPDATE tokens SET expires_at = :t WHERE expires_at IS NULL AND role = :r")
                   .bindparams(t=(now + dt.timedelta(days=days)).isoformat(timespec="milliseconds"), r=role))

    if "thumbnails" not in _tables():
        op.create_table(
            "thumbnails",
            sa.Column("station_id", sa.String(64), primary_key=True),
            sa.Column("sha256", sa.String(64), primary_key=True),
            sa.Column("thumbnail", sa.LargeBinary(), nullable=False),
            sa.Column("received_at", sa.String(40), nullable=False),
        )
    if "thumbnail" in _columns("images"):
        op.execute(sa.text(
            """INSERT INTO thumbnails (station_id, sha256, thumbnail, received_at)
               SELECT (SELECT r.station_id FROM record_images ri JOIN records r ON r.record_id = ri.record_id
                       WHERE ri.sha256 = i.sha256 ORDER BY r.received_at, r.record_id LIMIT 1),
                      i.sha256, i.thumbnail, i.received_at
               FROM images i
               WHERE i.thumbnail IS NOT NULL AND EXISTS (SELECT 1 FROM record_images ri WHERE ri.sha256 = i.sha256)
                 AND NOT EXISTS (SELECT 1 FROM thumbnails t WHERE t.sha256 = i.sha256)"""))
        with op.batch_alter_table("images") as batch:
            batch.drop_column("thumbnail")

    if "tree_head_conflicts" not in _tables():
        op.create_table(
            "tree_head_conflicts",
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("station_id", sa.String(64), nullable=False),
            sa.Column("tree_size", sa.Integer(), nullable=False),
            sa.Column("root_hash", sa.String(64), nullable=False),
            sa.Column("signed_at", sa.String(40), nullable=False),
            sa.Column("key_id", sa.String(32), nullable=False),
            sa.Column("signature", sa.String(128), nullable=False),
            sa.Column("last_tree_size", sa.Integer(), nullable=False),
            sa.Column("last_root_hash", sa.String(64), nullable=False),
            sa.Column("reason", sa.Text(), nullable=False),
            sa.Column("received_at", sa.String(40), nullable=False),
        )
        op.create_index("ix_tree_head_conflicts_station_id", "tree_head_conflicts", ["station_id"])


def downgrade() -> None:
    op.drop_index("ix_tree_head_conflicts_station_id", "tree_head_conflicts")
    op.drop_table("tree_head_conflicts")
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("thumbnail", sa.LargeBinary(), nullable=True))
    op.execute(sa.text("UPDATE images SET thumbnail = (SELECT t.thumbnail FROM thumbnails t "
                       "WHERE t.sha256 = images.sha256 ORDER BY t.received_at LIMIT 1)"))
    op.drop_table("thumbnails")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("expires_at")
        batch.drop_column("station_id")
