"""The platform's limits on what a station record carries, as one table.

The platform refuses (422) a record whose order id, SKU, operator ... is longer than its columns allow
(``station/server/api.py``: ``RecordIn``, ``RmaIn``). A record the station accepted but the platform refuses
can never be synced, so the station checks these limits where the values arrive (CLI options, scanned RMAs,
override dialogs) and again in the store before a record is written. The server can import this table so the
two cannot drift apart; ``tests/test_outbox_dead_letter.py`` checks that they agree today.

Lengths are counted in characters (code points), as pydantic counts them on the platform.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Mapping

from station.domain import ReturnRequest


@dataclass(frozen=True, slots=True)
class FieldLimit:
    """One field's limit. ``free_text``: line breaks and tabs are allowed (a reason typed by a person); other
    fields are identifiers read off a label or typed on one line, where any control character is a bad scan
    (and NUL cannot be stored by the platform's PostgreSQL at all)."""

    field: str
    max_length: int
    min_length: int = 0
    pattern: str | None = None
    free_text: bool = False


ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"  # the platform's record, station and override ids

RECORD_FIELD_LIMITS: Mapping[str, FieldLimit] = {
    lim.field: lim for lim in (
        FieldLimit("record_id", 64, 1, ID_PATTERN),
        FieldLimit("station_id", 64, 1, ID_PATTERN),
        FieldLimit("order_id", 128, 1),
        FieldLimit("sku", 128, 1),
        FieldLimit("unit_code", 128),
        FieldLimit("channel", 64),
        FieldLimit("streamer", 128),
        FieldLimit("brand", 128),
        FieldLimit("carrier", 128),
        FieldLimit("operator", 128),
        FieldLimit("override_reason", 4096, free_text=True),
        FieldLimit("model_version", 128),
        FieldLimit("view", 64, 1),
    )
}

# What a person or a scanner supplies for a record (checked at input; the rest the station generates).
INPUT_FIELDS = ("order_id", "sku", "unit_code", "channel", "streamer", "brand", "carrier", "operator",
                "override_reason")


class LimitError(ValueError):
    """A value the platform would refuse. ``field`` names it; the message says the limit and what to do."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _control_chars(value: str, free_text: bool) -> list[str]:
    allowed = {"\n", "\r", "\t"} if free_text else set()
    return [c for c in value if unicodedata.category(c) == "Cc" and c not in allowed]


def field_problem(field: str, value: str | None) -> str | None:
    """Why the platform would refuse ``value`` for ``field`` (None: it accepts it, or the field is unknown)."""
    lim = RECORD_FIELD_LIMITS.get(field)
    if lim is None or value is None:
        return None
    n = len(value)
    if n > lim.max_length:
        return (f"{field} is {n} characters long; the platform accepts at most {lim.max_length}: "
                f"check the scan or shorten it")
    if n < lim.min_length:
        return f"{field} is empty: the platform needs one (scan or type it)"
    bad = _control_chars(value, lim.free_text)
    if bad:
        return (f"{field} contains a control character ({ascii(bad[0])}): the platform refuses it; "
                f"scan or type it again")
    if lim.pattern is not None and not re.fullmatch(lim.pattern, value):
        return f"{field} {value!r} does not match the platform's pattern {lim.pattern}: use letters, digits, _ . : -"
    return None


def check_fields(values: Mapping[str, str | None], fields: Iterable[str] | None = None) -> None:
    """Raise LimitError for the first value (of ``fields``, default all of ``values``) the platform refuses."""
    for field in (values.keys() if fields is None else fields):
        problem = field_problem(field, values.get(field))
        if problem is not None:
            raise LimitError(field, problem)


def request_values(request: ReturnRequest) -> dict[str, str | None]:
    return {"order_id": request.order_id, "sku": request.sku, "unit_code": request.unit_code,
            "channel": request.channel, "streamer": request.streamer, "brand": request.brand,
            "carrier": request.carrier}


def check_request(request: ReturnRequest) -> None:
    """LimitError when a field of the RMA is beyond what the platform accepts."""
    check_fields(request_values(request))


def option_problem(values: Mapping[str, str | None], prefix: str = "--") -> str | None:
    """The first value the platform would refuse, named as the user passed it (``--order-id`` for a CLI option,
    ``request.order_id`` with ``prefix="request."``); None when all pass."""
    for field, value in values.items():
        problem = field_problem(field, value)
        if problem is not None:
            name = prefix + field.replace("_", "-") if prefix == "--" else prefix + field
            return f"{name}: {problem}"
    return None
