"""Files the station writes about itself are owner-only (0600) in owner-only folders (0700): calibration
profiles, background plates and the model registry, like the records and users databases."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np

from calibration.background import plate_from_frames, save_plates
from calibration.profiles import save_profile
from models.registry import ModelRegistry


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_calibration_profiles_and_plates_are_owner_only(tmp_path):
    profile = save_profile(tmp_path, "colour", "cam0", {"matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]})
    assert _mode(profile) == 0o600 and _mode(profile.parent) == 0o700
    rng = np.random.default_rng(0)
    frames = [np.clip(120 + rng.normal(0, 2, (48, 64, 3)), 0, 255).astype(np.uint8) for _ in range(3)]
    written = save_plates(tmp_path, "cam0", [plate_from_frames(frames, "front")])
    files = [p for p in written.parent.iterdir() if p.is_file()]
    assert any(p.suffix == ".png" for p in files)
    assert all(_mode(p) == 0o600 for p in files), {p.name: oct(_mode(p)) for p in files}
    assert not [p for p in files if ".tmp" in p.name]


def test_model_registry_database_is_owner_only(tmp_path):
    with ModelRegistry(tmp_path).open() as reg:
        assert _mode(reg.db_path) == 0o600 and _mode(reg.db_path.parent) == 0o700
