"""RMA codes as a keyboard-wedge scanner types them (no Qt here).

Format (one line, ``|``-separated, empty fields allowed; no buyer data by design)::

    RMA1|<order_id>|<sku>|<reason>|<unit_code>|<channel>|<streamer>|<brand>|<carrier>

A JSON object with the ``ReturnRequest`` field names is accepted too (some platforms print JSON QR codes).
"""

from __future__ import annotations

import json

from station.domain import ReturnReason, ReturnRequest
from station.limits import field_problem

PREFIX = "RMA1"
FIELDS = ("order_id", "sku", "reason", "unit_code", "channel", "streamer", "brand", "carrier")


class RmaError(ValueError):
    """The scanned text is not an RMA code; ``key`` names the problem for translation, ``arg`` its detail."""

    def __init__(self, key: str, arg: str = "") -> None:
        super().__init__(f"{key} {arg}".strip())
        self.key = key
        self.arg = arg


def format_rma(r: ReturnRequest) -> str:
    values = [r.order_id, r.sku, r.reason.value, r.unit_code, r.channel, r.streamer, r.brand, r.carrier]
    return "|".join([PREFIX, *("" if v is None else str(v) for v in values)])


def parse_rma(text: str) -> ReturnRequest:
    text = text.strip()
    if not text:
        raise RmaError("empty scan")
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise RmaError("not an RMA code", text[:40]) from None
        if not isinstance(data, dict):
            raise RmaError("not an RMA code", text[:40])
        values = {k: (str(data[k]) if data.get(k) not in (None, "") else None) for k in FIELDS}
    else:
        parts = text.split("|")
        if parts[0] != PREFIX:
            raise RmaError("not an RMA code", text[:40])
        if len(parts) > len(FIELDS) + 1:
            raise RmaError("too many fields", str(len(parts) - 1))
        parts += [""] * (len(FIELDS) + 1 - len(parts))
        values = {k: (v.strip() or None) for k, v in zip(FIELDS, parts[1:])}
    if not values["order_id"]:
        raise RmaError("missing order id")
    if not values["sku"]:
        raise RmaError("missing SKU")
    try:
        reason = ReturnReason(values["reason"] or "")
    except ValueError:
        raise RmaError("unknown return reason", str(values["reason"])) from None
    for key, value in values.items():  # refused here, at the scan, rather than by the platform days later
        if field_problem(key, value):
            raise RmaError("beyond the platform's limit", key)
    return ReturnRequest(values["order_id"], values["sku"], reason, values["unit_code"], values["channel"],
                         values["streamer"], values["brand"], values["carrier"])
