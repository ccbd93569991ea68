"""The independent defect-image generator: labels, determinism, command-line errors."""

from __future__ import annotations

import json

import pytest

from models.independent_render import CLASSES, main

N = 30


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("indep") / "a"
    assert main([str(out), "--images", str(N), "--seed", "5", "--size", "256"]) == 0
    return out


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.name != "data.yaml"}


def test_layout_and_labels(dataset):
    images = sorted((dataset / "images" / "test").glob("*.jpg"))
    assert len(images) == N
    for split in ("train", "val", "test"):
        assert (dataset / "images" / split).is_dir() and (dataset / "labels" / split).is_dir()
    seen, empty = set(), 0
    for img in images:
        lines = (dataset / "labels" / "test" / f"{img.stem}.txt").read_text().splitlines()
        empty += not lines
        assert len(lines) <= 3
        for line in lines:
            parts = line.split()
            assert len(parts) == 5
            c = int(parts[0])
            assert 0 <= c < len(CLASSES)
            cx, cy, w, h = map(float, parts[1:])
            assert all(len(p.split(".")[1]) == 6 for p in parts[1:])
            assert 0 < w <= 1 and 0 < h <= 1
            assert 0 <= cx - w / 2 + 1e-6 and cx + w / 2 <= 1 + 1e-6
            assert 0 <= cy - h / 2 + 1e-6 and cy + h / 2 <= 1 + 1e-6
            seen.add(c)
    assert len(seen) >= 6
    assert 0 < empty < N // 2
    yaml = (dataset / "data.yaml").read_text()
    assert f"path: {dataset.resolve()}" in yaml and "test: images/test" in yaml and "9: foreign_object" in yaml
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["generator"] == "models.independent_render" and manifest["seed"] == 5
    assert manifest["counts"]["images"] == N
    assert sum(manifest["boxes_per_class"].values()) == manifest["counts"]["boxes"]
    assert len(manifest["sha256"]) == 64


def test_deterministic_and_seed_dependent(dataset, tmp_path):
    assert main([str(tmp_path / "b"), "--images", str(N), "--seed", "5", "--size", "256"]) == 0
    assert _files(tmp_path / "b") == _files(dataset)
    assert main([str(tmp_path / "c"), "--images", "4", "--seed", "6", "--size", "256"]) == 0
    a = sorted((dataset / "images" / "test").glob("*.jpg"))[:4]
    c = sorted((tmp_path / "c" / "images" / "test").glob("*.jpg"))
    assert all(x.read_bytes() != y.read_bytes() for x, y in zip(a, c))


@pytest.mark.parametrize("argv", [
    ["--images", "3", "--seed", "1"],  # no output folder
    ["OUT", "--seed", "1"],  # --images missing
    ["OUT", "--images", "0", "--seed", "1"],
    ["OUT", "--images", "three", "--seed", "1"],
    ["OUT", "--images", "3", "--seed", "-1"],
    ["OUT", "--images", "3", "--seed", "1", "--size", "10"],
    ["OUT", "--images", "3", "--seed", "1", "--split", "holdout"],
    ["OUT", "--images", "3", "--seed", "1", "--colour", "red"],
])
def test_bad_arguments(argv, tmp_path, capsys):
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("independent_render: error:")
    assert not (tmp_path / "out").exists()


def test_refuses_to_mix_into_a_filled_split(dataset, capsys):
    assert main([str(dataset), "--images", "2", "--seed", "1", "--size", "256"]) == 2
    assert "already holds files" in capsys.readouterr().err
