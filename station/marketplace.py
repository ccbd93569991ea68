"""Marketplace vocabulary: each decision as eBay condition ID, Amazon condition and Back Market grade.

Defaults follow docs/domain.md's grade table (eBay and Amazon columns); the table has no Back Market column,
so its grade is ours: Back Market lists refurbished electronics only, A "Excellent", B "Good", C "Fair"
(after the refurbishment C asks for), D not listed. Where the table offers two codes the stricter one is
the default unless the station has seen more:

- A is "1000 New" / "New" only when the caller says the unit is sealed (its seal seen intact); a return
  whose seal nobody saw is "1500 Open box" / "Used - Like New" (relisting returns as new is the scandal the
  domain names).
- B is "1500 Open box" / "Used - Very Good" when its disposition is open_box, else "3000 Used" / "Used - Good".
- A decision waiting for a supervisor (manual_review) has no codes: nothing is listed before someone decides.
- Amazon does not take used listings in hygiene categories (infant feeding, cosmetics by default): anything
  but sealed-new gets no Amazon condition there.

A site changes any of it with ``[marketplace]`` (``MarketplaceConfig``): overrides matched on grade and
optionally disposition and category, the most specific match winning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from station.domain import Disposition, Grade

EBAY_CONDITIONS: dict[int, str] = {1000: "New", 1500: "Open box", 1750: "New with defects",
                                   2000: "Certified refurbished", 2500: "Seller refurbished", 3000: "Used",
                                   7000: "For parts or not working"}
AMAZON_CONDITIONS: tuple[str, ...] = ("New", "Used - Like New", "Used - Very Good", "Used - Good",
                                      "Used - Acceptable")
BACKMARKET_GRADES: tuple[str, ...] = ("Excellent", "Good", "Fair")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MarketplaceOverride(_Model):
    """One site rule: for decisions of ``grade`` (and ``disposition`` / ``category`` when given) use these
    codes. A field left out keeps the default; ``none`` (the string) means "not listed there"."""

    grade: Grade
    disposition: Disposition | None = None
    category: str | None = None
    ebay_condition_id: int | Literal["none"] | None = None
    amazon_condition: str | None = None
    backmarket_grade: str | None = None

    @model_validator(mode="after")
    def _known_codes(self) -> "MarketplaceOverride":
        if isinstance(self.ebay_condition_id, int) and self.ebay_condition_id not in EBAY_CONDITIONS:
            raise ValueError(f"ebay_condition_id {self.ebay_condition_id}: use one of "
                             f"{', '.join(map(str, EBAY_CONDITIONS))} or \"none\"")
        if self.amazon_condition not in (None, "none", *AMAZON_CONDITIONS):
            raise ValueError(f"amazon_condition {self.amazon_condition!r}: use one of "
                             f"{', '.join(AMAZON_CONDITIONS)} or \"none\"")
        if self.backmarket_grade not in (None, "none", *BACKMARKET_GRADES):
            raise ValueError(f"backmarket_grade {self.backmarket_grade!r}: use one of "
                             f"{', '.join(BACKMARKET_GRADES)} or \"none\"")
        return self


class MarketplaceConfig(_Model):
    """``[marketplace]`` in the station config."""

    type: Literal["table"] = "table"
    backmarket_categories: list[str] = Field(default_factory=lambda: ["electronics"],
                                             description="categories Back Market lists (refurbished electronics)")
    amazon_no_used_categories: list[str] = Field(default_factory=lambda: ["infant_feeding", "cosmetics"],
                                                 description="categories where Amazon takes no used listing")
    overrides: list[MarketplaceOverride] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MarketplaceCodes:
    ebay_condition_id: int | None
    amazon_condition: str | None
    backmarket_grade: str | None
    basis: str  # why these codes: the default row or the site override that applied

    @property
    def ebay_condition(self) -> str | None:
        return None if self.ebay_condition_id is None else EBAY_CONDITIONS[self.ebay_condition_id]

    def to_json(self) -> dict:
        return {"ebay_condition_id": self.ebay_condition_id, "ebay_condition": self.ebay_condition,
                "amazon_condition": self.amazon_condition, "backmarket_grade": self.backmarket_grade,
                "basis": self.basis}


_BACKMARKET_BY_GRADE = {Grade.A: "Excellent", Grade.B: "Good", Grade.C: "Fair"}


def _default(grade: Grade, disposition: Disposition, category: str, sealed: bool,
             cfg: MarketplaceConfig) -> MarketplaceCodes:
    if grade == Grade.A:
        ebay, amazon, basis = (1000, "New", "A sealed") if sealed else (1500, "Used - Like New", "A opened")
    elif grade == Grade.B:
        ebay, amazon, basis = ((1500, "Used - Very Good", "B open_box") if disposition == Disposition.OPEN_BOX
                               else (3000, "Used - Good", "B"))
    elif grade == Grade.C:
        ebay, amazon, basis = 2500, "Used - Acceptable", "C"
    else:
        ebay, amazon, basis = 7000, None, "D"
    if category in cfg.amazon_no_used_categories and amazon != "New":
        amazon = None
    backmarket = _BACKMARKET_BY_GRADE.get(grade) if category in cfg.backmarket_categories else None
    return MarketplaceCodes(ebay, amazon, backmarket, f"default {basis}")


def _none(value):
    return None if value == "none" else value


def codes_for(grade: Grade | str, disposition: Disposition | str, category: str, *, sealed: bool = False,
              config: MarketplaceConfig | None = None) -> MarketplaceCodes:
    """The three marketplace codes of a decision (pure). ``sealed``: the unit's seal was seen intact."""
    cfg = config or MarketplaceConfig()
    grade, disposition = Grade(grade), Disposition(disposition)
    if disposition == Disposition.MANUAL_REVIEW:
        return MarketplaceCodes(None, None, None, "manual_review: listed once a supervisor decides")
    codes = _default(grade, disposition, category, sealed, cfg)
    matches = [o for o in cfg.overrides if o.grade == grade and o.disposition in (None, disposition)
               and o.category in (None, category)]
    if not matches:
        return codes
    best = max(enumerate(matches), key=lambda im: ((im[1].disposition is not None) + (im[1].category is not None),
                                                   -im[0]))[1]
    where = " ".join(f"{k}={v}" for k, v in (("grade", best.grade.value),
                                            ("disposition", best.disposition and best.disposition.value),
                                            ("category", best.category)) if v)
    return MarketplaceCodes(
        codes.ebay_condition_id if best.ebay_condition_id is None else _none(best.ebay_condition_id),
        codes.amazon_condition if best.amazon_condition is None else _none(best.amazon_condition),
        codes.backmarket_grade if best.backmarket_grade is None else _none(best.backmarket_grade),
        f"site override {where}")
