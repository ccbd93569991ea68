"""Real photos in the detector's training data: pinned extraction from a git mirror, composited defects,
real negatives, and a dataset mixing them that stays reproducible."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from models.composite import composite_sample, load_bases
from models.dataset import DatasetSpec, write_dataset
from models.real_photos import RealSet, extract, main as real_photos_main, split_of
from models.training.config import DataSection

SAMPLE = Path(__file__).parent / "data" / "real" / "label_recognition"


def _mirror(tmp_path: Path) -> tuple[Path, str]:
    """A real git repository holding a few of the sample photos, as a mirror would."""
    repo = tmp_path / "repo"
    (repo / "tests" / "dataset").mkdir(parents=True)
    for p in sorted(SAMPLE.glob("*.jpeg"))[:4]:
        (repo / "tests" / "dataset" / p.name.split("__")[-1]).write_bytes(p.read_bytes())
    (repo / "README.md").write_text("not a photo\n")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "photos"], check=True, env=env)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, env=env,
                          capture_output=True, text=True).stdout.strip()
    return repo, head


def test_extraction_is_pinned_split_by_path_and_recorded(tmp_path):
    repo, head = _mirror(tmp_path)
    real = RealSet("packaging", "someone/photos", head[:7], "Apache-2.0", "train+eval", "tests/dataset",
                   (".jpeg",), (("train", 0.5), ("test", 0.5)))
    manifest = extract(real, repo, tmp_path / "out")
    assert manifest["commit"] == head and manifest["licence"] == "Apache-2.0"
    assert len(manifest["files"]) == 4  # the README is not a photo
    for f in manifest["files"]:
        assert f["split"] == split_of(f["path"], real.splits)
        written = tmp_path / "out" / "packaging" / f["file"]
        assert written.read_bytes() == subprocess.run(
            ["git", "-C", str(repo), "show", f"{head}:{f['path']}"], check=True, capture_output=True).stdout
    assert json.loads((tmp_path / "out" / "packaging" / "manifest.json").read_text()) == manifest
    # A second extraction writes the same thing.
    assert extract(real, repo, tmp_path / "out") == manifest


def test_extraction_command_refuses_unknown_set_and_missing_mirror(tmp_path, capsys):
    assert real_photos_main(["--out", str(tmp_path), "--mirror", "nosuchset=/tmp"]) == 2
    assert "expected SET=PATH" in capsys.readouterr().err
    assert real_photos_main(["--out", str(tmp_path), "--mirror", f"label_recognition={tmp_path / 'absent'}"]) == 2
    assert "fetch the repository first" in capsys.readouterr().err


def test_composited_defect_is_labelled_where_the_photo_changed():
    bases = load_bases(SAMPLE)
    assert len(bases) == 6
    rng = np.random.default_rng(0)
    seen = set()
    for i in range(40):
        name = ("crack", "stain", "tear", "scratch", "wear")[i % 5]
        item = composite_sample(rng, bases, (name,), 256)
        assert item.image.shape == (256, 256, 3)
        for label, (x1, y1, x2, y2) in item.boxes():
            seen.add(label)
            assert 0 <= x1 < x2 <= 256 and 0 <= y1 < y2 <= 256
    assert seen == {"crack", "stain", "tear", "scratch", "wear"}


def test_real_negative_has_no_label_and_is_a_real_photo():
    bases = load_bases(SAMPLE)
    item = composite_sample(np.random.default_rng(1), bases, (), 256)
    assert item.boxes() == []
    assert item.image.std() > 20  # print and texture, not a flat render


def test_mixed_dataset_is_reproducible_and_holds_negatives(tmp_path):
    spec = DatasetSpec(train=16, val=2, test=2, seed=3, size=160, real_photos=str(SAMPLE), negative_share=0.4,
                       composite_share=0.4)
    a = write_dataset(tmp_path / "a", spec)
    b = write_dataset(tmp_path / "b", spec)
    assert a["sha256"] == b["sha256"]
    assert a["real_photos"]["files"] == 6
    empty = [p for p in (tmp_path / "a" / "labels" / "train").glob("*.txt") if not p.read_text().strip()]
    assert len(empty) >= 4  # negatives (and clean renders) carry no boxes


def test_rendered_only_dataset_is_unchanged_by_the_real_photo_option(tmp_path):
    plain = write_dataset(tmp_path / "plain", DatasetSpec(train=4, val=1, test=1, seed=2, size=128))
    unused = write_dataset(tmp_path / "unused", DatasetSpec(train=4, val=1, test=1, seed=2, size=128,
                                                            real_photos=str(SAMPLE)))
    assert plain["sha256"] == unused["sha256"]
    assert "real_photos" not in unused


def test_training_config_needs_a_folder_for_real_shares():
    with pytest.raises(ValueError, match="need real_photos"):
        DataSection(negative_share=0.2)
    with pytest.raises(ValueError, match="must not exceed 1"):
        DataSection(real_photos="x", negative_share=0.6, composite_share=0.6)


def test_unreadable_base_photo_is_named(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg: not a readable image"):
        load_bases(tmp_path)
    (tmp_path / "broken.jpg").unlink()
    with pytest.raises(ValueError, match="no images"):
        load_bases(tmp_path)


def test_dataset_generate_with_real_photos_and_its_errors(tmp_path):
    from typer.testing import CliRunner

    from station.cli import app

    def run(*args):
        res = CliRunner().invoke(app, ["dataset", "generate", str(tmp_path / "set"), *args], catch_exceptions=False)
        return res.exit_code, res.output

    code, text = run("--negative-share", "0.3")
    assert code == 2 and "need --real-photos" in text
    code, text = run("--real-photos", str(tmp_path / "absent"), "--composite-share", "0.5")
    assert code == 2 and "no such folder" in text
    code, text = run("--train", "0", "--val", "0", "--test", "4", "--size", "128", "--real-photos", str(SAMPLE),
                     "--negative-share", "0.5", "--composite-share", "0.5")
    assert code == 0, text
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert manifest["real_photos"]["files"] == 6 and manifest["spec"]["composite_share"] == 0.5


def test_the_third_generator_takes_its_share_of_a_mixed_dataset(tmp_path):
    spec = DatasetSpec(train=20, val=0, test=0, seed=4, size=160, real_photos=str(SAMPLE), negative_share=0.2,
                       composite_share=0.2, photo_share=0.5)
    a = write_dataset(tmp_path / "a", spec)
    assert a["sha256"] == write_dataset(tmp_path / "b", spec)["sha256"]
    assert a["real_photos"]["files"] == 6 and sum(a["boxes_per_class"]["train"].values()) > 0
    without = write_dataset(tmp_path / "c", DatasetSpec(train=20, val=0, test=0, seed=4, size=160,
                                                        real_photos=str(SAMPLE), negative_share=0.2,
                                                        composite_share=0.2))
    assert without["sha256"] != a["sha256"]
    with pytest.raises(ValueError, match="photo_share"):
        DataSection(train=10, val=2, test=2, real_photos=str(SAMPLE), negative_share=0.5, composite_share=0.3,
                    photo_share=0.3)
