"""The tamper suite (`station bench tamper`): at least 50 bundle and 30 database alterations, each run through
`station verify-bundle` / `station verify`; every one is caught (exit 1) or refused with a message (exit 2),
none passes, none gives a traceback, and the untouched bundle and store verify (the controls)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def suite() -> dict:
    proc = subprocess.run([sys.executable, "-m", "station.cli", "bench", "tamper", "--json"], capture_output=True,
                          text=True, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    res = json.loads(proc.stdout)
    res["_rc"] = proc.returncode
    return res


def test_enough_alterations_are_tried(suite):
    assert suite["bundle"]["tried"] >= 50 and suite["database"]["tried"] >= 30
    names = [c["name"] for c in suite["cases"]]
    assert len(names) == len(set((c["kind"], c["name"]) for c in suite["cases"]))  # no case counted twice


def test_every_alteration_is_caught_or_refused_and_none_gives_a_traceback(suite):
    for kind in ("bundle", "database"):
        r = suite[kind]
        assert r["missed"] == 0 and r["traceback"] == 0, r["unexpected"]
        assert r["caught"] + r["refused"] == r["tried"]
    for c in suite["cases"]:
        assert c["exit"] in (1, 2) and c["message"], c
    assert suite["_rc"] == 0


def test_the_controls_verify(suite):
    assert suite["controls_ok"], suite["controls"]
    assert [c["exit"] for c in suite["controls"]] == [0, 0]


@pytest.mark.parametrize("kind, name, result", [
    ("bundle", "decision liability share, manifest re-signed by the station key", "caught"),
    ("bundle", "another order's record added, re-signed by the station key", "caught"),
    ("bundle", "override record dropped", "caught"),
    ("bundle", "untouched bundle, no trusted key", "caught"),
    ("bundle", "bundle rebuilt by an attacker, no trusted key", "caught"),
    ("bundle", "zip bomb: 1000-fold ratio", "refused"),
    ("bundle", "CRC error in a record", "caught"),
    ("database", "rollback: and the witness file, checked against the platform", "caught"),
    ("database", "database replaced by an empty one", "caught"),
    ("database", "an image marked pruned, then edited", "caught"),
    ("database", "an index page corrupted", "caught"),
    ("database", "database replaced by random bytes", "refused"),
])
def test_named_cases(suite, kind, name, result):
    case = next(c for c in suite["cases"] if c["kind"] == kind and c["name"] == name)
    assert case["result"] == result, case


def test_the_text_report_prints_how_many_were_caught(suite):
    proc = subprocess.run([sys.executable, "-m", "station.cli", "bench", "tamper"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    b, d = suite["bundle"], suite["database"]
    assert f"bundle alterations: {b['tried']} tried, {b['tried']} caught" in proc.stdout
    assert f"database alterations: {d['tried']} tried, {d['tried']} caught" in proc.stdout
    assert "0 missed, 0 tracebacks" in proc.stdout
