"""Calibration profiles on disk: ``<data_dir>/calibration/<kind>_<camera_id>.json`` with the date and
camera id, and the stale-profile check the station runs at start-up."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

# the same as calibration.camera_id in the station config: a camera id is part of a file name, never a path
_CAMERA_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class ProfileError(ValueError):
    """A camera id that cannot name a profile file (``bench/../../x`` would write outside the calibration folder)."""


def profile_path(data_dir: Path, kind: str, camera_id: str) -> Path:
    if not isinstance(camera_id, str) or not _CAMERA_ID.fullmatch(camera_id):
        raise ProfileError(f"camera id {camera_id!r} is not a camera id: use 1 to 64 letters, digits, '_', '.' "
                           "or '-' (no '/'), e.g. --camera-id cam0")
    return Path(data_dir) / "calibration" / f"{kind}_{camera_id}.json"


def write_private(path: Path, data: bytes) -> None:
    """Atomically (temporary file, fsync, rename), owner-only (0600 in a 0700 folder, as the station's records):
    a calibration says how this station's camera sees, which is the station's business alone."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)  # an older copy of the temporary may have had looser bits
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_profile(data_dir: Path, kind: str, camera_id: str, data: dict, now: float | None = None) -> Path:
    path = profile_path(data_dir, kind, camera_id)
    doc = {"kind": kind, "camera_id": camera_id, "created_at": time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now)),
        "created_unix": time.time() if now is None else now, "data": data}
    write_private(path, json.dumps(doc, indent=1).encode("utf-8"))
    return path


def load_profile(data_dir: Path, kind: str, camera_id: str) -> dict | None:
    path = profile_path(data_dir, kind, camera_id)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def stale_warning(profile: dict | None, max_age_days: float, now: float | None = None) -> str | None:
    if profile is None:
        return "no calibration profile: run `station calibrate ...`"
    age = ((time.time() if now is None else now) - float(profile["created_unix"])) / 86400
    if age > max_age_days:
        return (f"{profile['kind']} profile for camera {profile['camera_id']} is {age:.0f} days old "
                f"(limit {max_age_days:g}): recalibrate")
    return None
