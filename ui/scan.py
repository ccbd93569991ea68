"""RMA codes as a keyboard-wedge scanner types them at the bench (no Qt here).

The grammars (``RMA1|...``, ``RMA2;k=v...``, JSON) are station/labels.py's, the one module that reads and writes
labels; the bench keeps its names for them. ``RmaError.key`` is one of the phrases ui/i18n_zh.py translates.
"""

from __future__ import annotations

from station.labels import RMA1 as PREFIX
from station.labels import RMA1_FIELDS as FIELDS
from station.labels import ReturnLabelError as RmaError
from station.labels import format_rma, parse_rma

__all__ = ["FIELDS", "PREFIX", "RmaError", "format_rma", "parse_rma"]
