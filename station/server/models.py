"""Platform database schema (SQLAlchemy 2 declarative). Created and upgraded by the alembic migrations in
``migrations/versions`` (``init_db`` at server start): a change here needs a new migration there, and
tests/test_server_migrations.py fails until the migrations produce exactly this metadata."""

from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, Integer, LargeBinary, String, Text, select
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column


class Base(DeclarativeBase):
    pass


class Token(Base):
    __tablename__ = "tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(128))  # station id or user name
    created_at: Mapped[str] = mapped_column(String(40))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    # The station whose records an inspector may read (a station token's is its subject); None: unscoped.
    station_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    expires_at: Mapped[str | None] = mapped_column(String(40), nullable=True)  # UTC ISO 8601; None: never


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
    """A full image, content-addressed: it hashes to its name, so any station may send it."""

    __tablename__ = "images"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    size: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[str] = mapped_column(String(40))


class Thumbnail(Base):
    """A station's thumbnail of one of its images. Thumbnails are not content-checked (they are derived,
    possibly blurred), so each station's is kept apart: one station can never replace another's."""

    __tablename__ = "thumbnails"
    station_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    thumbnail: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[str] = mapped_column(String(40))


# Read-only, for counting and reports (``Image.thumbnail.is_not(None)``): a thumbnail of the image from some
# station, not a column. The API serves thumbnails per station (``Thumbnail``), never through this.
Image.thumbnail = column_property(
    select(Thumbnail.thumbnail).where(Thumbnail.sha256 == Image.sha256).order_by(Thumbnail.received_at)
    .limit(1).correlate_except(Thumbnail).scalar_subquery(), deferred=True)


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



class TreeHeadConflict(Base):
    """A validly signed head that does not extend the station's last witnessed head (a fork at the same size,
    or a larger head without a valid consistency proof): refused with 409 and kept here, next to the head it
    contradicts, as evidence."""

    __tablename__ = "tree_head_conflicts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    station_id: Mapped[str] = mapped_column(String(64), index=True)
    tree_size: Mapped[int] = mapped_column(Integer)
    root_hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[str] = mapped_column(String(40))
    key_id: Mapped[str] = mapped_column(String(32))
    signature: Mapped[str] = mapped_column(String(128))
    last_tree_size: Mapped[int] = mapped_column(Integer)  # the witnessed head it contradicts
    last_root_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    received_at: Mapped[str] = mapped_column(String(40))
