"""Catalogue folder + CSV loading: good input loads, bad input names the file, line and column."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vision.catalogue import SAMPLE_SKUS, Catalogue, CatalogueError, UnknownSkuError


def make(tmp_path, csv_text: str, images=("a.png",)):
    for name in images:
        cv2.imwrite(str(tmp_path / name), np.full((20, 20, 3), 100, np.uint8))
    (tmp_path / "catalogue.csv").write_text(csv_text)
    return tmp_path


def test_several_rows_per_sku_and_optional_columns(tmp_path):
    root = make(tmp_path, "sku,category,brand,image,lab_l,lab_a,lab_b,width_mm,height_mm,hygiene,safety\n"
                          "S1,infant_feeding,m,a.png,50,1,2,80,200,true,false\nS1,infant_feeding,m,b.png,,,,,,,\n",
                images=("a.png", "b.png"))
    cat = Catalogue.load(root)
    item = cat.get("S1")
    assert item.reference_images == ("a.png", "b.png")
    assert item.reference_lab.as_tuple() == (50, 1, 2) and item.dimensions_mm.width == 80
    assert item.hygiene and not item.safety


@pytest.mark.parametrize("csv_text, needle", [
    ("sku,brand,image\nS1,m,a.png\n", "missing columns ['category']"),
    ("sku,category,brand,image\nS1,toys,m,nope.png\n", "catalogue.csv:2: image 'nope.png'"),
    ("sku,category,brand,image,hygiene\nS1,toys,m,a.png,maybe\n", "catalogue.csv:2: column 'hygiene'"),
    ("sku,category,brand,image,lab_l\nS1,toys,m,a.png,bright\n", "column 'lab_l' must be a number"),
    ("sku,category,brand,image\n,toys,m,a.png\n", "catalogue.csv:2: empty sku"),
    # an unquoted comma: extra values were a list and crashed with 'list' has no attribute 'strip'
    ("sku,category,brand,image\nS1,toys,m,a.png,oops\n", "catalogue.csv:2: 5 values but the header has 4 columns"),
])
def test_bad_csv(tmp_path, csv_text, needle):
    with pytest.raises(CatalogueError, match=needle.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        Catalogue.load(make(tmp_path, csv_text))


def test_missing_csv(tmp_path):
    with pytest.raises(CatalogueError, match="catalogue.csv not found"):
        Catalogue.load(tmp_path)


def test_unknown_sku_message_lists_known(sample_catalogue_dir):
    cat = Catalogue.load(sample_catalogue_dir)
    with pytest.raises(UnknownSkuError) as exc:
        cat.get("NOPE")
    assert "unknown SKU 'NOPE'" in str(exc.value) and "BTL-FEED-240" in str(exc.value)


def test_sample_catalogue_covers_required_categories(sample_catalogue_dir):
    cat = Catalogue.load(sample_catalogue_dir)
    assert len(cat) == len(SAMPLE_SKUS) >= 6
    cats = {i.category for i in cat.items.values()}
    assert {"infant_feeding", "infant_safety", "electronics", "apparel", "cosmetics", "toys"} <= cats
    bottle = cat.get("BTL-FEED-240")
    assert bottle.hygiene and len(bottle.reference_images) == 3 and bottle.reference_lab is not None
    assert cat.get("SEAT-CAR-G1").safety and cat.get("COS-LOTION-200").liquid
