"""Non-finite or absurd numbers on the command line are bad input (issue 22): exit 2, one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest


@pytest.mark.parametrize("value", ["1e308", "inf", "nan"])
def test_compare_refuses_non_bench_scale(value, tmp_path):
    img = tmp_path / "view.png"
    cv2.imwrite(str(img), np.full((64, 64, 3), 128, np.uint8))
    proc = subprocess.run([sys.executable, "-m", "station.cli", "compare", str(img), "--sku", "APP-TEE-M",
                           "--mm-per-px", value, "--json", "--data-dir", str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Infinity" not in proc.stdout
    if value != "nan":  # click's own min=0 check already refuses nan, in its own words
        assert "--mm-per-px" in proc.stderr and "up to 1000" in proc.stderr


@pytest.mark.parametrize("value", ["-5", "nan", "inf"])
def test_prune_refuses_a_negative_or_non_finite_budget_naming_the_value(value, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "station.cli", "prune", "--budget-mb", value,
                           "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "is not a budget" in proc.stderr


def test_inspect_names_a_directory_and_a_view_given_twice(tmp_path):
    img = tmp_path / "front.png"
    cv2.imwrite(str(img), np.full((64, 64, 3), 128, np.uint8))

    def inspect(*paths):
        return subprocess.run([sys.executable, "-m", "station.cli", "inspect", *map(str, paths), "--sku", "APP-TEE-M",
                               "--reason", "quality_issue", "--data-dir", str(tmp_path / "data")],
                              capture_output=True, text=True, timeout=300)

    proc = inspect(tmp_path)
    assert proc.returncode == 2 and "is a directory" in proc.stderr, proc.stderr
    proc = inspect(img, img)
    assert proc.returncode == 2 and "front given twice" in proc.stderr, proc.stderr
