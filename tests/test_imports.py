"""Dependency rules, checked on the source with ast: no runtime module imports torch or ultralytics (only
models/training may), only ui/ imports PyQt6, and lower layers use nothing of station/ but its domain types."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("station", "vision", "models", "hardware", "ui", "calibration")
TRAINING_ONLY = {"torch", "torchvision", "ultralytics"}
LOWER_LAYERS = ("vision", "models", "hardware", "calibration")


def imports_of(path: Path) -> set[str]:
    """Every absolute module imported anywhere in the file (function-level imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def violations(repo: Path) -> list[str]:
    found = []
    for pkg in PACKAGES:
        for path in sorted((repo / pkg).rglob("*.py")):
            rel = path.relative_to(repo).as_posix()
            names = imports_of(path)
            roots = {n.split(".")[0] for n in names}
            if roots & TRAINING_ONLY and not rel.startswith("models/training/"):
                found.append(f"{rel} imports {sorted(roots & TRAINING_ONLY)}")
            if "PyQt6" in roots and pkg != "ui":
                found.append(f"{rel} imports PyQt6 outside ui/")
            if "ui" in roots and pkg != "ui":
                found.append(f"{rel} imports ui/ (dependencies point ui -> station -> the rest)")
            if pkg in LOWER_LAYERS:
                for name in sorted(n for n in names if n.split(".")[0] == "station" and n != "station.domain"):
                    found.append(f"{rel} imports {name} (lower layers may use only station.domain)")
    return found


def test_no_forbidden_imports():
    assert violations(REPO) == []


def test_checker_catches_forbidden_imports(tmp_path):
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
    (tmp_path / "vision" / "bad.py").write_text("import torch\n\ndef f():\n    from PyQt6 import QtCore\n")
    (tmp_path / "hardware" / "worse.py").write_text("from station.pipeline import InspectionPipeline\n")
    found = violations(tmp_path)
    assert "vision/bad.py imports ['torch']" in found
    assert "vision/bad.py imports PyQt6 outside ui/" in found
    assert "hardware/worse.py imports station.pipeline (lower layers may use only station.domain)" in found
