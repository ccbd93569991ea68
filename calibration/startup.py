"""Start-up calibration check: are the stored profiles fresh, and is the bench lit as when the colour
profile was taken? Returns warnings; never raises (a station with no profiles still boots).

Lighting: the bench is the frame's border (as the comparer's segmentation takes it). Its grey level
(mean of B, G, R) and white balance (B/G and R/G) are compared with the bench reading stored in the
colour profile (``data["bench_bgr"]``, written by `station calibrate colour --save`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibration.profiles import load_profile, stale_warning

PROFILE_KINDS = ("intrinsics", "scale", "colour")


def bench_reading(image: np.ndarray, border: int = 8) -> np.ndarray:
    """Median BGR of the frame's border: the bench around the item or chart."""
    b = border
    edge = np.concatenate([image[:b].reshape(-1, 3), image[-b:].reshape(-1, 3),
                           image[:, :b].reshape(-1, 3), image[:, -b:].reshape(-1, 3)])
    return np.median(edge, axis=0).astype(np.float64)


def lighting_drift(frame: np.ndarray, reference_bgr, level_tolerance: float = 0.10,
                   balance_tolerance: float = 0.05) -> tuple[dict, list[str]]:
    """(measurement, warnings) of the bench in ``frame`` against the stored bench reading."""
    now = bench_reading(frame)
    ref = np.asarray(reference_bgr, np.float64)
    level_now, level_ref = float(now.mean()), float(max(ref.mean(), 1.0))
    level_change = level_now / level_ref - 1.0
    ratio = lambda v: np.array([v[0] / max(v[1], 1.0), v[2] / max(v[1], 1.0)])  # noqa: E731 (B/G, R/G)
    balance_change = ratio(now) / np.maximum(ratio(ref), 1e-3) - 1.0
    out = {"bench_bgr": [round(float(v), 1) for v in now], "reference_bgr": [round(float(v), 1) for v in ref],
           "level_change": round(level_change, 4),
           "white_balance_change": {"b_over_g": round(float(balance_change[0]), 4),
                                    "r_over_g": round(float(balance_change[1]), 4)}}
    warnings = []
    if abs(level_change) > level_tolerance:
        warnings.append(f"bench lighting drifted: grey level {level_now:.0f} vs {level_ref:.0f} at colour calibration "
                        f"({level_change:+.0%}, limit ±{level_tolerance:.0%}); check the lights or recalibrate colour")
    worst = int(np.argmax(np.abs(balance_change)))
    if abs(balance_change[worst]) > balance_tolerance:
        name = ("blue", "red")[worst]
        warnings.append(f"bench white balance drifted: {name}/green {balance_change[worst]:+.0%} vs colour calibration "
                        f"(limit ±{balance_tolerance:.0%}); a lamp changed or daylight reaches the bench: recalibrate colour")
    return out, warnings


@dataclass(frozen=True, slots=True)
class StartupCheck:
    warnings: tuple[str, ...]
    profiles: dict  # kind -> {"present", "created_at", "age_days", "stale"}
    lighting: dict | None  # the bench measurement, when a check frame and a colour profile's bench exist

    def to_json(self) -> dict:
        return {"warnings": list(self.warnings), "profiles": self.profiles, "lighting": self.lighting}


def startup_check(data_dir: Path, camera_id: str, max_age_days: float = 30.0, frame: np.ndarray | None = None,
                  now: float | None = None, level_tolerance: float = 0.10, balance_tolerance: float = 0.05,
                  kinds: tuple[str, ...] = PROFILE_KINDS) -> StartupCheck:
    """Stale profiles (older than ``max_age_days``) and, given a check ``frame`` of the empty bench (or the
    bench around an item), lighting drift against the colour profile. A missing profile is reported in
    ``profiles`` but is no warning: the station works uncalibrated (no size, bench-grey colour)."""
    now = time.time() if now is None else now
    warnings: list[str] = []
    profiles: dict = {}
    colour = None
    for kind in kinds:
        try:
            prof = load_profile(data_dir, kind, camera_id)
        except (OSError, ValueError) as exc:
            warnings.append(f"{kind} profile for camera {camera_id} is unreadable ({exc}): recalibrate")
            profiles[kind] = {"present": False, "created_at": None, "age_days": None, "stale": None}
            continue
        if prof is None:
            profiles[kind] = {"present": False, "created_at": None, "age_days": None, "stale": None}
            continue
        try:
            stale = stale_warning(prof, max_age_days, now)
            age = (now - float(prof["created_unix"])) / 86400
        except (KeyError, TypeError, ValueError):
            warnings.append(f"{kind} profile for camera {camera_id} has no valid date: recalibrate")
            profiles[kind] = {"present": True, "created_at": None, "age_days": None, "stale": True}
            continue
        if stale:
            warnings.append(stale)
        profiles[kind] = {"present": True, "created_at": prof.get("created_at"), "age_days": round(age, 2),
                          "stale": stale is not None}
        if kind == "colour":
            colour = prof
    lighting = None
    if frame is not None and colour is not None:
        ref = (colour.get("data") or {}).get("bench_bgr")
        if ref is not None:
            try:
                lighting, drift = lighting_drift(frame, ref, level_tolerance, balance_tolerance)
                warnings.extend(drift)
            except (ValueError, IndexError, TypeError) as exc:
                warnings.append(f"lighting check skipped: unusable check frame ({exc})")
    return StartupCheck(tuple(warnings), profiles, lighting)
