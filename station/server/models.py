"""Platform database schema (SQLAlchemy 2 declarative). Created and upgraded by the alembic migrations in
``migrations/versions`` (``init_db`` at server start): a change here needs a new migration there, and
tests/test_server_migrations.py fails until the migrations produce exactly this metadata."""

from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Token(Base):
    __tablename__ = "tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(128))  # station id or user name
    created_at: Mapped[str] = mapped_column(String(40))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class Record(Base):
    """An inspection or an override, exactly as the station logged it (or as a supervisor wrote it here)."""

    __tablename__ = "records"
    record_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    station_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[str] = mapped_column(String(40))
    order_id: Mapped[str] = mapped_column(String(128), index=True)
    sku: Mapped[str] = mapped_column(String(128))
    unit_code: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    reason: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str | None] = mapped_column(String(64), nullable=True)
    streamer: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    brand: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    carrier: Mapped[str | None] = mapped_column(String(128), nullable=True)
    grade: Mapped[str] = mapped_column(String(1))
    disposition: Mapped[str] = mapped_column(String(32))
    review: Mapped[int] = mapped_column(Integer)
    lane: Mapped[int | None] = mapped_column(Integer, nullable=True)
    confidence: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(128))
    rules_fired: Mapped[str] = mapped_column(Text)
    decision_json: Mapped[str] = mapped_column(Text)
    findings_json: Mapped[str] = mapped_column(Text)
    timings_json: Mapped[str] = mapped_column(Text)
    operator: Mapped[str | None] = mapped_column(String(128), nullable=True)
    overrides: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    override_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    leaf_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    leaf_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source: Mapped[str] = mapped_column(String(16), default="station")  # station | platform


class RecordImage(Base):
    __tablename__ = "record_images"
    record_id: Mapped[str] = mapped_column(String(64), ForeignKey("records.record_id"), primary_key=True)
    view: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)


class Image(Base):
    __tablename__ = "images"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    data: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    size: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[str] = mapped_column(String(40))


class RecordConflict(Base):
    """A second, different version of a record id: kept (the server keeps every version), never applied."""

    __tablename__ = "record_conflicts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(String(64), index=True)
    station_id: Mapped[str] = mapped_column(String(64))
    payload_json: Mapped[str] = mapped_column(Text)
    received_at: Mapped[str] = mapped_column(String(40))


class StationKeyRow(Base):
    __tablename__ = "station_keys"
    station_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_key_pem: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(32))


class TreeHead(Base):
    """Signed tree heads the stations pushed: the platform witnesses each station's log."""

    __tablename__ = "tree_heads"
    station_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tree_size: Mapped[int] = mapped_column(Integer, primary_key=True)
    root_hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[str] = mapped_column(String(40))
    key_id: Mapped[str] = mapped_column(String(32))
    signature: Mapped[str] = mapped_column(String(128))


class Rma(Base):
    __tablename__ = "rmas"
    order_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    sku: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(32))
    unit_code: Mapped[str | None] = mapped_column(String(128), nullable=True)
    channel: Mapped[str | None] = mapped_column(String(64), nullable=True)
    streamer: Mapped[str | None] = mapped_column(String(128), nullable=True)
    brand: Mapped[str | None] = mapped_column(String(128), nullable=True)
    carrier: Mapped[str | None] = mapped_column(String(128), nullable=True)
    seq: Mapped[int] = mapped_column(Integer, index=True)


class CatalogueEntry(Base):
    __tablename__ = "catalogue"
    sku: Mapped[str] = mapped_column(String(128), primary_key=True)
    category: Mapped[str] = mapped_column(String(64))
    brand: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(256), default="")
    hygiene: Mapped[bool] = mapped_column(Boolean, default=False)
    safety: Mapped[bool] = mapped_column(Boolean, default=False)
    liquid: Mapped[bool] = mapped_column(Boolean, default=False)
    seq: Mapped[int] = mapped_column(Integer, index=True)

