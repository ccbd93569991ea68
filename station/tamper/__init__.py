"""Tamper suite: alter an evidence bundle and a station's data in every way an attacker would, run
`station verify-bundle` / `station verify` on each, and count what was caught.

Each alteration runs the real command in-process (typer's CliRunner). Outcomes: ``caught`` (exit 1 with a
message: verification failed or unverified), ``refused`` (exit 2 with a message: unusable input), ``missed``
(exit 0) or ``traceback`` (an exception escaped the command). Two controls (the untouched bundle and store)
must verify, or the suite proves nothing.

Used by ``station bench tamper`` and tests/test_tamper_suite.py.

The suite is split into ``fixture`` (the station under attack, outcomes, the CLI run), ``bundle_cases`` and
``database_cases``; this package runs them and re-exports their public names.
"""

from __future__ import annotations

from pathlib import Path

from station.tamper.bundle_cases import (attacker_rebuild, bundle_cases, crc_error, edit_json, nested_json, patch_method,
                                         resign, run_bundle_cases, zip_bytes)
from station.tamper.database_cases import (EXPECTED_MISSES, corrupt_index, database_cases, forged_record, rollback,
                                           run_database_cases)
from station.tamper.fixture import ORDER_A, ORDER_B, Fixture, Outcome, invoke_cli, make_fixture

# The helpers' names before the split into a package (tests/test_evidence_bundle_integrity.py reads them).
_zip, _resign, _edit_json, _crc_error, _nested = zip_bytes, resign, edit_json, crc_error, nested_json
_patch_method = patch_method
_rollback, _corrupt_index, _forged_record = rollback, corrupt_index, forged_record

__all__ = [
    "ORDER_A", "ORDER_B", "Outcome", "Fixture", "make_fixture", "invoke_cli", "zip_bytes", "edit_json", "resign",
    "attacker_rebuild", "crc_error", "nested_json", "patch_method", "bundle_cases", "run_bundle_cases", "rollback", "corrupt_index",
    "forged_record", "database_cases", "EXPECTED_MISSES", "run_database_cases", "controls", "summarize", "run_suite",
]


def controls(fx: Fixture) -> list[Outcome]:
    out = []
    for kind, args in (("bundle", ["verify-bundle", str(fx.bundle_a), "--public-key", str(fx.key_pem)]),
                       ("database", ["verify", "--data-dir", str(fx.data), "--head", str(fx.platform_heads)])):
        result, code, msg = invoke_cli(args)
        out.append(Outcome(kind, "control: untouched", result, code, msg))
    return out


def summarize(outcomes: list[Outcome]) -> dict:
    res: dict = {}
    for kind in ("bundle", "database"):
        rows = [o for o in outcomes if o.kind == kind]
        res[kind] = {"tried": len(rows), **{k: sum(o.result == k for o in rows)
                                            for k in ("caught", "refused", "missed", "traceback")},
                     "expected_misses": sorted(o.name for o in rows if o.result == "missed"
                                               and o.name in EXPECTED_MISSES),
                     "unexpected": [{"name": o.name, "result": o.result, "exit": o.exit_code, "message": o.message}
                                    for o in rows if o.result in ("missed", "traceback")
                                    and o.name not in EXPECTED_MISSES]}
    return res


def run_suite(work: Path) -> dict:
    """Build the fixture under ``work``, run the controls and every alteration; the summary per kind."""
    work = Path(work)
    fx = make_fixture(work / "fixture")
    ctl = controls(fx)
    outcomes = run_bundle_cases(fx, work / "bundles") + run_database_cases(fx, work / "databases")
    summary = summarize(outcomes)
    summary["controls_ok"] = all(o.result == "missed" for o in ctl)  # exit 0: the untouched data verifies
    summary["controls"] = [{"kind": o.kind, "exit": o.exit_code, "message": o.message} for o in ctl]
    summary["cases"] = [{"kind": o.kind, "name": o.name, "result": o.result, "exit": o.exit_code,
                         "message": o.message.splitlines()[0][:160] if o.message else ""} for o in outcomes]
    return summary
