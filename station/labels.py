"""Every label the station reads or prints, as text: one grammar per version tag, parsed and written here only.

Return labels (what the platform or seller prints on the parcel; no buyer data, by design):

- ``RMA1`` -- positional, ``|``-separated, empty fields allowed (what a keyboard-wedge scanner types at the
  bench)::

      RMA1|<order_id>|<sku>|<reason>|<unit_code>|<channel>|<streamer>|<brand>|<carrier>[|<serial>]

  (``serial``, the serial / IMEI of the unit the order shipped, came last and later: an 8-field label is whole.)

- ``RMA2`` -- keyed, ``;``-separated ``key=value`` fields in any order (what the tunnel scanner on the conveyor
  reads)::

      RMA2;o=<order_id>;s=<sku>;r=<reason>[;u=<unit_code>][;ch=<channel>][;st=<streamer>][;b=<brand>][;c=<carrier>]
          [;sn=<serial>]

  Keys it does not name are kept as ``extra`` fields (the simulator's staging fields ride there; their meaning
  belongs to the simulation, not to this grammar). Labels printed before ``RMA2`` had its own tag said
  ``RMA1;o=...``: the ``;`` after the tag tells them from the positional form, so they are read as ``RMA2``.
- A JSON object with the ``ReturnRequest`` field names (some platforms print JSON QR codes).

Licence plates (what the station prints on every inspected unit, ``station/licence_plate.py``):

- ``LP`` + the 128-bit record id as 40 decimal digits (Code128 subset C), or the 32 lowercase hex characters
  of the record id as a person types them.

Every value of a return label is checked against the platform's limits (``station/limits.py``) here, at the
scan, rather than refused by the platform days later. Errors carry ``key`` (an English phrase that
``ui/i18n_zh.py`` translates) and ``arg`` (its detail); ``str()`` is a sentence saying what to do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Mapping

from station.domain import ReturnReason, ReturnRequest
from station.limits import field_problem

RMA1 = "RMA1"
RMA2 = "RMA2"
# RMA1's positional fields, in order.
RMA1_FIELDS = ("order_id", "sku", "reason", "unit_code", "channel", "streamer", "brand", "carrier", "serial")
# RMA2's keys -> ReturnRequest fields.
RMA2_KEYS: Mapping[str, str] = {"o": "order_id", "s": "sku", "r": "reason", "u": "unit_code", "ch": "channel",
                                "st": "streamer", "b": "brand", "c": "carrier", "sn": "serial"}
PLATE_PREFIX = "LP"
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")
_PLATE_CODE = re.compile(r"^LP(\d{40})$")
_EXPECTED_RMA = ("RMA1|<order>|<sku>|<reason>|..., RMA2;o=<order>;s=<sku>;r=<reason>;... or a JSON object "
                 "with order_id, sku and reason")


class LabelError(ValueError):
    """A label cannot be read or written. ``key`` names the problem for translation, ``arg`` its detail."""

    def __init__(self, message: str, key: str = "not a label", arg: str = "") -> None:
        super().__init__(message)
        self.key = key
        self.arg = arg


class ReturnLabelError(LabelError):
    """The text is not a return label the station can use (ui/scan.py calls it RmaError, conveyor mode
    ReturnCodeError)."""


@dataclass(frozen=True, slots=True)
class LicencePlate:
    """A scanned licence plate: the record it names."""

    record_id: str

    @property
    def code(self) -> str:
        return plate_code(self.record_id)


@dataclass(frozen=True, slots=True)
class ReturnLabel:
    """A return label as read: the request, the grammar it was written in, and RMA2 keys this grammar does not
    name (``(key, value)`` pairs in label order)."""

    request: ReturnRequest
    tag: str
    extra: tuple[tuple[str, str], ...] = ()


def _shown(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[:n - 3] + "...")


# ----------------------------------------------------------------------------------------- writing


def format_rma(request: ReturnRequest) -> str:
    """The RMA1 text of a request (what the bench's scan field shows for a simulated return)."""
    values = [request.order_id, request.sku, request.reason.value, request.unit_code, request.channel,
              request.streamer, request.brand, request.carrier]
    if request.serial:  # left off when absent, so a label without one reads as it always did
        values.append(request.serial)
    return "|".join([RMA1, *("" if v is None else str(v) for v in values)])


def format_rma2(request: ReturnRequest, extra: Mapping[str, str] | None = None) -> str:
    """The RMA2 text of a request plus extra ``key=value`` fields (empty fields are left out)."""
    parts = [RMA2]
    for key, attr in RMA2_KEYS.items():
        value = getattr(request, attr)
        if value:
            parts.append(f"{key}={value}")
    for key, value in (extra or {}).items():
        if key in RMA2_KEYS or not key or any(c in key for c in ";="):
            raise ReturnLabelError(f"extra label field {key!r} would not read back: use a key that RMA2 does "
                                   "not name, without ';' or '='", "not an RMA code", key)
        if ";" in value:
            raise ReturnLabelError(f"extra label field {key}={value!r} contains ';', which ends a field",
                                   "not an RMA code", key)
        parts.append(f"{key}={value}")
    return ";".join(parts)


def plate_code(record_id: str) -> str:
    """The licence plate's barcode text for a record id: ``LP`` + 40 digits."""
    if not _HEX_ID.match(record_id):
        raise LabelError(f"record id {record_id!r} is not 32 lowercase hex characters (a station record id)",
                         "not a record id", record_id[:40])
    return PLATE_PREFIX + f"{int(record_id, 16):040d}"


# ----------------------------------------------------------------------------------------- reading


def record_id_from_code(text: str) -> str:
    """The record id a scanned licence plate names (also accepts a typed or wedge-scanned 32-hex id)."""
    text = text.strip()
    if _HEX_ID.match(text.lower()):
        return text.lower()
    m = _PLATE_CODE.match(text)
    if m is None:
        raise LabelError(f"{_shown(text, 60)} is not a licence plate (expected LP followed by 40 digits, or a "
                         "32-hex record id)", "not a licence plate", text[:40])
    value = int(m.group(1))
    if value >= 1 << 128:
        raise LabelError(f"{text!r} is not a licence plate: the number is larger than a record id",
                         "not a licence plate", text[:40])
    return f"{value:032x}"


def is_licence_plate(text: str) -> bool:
    text = text.strip()
    return bool(_HEX_ID.match(text.lower()) or _PLATE_CODE.match(text))


def parse_return_label(text: str) -> ReturnLabel:
    """A return label in any of its grammars; ReturnLabelError says what is wrong with it."""
    text = text.strip()
    if not text:
        raise ReturnLabelError("the scan is empty: scan the return label again", "empty scan")
    if text.startswith("{"):
        return ReturnLabel(_request(_json_values(text)), "json")
    tag, sep = text[:4], text[4:5]
    if tag == RMA1 and sep in ("|", ""):
        return ReturnLabel(_request(_rma1_values(text)), RMA1)
    if tag in (RMA1, RMA2) and sep in (";", ""):  # RMA1; is the keyed form before it had its own tag
        values, extra = _rma2_values(text)
        return ReturnLabel(_request(values), RMA2, extra)
    raise ReturnLabelError(f"not a return label (expected {_EXPECTED_RMA}): {_shown(text)}", "not an RMA code",
                           text[:40])


def parse_rma(text: str) -> ReturnRequest:
    """The request of a return label in any grammar (extra fields dropped)."""
    return parse_return_label(text).request


def parse_return_code(text: str) -> tuple[ReturnRequest, dict[str, str]]:
    """The request and the extra fields (the conveyor's view of a label)."""
    label = parse_return_label(text)
    return label.request, dict(label.extra)


def parse_label(text: str) -> ReturnRequest | LicencePlate:
    """Whatever label the station was shown: a return label or one of its own licence plates."""
    if is_licence_plate(text):
        return LicencePlate(record_id_from_code(text))
    stripped = text.strip()
    if stripped.startswith(("{", RMA1, RMA2)) or not stripped:
        return parse_rma(text)
    raise LabelError(f"{_shown(stripped)} is neither a return label ({_EXPECTED_RMA}) nor a licence plate "
                     "(LP followed by 40 digits)", "not a label", stripped[:40])


def _json_values(text: str) -> dict[str, str | None]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise ReturnLabelError(f"not a return label: {_shown(text)} is not a JSON object", "not an RMA code",
                               text[:40])
    return {k: (str(data[k]) if data.get(k) not in (None, "") else None) for k in RMA1_FIELDS}


def _rma1_values(text: str) -> dict[str, str | None]:
    parts = text.split("|")
    if len(parts) > len(RMA1_FIELDS) + 1:
        raise ReturnLabelError(f"RMA1 label has {len(parts) - 1} fields; it has at most {len(RMA1_FIELDS)} "
                               f"({'|'.join(RMA1_FIELDS)}): scan it again", "too many fields", str(len(parts) - 1))
    parts += [""] * (len(RMA1_FIELDS) + 1 - len(parts))
    return {k: (v.strip() or None) for k, v in zip(RMA1_FIELDS, parts[1:])}


def _rma2_values(text: str) -> tuple[dict[str, str | None], tuple[tuple[str, str], ...]]:
    values: dict[str, str | None] = dict.fromkeys(RMA1_FIELDS)
    extra: list[tuple[str, str]] = []
    for part in text.split(";")[1:]:
        key, sep, value = part.partition("=")
        if not sep:
            raise ReturnLabelError(f"return label field {part!r} has no '=' (expected key=value)",
                                   "not an RMA code", part[:40])
        if key in RMA2_KEYS:
            values[RMA2_KEYS[key]] = value or None
        else:
            extra.append((key, value))
    missing = [name for key, name in (("o", "order_id"), ("s", "sku"), ("r", "reason")) if not values[name]]
    if missing:
        problem = {"order_id": "missing order id", "sku": "missing SKU", "reason": "unknown return reason"}
        raise ReturnLabelError("return label lacks o= (order), s= (SKU) or r= (reason)", problem[missing[0]])
    return values, tuple(extra)


def _request(values: Mapping[str, str | None]) -> ReturnRequest:
    """The request the values name; checks what the platform would refuse (limits.py) before anyone works on it."""
    if not values["order_id"]:
        raise ReturnLabelError("return label has no order id: scan it again or type the RMA", "missing order id")
    if not values["sku"]:
        raise ReturnLabelError("return label has no SKU: scan it again or type the RMA", "missing SKU")
    try:
        reason = ReturnReason(values["reason"] or "")
    except ValueError:
        known = ", ".join(r.value for r in ReturnReason)
        raise ReturnLabelError(f"unknown return reason {values['reason']!r} (one of {known})",
                               "unknown return reason", str(values["reason"])) from None
    for key, value in values.items():
        problem = field_problem(key, value)
        if problem:
            raise ReturnLabelError(problem, "beyond the platform's limit", key)
    return ReturnRequest(values["order_id"], values["sku"], reason, values["unit_code"], values["channel"],
                         values["streamer"], values["brand"], values["carrier"], values["serial"])
