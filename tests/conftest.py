from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # xdist workers get COLUMNS=80 / LINES=24; a serial run has neither, and the CLI's piped width depends on it.
    for _name in ("COLUMNS", "LINES"):
        os.environ.pop(_name, None)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def sample_catalogue_dir(tmp_path_factory) -> Path:
    """The generated sample catalogue, rendered once per test session."""
    from vision.catalogue import build_sample_catalogue

    root = tmp_path_factory.mktemp("catalogue")
    build_sample_catalogue(root)
    return root


@pytest.fixture()
def data_dir(tmp_path, sample_catalogue_dir) -> Path:
    """A fresh station data dir that already holds the sample catalogue (saves re-rendering it)."""
    import shutil

    d = tmp_path / "data"
    d.mkdir()
    shutil.copytree(sample_catalogue_dir, d / "sample_catalogue")
    return d
