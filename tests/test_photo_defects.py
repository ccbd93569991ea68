"""The photo-based defect generator: determinism, class coverage, labels from visible change, CLI errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from models.photo_defects import (CHANGE_LEVEL, CLASSES, load_photo_bases, main, photo_defect_sample,
                                  render_layers)

BASES = Path(__file__).parent / "data" / "real" / "label_recognition"


@pytest.fixture(scope="module")
def bases() -> list[np.ndarray]:
    return load_photo_bases(BASES)


def test_same_seed_same_image_and_labels(bases):
    a = photo_defect_sample(np.random.default_rng([3, 7]), bases, 256, index=7)
    b = photo_defect_sample(np.random.default_rng([3, 7]), bases, 256, index=7)
    c = photo_defect_sample(np.random.default_rng([4, 7]), bases, 256, index=7)
    assert hashlib.sha256(a.image.tobytes()).digest() == hashlib.sha256(b.image.tobytes()).digest()
    assert a.boxes() == b.boxes()
    assert not np.array_equal(a.image, c.image)


def test_every_class_appears_with_boxes_inside_the_image(bases):
    seen: dict[str, int] = dict.fromkeys(CLASSES, 0)
    for i in range(60):
        s = photo_defect_sample(np.random.default_rng([11, i]), bases, 416, index=i)
        assert s.image.shape == (416, 416, 3) and s.image.dtype == np.uint8
        for name, (x0, y0, x1, y1) in s.boxes():
            assert 0 <= x0 < x1 <= 416 and 0 <= y0 < y1 <= 416
            seen[name] += 1
    assert all(seen.values()), seen


def test_clean_sample_has_no_boxes_and_no_change(bases):
    cleans = 0
    for i in range(40):
        layers = render_layers(np.random.default_rng([5, i]), bases, 256, index=i)
        if np.array_equal(layers.clean, layers.damaged):
            assert layers.labels == ()
            cleans += 1
    assert cleans >= 1


def test_boxes_cover_every_changed_pixel(bases):
    for i in range(30):
        layers = render_layers(np.random.default_rng([9, i]), bases, 320, index=i)
        changed = np.abs(layers.damaged - layers.clean).max(2) > CHANGE_LEVEL
        covered = np.zeros_like(changed)
        for _, (x0, y0, x1, y1) in layers.labels:
            covered[y0:y1, x0:x1] = True
            assert changed[y0:y1, x0:x1].sum() >= 6
        assert not (changed & ~covered).any(), f"sample {i}: changed pixels outside every box"


def test_cli_writes_a_deterministic_dataset(tmp_path):
    args = ["--images", "6", "--seed", "2", "--size", "160", "--bases", str(BASES)]
    assert main([str(tmp_path / "a"), *args]) == 0
    assert main([str(tmp_path / "b"), *args]) == 0
    ma = json.loads((tmp_path / "a" / "manifest.json").read_text())
    mb = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert ma["content_sha256"] == mb["content_sha256"]
    assert len(list((tmp_path / "a" / "images" / "train").glob("*.jpg"))) == 6
    assert len(list((tmp_path / "a" / "labels" / "train").glob("*.txt"))) == 6
    assert "9: foreign_object" in (tmp_path / "a" / "data.yaml").read_text()
    assert ma["bases"]["files"] == 6 and len(ma["bases"]["sha256"]) == 64


@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_cli_bad_bases_folder_exits_2_with_one_line(tmp_path, capsys, folder):
    (tmp_path / "empty").mkdir()
    code = main([str(tmp_path / "out"), "--images", "2", "--seed", "0", "--bases", str(tmp_path / folder)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err
    assert not (tmp_path / "out").exists()
