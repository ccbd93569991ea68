"""Marketplace vocabulary (issue 24, part 4): domain.md's grade table as eBay / Amazon / Back Market codes,
with per-site overrides from ``[marketplace]``."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from station.domain import Disposition, Grade
from station.marketplace import MarketplaceConfig, MarketplaceOverride, codes_for

# grade, disposition, category, sealed -> eBay id, Amazon condition, Back Market grade (domain.md's table)
TABLE = [
    ("A", "restock", "electronics", True, 1000, "New", "Excellent"),
    ("A", "restock", "electronics", False, 1500, "Used - Like New", "Excellent"),
    ("A", "restock", "toys", False, 1500, "Used - Like New", None),
    ("B", "open_box", "electronics", False, 1500, "Used - Very Good", "Good"),
    ("B", "refurbish", "apparel", False, 3000, "Used - Good", None),
    ("C", "refurbish", "electronics", False, 2500, "Used - Acceptable", "Fair"),
    ("C", "return_to_vendor", "household", False, 2500, "Used - Acceptable", None),
    ("D", "scrap", "electronics", False, 7000, None, None),
    ("D", "donate", "infant_care", False, 7000, None, None),
    # Amazon takes no used hygiene items; sealed-new it does
    ("B", "open_box", "cosmetics", False, 1500, None, None),
    ("A", "restock", "infant_feeding", True, 1000, "New", None),
    ("A", "restock", "infant_feeding", False, 1500, None, None),
]


@pytest.mark.parametrize("grade, disposition, category, sealed, ebay, amazon, backmarket", TABLE)
def test_default_codes_follow_the_domain_table(grade, disposition, category, sealed, ebay, amazon, backmarket):
    codes = codes_for(grade, disposition, category, sealed=sealed)
    assert (codes.ebay_condition_id, codes.amazon_condition, codes.backmarket_grade) == (ebay, amazon, backmarket)
    assert codes.basis.startswith("default")


def test_a_return_is_never_new_unless_its_seal_was_seen():
    assert codes_for(Grade.A, Disposition.RESTOCK, "electronics").ebay_condition == "Open box"


@pytest.mark.parametrize("grade", list(Grade))
def test_manual_review_has_no_listing_codes(grade):
    codes = codes_for(grade, Disposition.MANUAL_REVIEW, "electronics", sealed=True)
    assert (codes.ebay_condition_id, codes.amazon_condition, codes.backmarket_grade) == (None, None, None)
    assert "supervisor" in codes.basis


def test_site_overrides_most_specific_first_and_none_unlists():
    cfg = MarketplaceConfig.model_validate({
        "backmarket_categories": ["electronics", "toys"],
        "overrides": [
            {"grade": "B", "ebay_condition_id": 3000},
            {"grade": "B", "disposition": "open_box", "category": "electronics", "amazon_condition": "Used - Good"},
            {"grade": "C", "category": "electronics", "backmarket_grade": "none"},
        ],
    })
    b = codes_for("B", "open_box", "electronics", config=cfg)
    assert (b.ebay_condition_id, b.amazon_condition) == (1500, "Used - Good")  # the specific rule; eBay default
    assert b.basis == "site override grade=B disposition=open_box category=electronics"
    assert codes_for("B", "open_box", "apparel", config=cfg).ebay_condition_id == 3000
    assert codes_for("C", "refurbish", "electronics", config=cfg).backmarket_grade is None
    assert codes_for("A", "restock", "toys", config=cfg).backmarket_grade == "Excellent"


def test_codes_to_json_names_the_ebay_condition():
    assert codes_for("C", "refurbish", "electronics").to_json() == {
        "ebay_condition_id": 2500, "ebay_condition": "Seller refurbished", "amazon_condition": "Used - Acceptable",
        "backmarket_grade": "Fair", "basis": "default C"}


@pytest.mark.parametrize("override, message", [
    ({"grade": "A", "ebay_condition_id": 1234}, "ebay_condition_id 1234"),
    ({"grade": "A", "amazon_condition": "Mint"}, "amazon_condition 'Mint'"),
    ({"grade": "A", "backmarket_grade": "Shiny"}, "backmarket_grade 'Shiny'"),
    ({"grade": "E"}, "grade"),
    ({"grade": "A", "colour": "red"}, "colour"),
])
def test_bad_site_overrides_are_refused_with_the_field(override, message):
    with pytest.raises(ValidationError, match=message):
        MarketplaceOverride.model_validate(override)


def test_marketplace_section_is_strict():
    with pytest.raises(ValidationError, match="ebay"):
        MarketplaceConfig.model_validate({"ebay": True})
