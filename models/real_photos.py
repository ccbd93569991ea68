"""Real photos for the defect detector: pinned subsets of public sets, extracted from git mirrors.

    python -m models.real_photos --out build/real \\
        --mirror label_recognition=/work/.mirror/turnerdaniel+Label-Recognition/repo \\
        [--mirror eth80=/work/.mirror/chenchkx+ETH-80/repo] [--mirror shelves=...] [--mirror cans=...] \\
        [--mirror kolektor=...]

Each set is written to ``<out>/<set>/<split>/`` with a ``manifest.json`` holding the repository, the pinned
commit, the licence, what the set may be used for and every file's sha256. Splits are fixed by a hash of the
file's path (not by the order git lists them), so adding a set or re-running changes nothing.

Only a set whose licence allows it is used for training (``TRAINABLE``): Label-Recognition (Apache-2.0), real
packaging photos, as undamaged negatives and as the products defects are composited onto. Every other set
here states no licence, so it serves for evaluation only and nothing derived from it is shipped.
Held out for acceptance and never used: GroceryStoreDataset, ColorcheckerCalibration, DeepPCB,
Magnetic-tile-defect-datasets.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class RealSet:
    name: str
    repo: str
    commit: str
    licence: str
    use: str  # "train+eval" or "eval"
    prefix: str  # folder inside the repository
    suffixes: tuple[str, ...]
    # split -> share of files (by path hash); the shares add up to 1
    splits: tuple[tuple[str, float], ...]
    defective: str | None = None  # a path part marking defective photos (defect sets), else all are undamaged
    good: str | None = None  # a path part marking undamaged photos in a defect set
    limit: int | None = None  # at most this many files (by path hash), for the large sets
    description: str = ""


SETS: dict[str, RealSet] = {
    s.name: s
    for s in (
        RealSet("label_recognition", "turnerdaniel/Label-Recognition", "9b273e1", "Apache-2.0", "train+eval",
                "tests/dataset", (".jpeg", ".jpg"), (("train", 0.6), ("calib", 0.2), ("test", 0.2)),
                description="500 phone photos 840x640 of food-packaging labels (print, logos, barcodes, "
                            "dates) on tables: undamaged packaging"),
        RealSet("eth80", "chenchkx/ETH-80", "9243466", "none stated", "eval", "", (".png",),
                (("calib", 0.5), ("test", 0.5)), limit=240,
                description="ETH-80 objects (fruit, cups, toy cars and animals) on plain cloth, 256x256"),
        RealSet("shelves", "lucamarini22/Product-Recognition-on-Store-Shelves", "2e5af3a", "none stated", "eval",
                "models", (".jpg",), (("test", 1.0),),
                description="27 shop images of cereal boxes"),
        RealSet("cans", "RogelioGarciaAlvarez/ML_Can_Defects", "a990719", "none stated", "eval",
                "data/sample_can_defects", (".jpg", ".jpeg", ".png"), (("test", 1.0),),
                defective="major_defect|critical_defect", good="no_defect",
                description="tin cans on a grey bench: dents and rust by severity folder"),
        RealSet("kolektor", "stoy95536/KolektorSDD_Yolov8_Datasets", "81e5cf3", "none stated", "eval",
                "Datasets/images", (".jpg",), (("test", 1.0),),
                description="KolektorSDD commutator surfaces, cracks marked by polygons"),
    )
}
TRAINABLE = frozenset(s.name for s in SETS.values() if s.use == "train+eval")


def _git(mirror: Path, *args: str) -> bytes:
    git_dir = mirror / ".git" if (mirror / ".git").exists() else mirror
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True).stdout


def _path_hash(path: str) -> float:
    return int(hashlib.sha256(path.encode()).hexdigest()[:12], 16) / 16**12


def split_of(path: str, splits: tuple[tuple[str, float], ...]) -> str:
    """The split a file falls in: fixed by its path alone."""
    u, edge = _path_hash(path), 0.0
    for name, share in splits:
        edge += share
        if u < edge:
            return name
    return splits[-1][0]


def _kolektor_defective(mirror: Path, commit: str, image: str) -> bool:
    label = image.replace("/images/", "/labels/").rsplit(".", 1)[0] + ".txt"
    try:
        return bool(_git(mirror, "show", f"{commit}:{label}").strip())
    except subprocess.CalledProcessError:
        return False


def label_of(real: RealSet, path: str, mirror: Path | None = None) -> str:
    """"good", "defective" or "other" (a defect set's minor grades, neither good nor clearly defective)."""
    if real.name == "kolektor":
        return "defective" if mirror is not None and _kolektor_defective(mirror, real.commit, path) else "good"
    if real.defective is None:
        return "good"
    parts = set(path.split("/"))
    if parts & set(real.defective.split("|")):
        return "defective"
    return "good" if real.good in parts else "other"


def extract(real: RealSet, mirror: Path, out: Path) -> dict:
    """Write the pinned subset of ``real`` under ``out/<name>/``; return its manifest (also written)."""
    full = _git(mirror, "rev-parse", f"{real.commit}^{{commit}}").decode().strip()
    listing = _git(mirror, "ls-tree", "-r", "--name-only", full, *([real.prefix] if real.prefix else []))
    names = sorted(n for n in listing.decode().splitlines() if n.lower().endswith(real.suffixes))
    names = [n for n in names if "/maps/" not in f"/{n}"]  # ETH-80's segmentation masks are not photos
    if real.limit is not None:  # salted, so the chosen files still spread over every split
        names = sorted(sorted(names, key=lambda n: _path_hash("limit:" + n))[: real.limit])
    root = Path(out) / real.name
    files = []
    for name in names:
        split = split_of(name, real.splits)
        label = label_of(real, name, mirror)
        dest = root / split / label / name.replace("/", "__")
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(_git(mirror, "show", f"{full}:{name}"))
        files.append({"path": name, "split": split, "label": label, "file": str(dest.relative_to(root)),
                      "sha256": hashlib.sha256(dest.read_bytes()).hexdigest()})
    manifest = {"set": real.name, "repository": real.repo, "commit": full, "licence": real.licence,
                "use": real.use, "description": real.description, "files": files}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def images(root: Path, name: str, split: str, label: str = "good") -> list[Path]:
    """The extracted files of one set, split and label, in name order (empty when not extracted)."""
    return sorted(p for p in (Path(root) / name / split / label).glob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("build/real"))
    ap.add_argument("--mirror", action="append", default=[], metavar="SET=PATH",
                    help=f"a git mirror of one set ({', '.join(SETS)})")
    args = ap.parse_args(argv)
    if not args.mirror:
        print("give at least one --mirror SET=PATH", file=sys.stderr)
        return 2
    for item in args.mirror:
        name, _, path = item.partition("=")
        if name not in SETS or not path:
            print(f"--mirror {item!r}: expected SET=PATH with SET one of {', '.join(SETS)}", file=sys.stderr)
            return 2
        if not Path(path).exists():
            print(f"--mirror {item!r}: {path} does not exist (fetch the repository first)", file=sys.stderr)
            return 2
        manifest = extract(SETS[name], Path(path), args.out)
        counts: dict[str, int] = {}
        for f in manifest["files"]:
            key = f"{f['split']}/{f['label']}"
            counts[key] = counts.get(key, 0) + 1
        print(f"{name}: {len(manifest['files'])} files at {manifest['commit'][:12]} ({manifest['licence']}, "
              f"{manifest['use']}): " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
