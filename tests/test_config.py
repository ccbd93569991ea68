"""Config: defaults need no file; one TOML validated strictly; backends picked by `type`."""

from __future__ import annotations

import pytest

from station.config import (
    BUNDLED_MODEL,
    ConfigError,
    FolderCameraConfig,
    OnnxDetectorConfig,
    StationConfig,
    SyntheticCameraConfig,
    load_config,
)
from station.domain import Disposition


def test_defaults_without_a_file():
    cfg = load_config(None)
    assert isinstance(cfg.camera, SyntheticCameraConfig)
    assert isinstance(cfg.detector, OnnxDetectorConfig) and cfg.detector.model == BUNDLED_MODEL
    assert cfg.lane_for(Disposition.MANUAL_REVIEW) == 0
    assert set(cfg.lanes) == set(Disposition)


def test_type_picks_backend_and_relative_paths_follow_the_file(tmp_path):
    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "station.toml"
    path.write_text('[camera]\ntype = "folder"\npath = "shots"\n\n[detector]\nmodel = "m/x.onnx"\nthreads = 4\n'
                    '[station]\ndata_dir = "data"\n')
    cfg = load_config(path)
    assert isinstance(cfg.camera, FolderCameraConfig) and cfg.camera.path == tmp_path / "cfg" / "shots"
    assert cfg.detector.model == tmp_path / "cfg" / "m" / "x.onnx" and cfg.detector.threads == 4
    assert cfg.database_path() == tmp_path / "cfg" / "data" / "station.db"


def test_every_problem_is_reported_with_its_path(tmp_path):
    path = tmp_path / "station.toml"
    path.write_text('[lanes]\nrestock = -1\nteleport = 3\n\n[comparer]\nidentity_threshold = 2\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    text = "\n".join(exc.value.problems)
    assert "comparer.identity_threshold" in text
    assert "lanes.teleport" in text
    assert "lanes.restock" in text


def test_missing_file():
    with pytest.raises(ConfigError, match="file not found"):
        load_config("/nonexistent/station.toml")


def test_models_forbid_extra_keys():
    with pytest.raises(Exception, match="extra"):
        StationConfig.model_validate({"quality": {"min_sharpnes": 3}})
