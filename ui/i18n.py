"""Runtime-switchable UI language: English source strings and a zh_CN catalogue (an equivalent of Qt
Linguist .ts/.qm that needs no lrelease). ``tr("text")`` returns the text in the current language; a text
missing from the catalogue is shown in English and remembered in ``missing()`` (a test fails on any).

Widgets call ``tr`` in their ``retranslate()`` method, which the main window calls after ``set_language``.
Data (order ids, SKUs, brand and streamer ids) is shown as is; widgets that show only data carry the
dynamic property ``i18n_data = True`` so the translation test skips them.
"""

from __future__ import annotations

from ui.i18n_zh import RULES_ZH, ZH

LANGUAGES: dict[str, str] = {"en": "English", "zh_CN": "中文"}
_state = {"lang": "en"}
_missing: set[str] = set()


def set_language(lang: str) -> None:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}: use one of {', '.join(LANGUAGES)}")
    _state["lang"] = lang


def language() -> str:
    return _state["lang"]


def missing() -> set[str]:
    return set(_missing)


def tr(text: str, **fmt: object) -> str:
    if _state["lang"] == "zh_CN":
        out = ZH.get(text)
        if out is None:
            _missing.add(text)
            out = text
    else:
        out = text
    return out.format(**fmt) if fmt else out


# Display names of contract values (grades, dispositions, reasons, parties, findings, roles). The English
# names are the source strings, so they go through the same catalogue.
_NAMES: dict[str, dict[str, str]] = {
    "disposition": {"restock": "Restock", "open_box": "Open box", "refurbish": "Refurbish",
                    "return_to_vendor": "Return to vendor", "recycle": "Recycle", "donate": "Donate",
                    "scrap": "Scrap", "manual_review": "Manual review"},
    "reason": {"no_reason_7day": "7-day no-reason return", "quality_issue": "Quality issue",
               "not_as_described": "Not as described", "colour_difference": "Colour difference",
               "wrong_size": "Wrong size", "damaged_in_transit": "Damaged in transit", "wrong_item": "Wrong item",
               "missing_parts": "Missing parts"},
    "party": {"consumer": "Consumer", "brand": "Brand", "carrier": "Carrier", "streamer": "Streamer",
              "platform": "Platform"},
    "finding": {"scratch": "Scratch", "dent": "Dent", "crack": "Crack", "tear": "Tear", "stain": "Stain",
                "leak": "Leak", "wear": "Wear", "seal_broken": "Seal broken", "package_damage": "Package damage",
                "foreign_object": "Foreign object", "wrong_item": "Wrong item (swap)",
                "missing_part": "Missing part", "damage": "Unseen damage", "colour_mismatch": "Colour mismatch",
                "size_mismatch": "Size mismatch", "unit_seen_before": "Unit seen before",
                "registration_failed": "View not registered to the catalogue",
                "uncertain_defect": "Uncertain detection (below threshold)",
                "presentation_mismatch": "Stream presentation differs",
                "serial_mismatch": "Serial not the one shipped", "expired": "Past its expiry date",
                "near_expiry": "Near its expiry date"},
    "role": {"inspector": "Inspector", "supervisor": "Supervisor", "admin": "Administrator"},
    "override": {"missed_defect": "Missed defect", "false_defect": "False defect", "wrong_grade": "Wrong grade",
                 "wrong_disposition": "Wrong disposition", "customer_evidence": "Customer evidence",
                 "supervisor_approval": "Supervisor approval", "other": "Other (comment needed)"},
    "box_reason": {"missed_defect": "Missed defect", "false_defect": "False defect", "wrong_class": "Wrong class",
                   "box_position": "Box in the wrong place or size", "other": "Other (comment needed)"},
    "category": {"infant_feeding": "Infant feeding", "infant_safety": "Infant safety", "infant_care": "Infant care",
                 "electronics": "Electronics", "apparel": "Apparel", "cosmetics": "Cosmetics", "toys": "Toys",
                 "household": "Household"},
    "view": {"front": "Front", "side": "Side", "top": "Top", "back": "Back", "label": "Label",
             "inside": "Inside packaging", "bottom": "Bottom"},
}


def name(kind: str, value: str | None) -> str:
    """Translated display name of a contract value; unknown values (custom catalogue data) as they are."""
    if value is None:
        return "-"
    en = _NAMES[kind].get(str(value))
    return tr(en) if en is not None else str(value)


def rule_text(rule_line: str) -> str:
    """A rules engine reason line ("RULE-ID: why") in plain words in the current language."""
    rule_id, _, why = rule_line.partition(": ")
    if _state["lang"] == "zh_CN" and rule_id in RULES_ZH:
        return f"{rule_id}：{RULES_ZH[rule_id]}"
    return rule_line


def all_source_strings() -> set[str]:
    """Every display name (for the catalogue-completeness test)."""
    return {en for names in _NAMES.values() for en in names.values()}
