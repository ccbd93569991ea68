"""Initial platform schema: tokens, records (and their images, conflicts), images, station keys, signed tree
heads, RMAs and catalogue entries. Exactly what ``Base.metadata.create_all`` made before migrations existed,
so such a database is stamped 0001 and upgraded from here (see station/server/schema.py).

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Never edit a released migration: add the next one (``down_revision = "0001"``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "records",
        sa.Column("record_id", sa.String(64), primary_key=True),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("received_at", sa.String(40), nullable=False),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("sku", sa.String(128), nullable=False),
        sa.Column("unit_code", sa.String(128), nullable=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(64), nullable=True),
        sa.Column("streamer", sa.String(128), nullable=True),
        sa.Column("brand", sa.String(128), nullable=True),
        sa.Column("carrier", sa.String(128), nullable=True),
        sa.Column("grade", sa.String(1), nullable=False),
        sa.Column("disposition", sa.String(32), nullable=False),
        sa.Column("review", sa.Integer(), nullable=False),
        sa.Column("lane", sa.Integer(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("rules_fired", sa.Text(), nullable=False),
        sa.Column("decision_json", sa.Text(), nullable=False),
        sa.Column("findings_json", sa.Text(), nullable=False),
        sa.Column("timings_json", sa.Text(), nullable=False),
        sa.Column("operator", sa.String(128), nullable=True),
        sa.Column("overrides", sa.String(64), nullable=True),
        sa.Column("override_reason", sa.Text(), nullable=True),
        sa.Column("leaf_index", sa.Integer(), nullable=True),
        sa.Column("leaf_hash", sa.String(64), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
    )
    for col in ("station_id", "order_id", "unit_code", "streamer", "brand", "overrides"):
        op.create_index(f"ix_records_{col}", "records", [col])
    op.create_table(
        "record_images",
        sa.Column("record_id", sa.String(64), sa.ForeignKey("records.record_id"), primary_key=True),
        sa.Column("view", sa.String(64), primary_key=True),
        sa.Column("sha256", sa.String(64), primary_key=True),
    )
    op.create_table(
        "images",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("thumbnail", sa.LargeBinary(), nullable=True),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "record_conflicts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("payload_json", sa.Text(), nullable=False),
        sa.Column("received_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_record_conflicts_record_id", "record_conflicts", ["record_id"])
    op.create_table(
        "station_keys",
        sa.Column("station_id", sa.String(64), primary_key=True),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
    )
    op.create_table(
        "tree_heads",
        sa.Column("station_id", sa.String(64), primary_key=True),
        sa.Column("tree_size", sa.Integer(), primary_key=True),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("signed_at", sa.String(40), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
    )
    op.create_table(
        "rmas",
        sa.Column("order_id", sa.String(128), primary_key=True),
        sa.Column("sku", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("unit_code", sa.String(128), nullable=True),
        sa.Column("channel", sa.String(64), nullable=True),
        sa.Column("streamer", sa.String(128), nullable=True),
        sa.Column("brand", sa.String(128), nullable=True),
        sa.Column("carrier", sa.String(128), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False),
    )
    op.create_index("ix_rmas_seq", "rmas", ["seq"])
    op.create_table(
        "catalogue",
        sa.Column("sku", sa.String(128), primary_key=True),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("brand", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("hygiene", sa.Boolean(), nullable=False),
        sa.Column("safety", sa.Boolean(), nullable=False),
        sa.Column("liquid", sa.Boolean(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
    )
    op.create_index("ix_catalogue_seq", "catalogue", ["seq"])


def downgrade() -> None:
    for table in ("catalogue", "rmas", "tree_heads", "station_keys", "record_conflicts", "images", "record_images",
                  "records", "tokens"):
        op.drop_table(table)
