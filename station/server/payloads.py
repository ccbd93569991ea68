"""What the platform accepts: the request bodies (pydantic, ``extra="forbid"``) and the schema of a stored
decision (``check_decision``). A body that breaks them is a 422 naming the field, never a 500."""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Annotated, Literal

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from station.domain import Disposition, Grade, Party, ReturnReason

API = "/api/v1"
MAX_BATCH = 1000
SHA256 = r"^[0-9a-f]{64}$"
ID = r"^[A-Za-z0-9_.:-]{1,64}$"
# The platform's integer columns are 32-bit on PostgreSQL (64-bit on SQLite): every integer in a body or a
# query is bounded to what both hold, so a larger one is a 422, never an OverflowError (500) or a DataError.
INT_MAX = 2**31 - 1
Int32 = Annotated[int, Field(ge=-INT_MAX - 1, le=INT_MAX)]
Count = Annotated[int, Field(ge=0, le=INT_MAX)]
DAY_S = 86400
MAX_TTL_S = 5 * 365 * DAY_S


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageRef(_In):
    view: str = Field(min_length=1, max_length=64)
    sha256: str = Field(pattern=SHA256)


class RecordIn(_In):
    """One station record as logged. ``extra="forbid"``: no field beyond these (no buyer PII) is accepted."""

    record_id: str = Field(pattern=ID)
    created_at: str = Field(min_length=10, max_length=40)
    station_id: str = Field(pattern=ID)
    order_id: str = Field(min_length=1, max_length=128)
    sku: str = Field(min_length=1, max_length=128)
    unit_code: str | None = Field(None, max_length=128)
    reason: ReturnReason
    channel: str | None = Field(None, max_length=64)
    streamer: str | None = Field(None, max_length=128)
    brand: str | None = Field(None, max_length=128)
    carrier: str | None = Field(None, max_length=128)
    grade: Grade
    disposition: Disposition
    review: int = Field(ge=0, le=1)
    lane: Int32 | None = None
    confidence: float = Field(ge=0, le=1)
    model_version: str = Field(max_length=128)
    rules_fired: str = Field(max_length=4096)
    decision_json: str = Field(max_length=65536)
    findings_json: str = Field(max_length=262144)
    timings_json: str = Field(max_length=16384)
    operator: str | None = Field(None, max_length=128)
    overrides: str | None = Field(None, pattern=ID)
    override_reason: str | None = Field(None, max_length=4096)
    leaf_index: Count | None = None
    leaf_hash: str | None = Field(None, pattern=SHA256)
    images: list[ImageRef] = Field(default_factory=list, max_length=64)

    @field_validator("findings_json")
    @classmethod
    def _findings(cls, v: str) -> str:
        if not isinstance(_loads(v), list):
            raise ValueError("findings_json must be a JSON array of findings")
        return v

    @field_validator("timings_json")
    @classmethod
    def _timings(cls, v: str) -> str:
        if not isinstance(_loads(v), dict):
            raise ValueError("timings_json must be a JSON object")
        return v

    @field_validator("decision_json")
    @classmethod
    def _decision(cls, v: str) -> str:
        check_decision(_loads(v))
        return v

    @model_validator(mode="after")
    def _decision_matches(self) -> "RecordIn":
        d = json.loads(self.decision_json)
        if d["grade"] != self.grade.value or d["disposition"] != self.disposition.value:
            raise ValueError(f"decision_json says grade {d['grade']} / {d['disposition']} but the record says "
                             f"{self.grade.value} / {self.disposition.value}")
        return self


