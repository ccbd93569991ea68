"""`station demo` (issue 22): the safety story never restocks, and the output reads on an 80-column terminal."""

from __future__ import annotations

import os
import subprocess
import sys

from station.cli import _finding_label
from station.domain import Finding, FindingSource


def test_measurements_show_their_value_not_the_score():
    assert _finding_label(Finding("wrong_item", 0.95, FindingSource.CATALOGUE, value=0.41)) == \
        "wrong_item (identity 0.41)"
    assert _finding_label(Finding("colour_mismatch", 1.0, FindingSource.CATALOGUE, value=5.24)) == \
        "colour_mismatch (ΔE00 5.2)"
    assert _finding_label(Finding("dent", 0.456, FindingSource.DETECTOR)) == "dent 0.46"


def test_demo_on_80_columns_breaks_no_word_and_the_cracked_car_seat_goes_to_a_supervisor(data_dir):
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    proc = subprocess.run([sys.executable, "-m", "station.cli", "demo", "--items", "3", "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    seat = proc.stdout.split("car seat shell cracked", 1)[1].split("\n\n", 1)[0]
    assert "manual_review" in seat and "CAT-SAFETY-" in seat  # rule ids whole, never cut at the margin
    assert "SEAT-CAR-G1" in proc.stdout


def test_demo_without_data_dir_keeps_its_records_out_of_the_station_data_dir(tmp_path, sample_catalogue_dir):
    import shutil

    real = tmp_path / "real"
    (real / "demo").mkdir(parents=True)
    shutil.copytree(sample_catalogue_dir, real / "demo" / "sample_catalogue")  # saves re-rendering it
    env = {**os.environ, "STATION_DATA_DIR": str(real)}
    proc = subprocess.run([sys.executable, "-m", "station.cli", "demo", "--items", "1"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert not (real / "station.db").exists()  # the station's own records are untouched
    assert (real / "demo" / "station.db").exists() and "never synced" in proc.stdout