def _loads(v: str):
    """JSON text to a value; ValueError (a 422) for anything that is not JSON, NaN and nesting bombs included."""
    try:
        return json.loads(v, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


_GRADES = {g.value for g in Grade}
_DISPOSITIONS = {d.value for d in Disposition}
_PARTIES = {pp.value for pp in Party}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def check_decision(d) -> dict:
    """The schema of a decision (``Decision.to_json`` and what overrides add): raises ValueError naming what is
    wrong. Keys beyond these (measurements, boxes, ...) are allowed; those below must have these types."""
    if not isinstance(d, dict):
        raise ValueError(f"decision_json must be a JSON object (a decision), not {type(d).__name__}")
    if d.get("grade") not in _GRADES:
        raise ValueError(f"decision_json: grade must be one of {', '.join(sorted(_GRADES))}")
    if d.get("disposition") not in _DISPOSITIONS:
        raise ValueError(f"decision_json: disposition must be one of {', '.join(sorted(_DISPOSITIONS))}")
    if "proposed_disposition" in d and d["proposed_disposition"] not in _DISPOSITIONS:
        raise ValueError("decision_json: proposed_disposition must be a disposition")
    if not _str_list(d.get("rules_fired")):
        raise ValueError("decision_json: rules_fired must be a list of rule ids")
    if "reasons" in d and not _str_list(d["reasons"]):
        raise ValueError("decision_json: reasons must be a list of strings")
    if "review" in d and not isinstance(d["review"], bool):
        raise ValueError("decision_json: review must be true or false")
    if "confidence" in d and not (_number(d["confidence"]) and 0 <= d["confidence"] <= 1):
        raise ValueError("decision_json: confidence must be a number in [0, 1]")
    shares = d.get("liability")
    if not isinstance(shares, list) or len(shares) > 16:
        raise ValueError("decision_json: liability must be a list of at most 16 shares")
    total = 0.0
    for sh in shares:
        if not isinstance(sh, dict) or sh.get("party") not in _PARTIES:
            raise ValueError(f"decision_json: each liability share needs a party, one of {', '.join(sorted(_PARTIES))}")
        if not (_number(sh.get("share")) and 0 <= sh["share"] <= 1):
            raise ValueError("decision_json: each liability share needs a share in [0, 1]")
        if "rule" in sh and not isinstance(sh["rule"], str):
            raise ValueError("decision_json: a liability share's rule must be a string")
        total += sh["share"]
    if total > 1.001:
        raise ValueError(f"decision_json: liability shares sum to {total:g}, over 1")
    return d


class HeadIn(_In):
    tree_size: Count
    root_hash: str = Field(pattern=SHA256)
    signed_at: str = Field(max_length=40)
    key_id: str = Field(max_length=32)
    signature: str = Field(max_length=128)


class ConsistencyIn(_In):
    """RFC 9162 consistency proof from the platform's last head of this station (``old_size``) to ``head``."""

    old_size: Count
    proof: list[Annotated[str, Field(pattern=SHA256)]] = Field(default_factory=list, max_length=64)


class BatchIn(_In):
    records: list[RecordIn] = Field(max_length=MAX_BATCH)
    thumbnails: dict[str, str] = Field(default_factory=dict, max_length=MAX_BATCH * 64,
                                       description="sha256 -> base64 JPEG thumbnail of an image of these records")
    head: HeadIn | None = None
    consistency: ConsistencyIn | None = Field(None, description="needed when the platform holds an older head")
    public_key_pem: str | None = Field(None, max_length=1024)


class ImageIn(_In):
    sha256: str = Field(pattern=SHA256)
    data_b64: str


class ImagesIn(_In):
    images: list[ImageIn] = Field(max_length=MAX_BATCH)


class OverrideIn(_In):
    overrides: str = Field(pattern=ID, description="record id of the record this one overrides")
    reason: str = Field(min_length=1, max_length=4096)
    grade: Grade | None = None
    disposition: Disposition | None = None


class TokenIn(_In):
    role: Literal["station", "inspector", "supervisor", "admin"]
    subject: str = Field(pattern=ID)
    station_id: str | None = Field(None, pattern=ID, description="the one station an inspector reads")
    expires_in_s: int | None = Field(None, ge=1, le=MAX_TTL_S, description="lifetime; default by role")


class RmaIn(_In):
    order_id: str = Field(min_length=1, max_length=128)
    sku: str = Field(min_length=1, max_length=128)
    reason: ReturnReason
    unit_code: str | None = Field(None, max_length=128)
    channel: str | None = Field(None, max_length=64)
    streamer: str | None = Field(None, max_length=128)
    brand: str | None = Field(None, max_length=128)
    carrier: str | None = Field(None, max_length=128)


class RmasIn(_In):
    rmas: list[RmaIn] = Field(max_length=10000)


class CatalogueIn(_In):
    sku: str = Field(min_length=1, max_length=128)
    category: str = Field(min_length=1, max_length=64)
    brand: str = Field(min_length=1, max_length=128)
    name: str = Field("", max_length=256)
    hygiene: bool = False
    safety: bool = False
    liquid: bool = False


class CataloguesIn(_In):
    items: list[CatalogueIn] = Field(max_length=10000)


def decode_b64(data: str, what: str, limit: int) -> bytes:
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(422, f"{what}: not valid base64") from None
    if len(raw) > limit:
        raise HTTPException(413, f"{what}: {len(raw)} bytes, over the {limit} byte limit")
    return raw

