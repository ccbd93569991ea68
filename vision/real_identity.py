"""Identity on real photos: Grozi-120 in-store video frames (dthiagarajan/grozi_tf, licence none stated:
evaluation only, nothing of it is committed or shipped).

    python -m vision.real_identity --mirror /work/.mirror/dthiagarajan+grozi_tf/repo [--products 120]

Pinned subset: commit GROZI_COMMIT, `train_photos/<product>/videoN.png`, frames sorted by N. Per product the
catalogue is 3 frames from the first half of its sequence (positions 0, n/6, n/3) and the returns are 3 frames
from the second half (2n/3, 5n/6, n-1): the same product seen later, at another angle and scale.

Each return is checked twice: claimed as its true product (genuine) and claimed as its look-alike, the
other product whose catalogue views are nearest to the true product's (swap: the hardest one in the set).
Prints AUROC and TPR at FPR <= 0.02 for the station's identity score and its parts.
"""

from __future__ import annotations

import argparse
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

GROZI_COMMIT = "be73bfba493ba1c42ae60d355bfe6e9075d8e6ad"
GROZI_REPO = "dthiagarajan/grozi_tf"


@dataclass(frozen=True, slots=True)
class Sample:
    product: str
    path: Path
    catalogue: bool


def _git(mirror: Path, *args: str) -> bytes:
    git_dir = mirror / ".git" if (mirror / ".git").exists() else mirror
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True).stdout


def extract(mirror: Path, out: Path, products: int = 120) -> list[Sample]:
    """The pinned subset, written under ``out`` (skips files already there)."""
    names = _git(mirror, "ls-tree", "-r", "--name-only", GROZI_COMMIT, "train_photos").decode().split()
    by_product: dict[str, list[str]] = {}
    for n in names:
        parts = n.split("/")
        if len(parts) == 3 and parts[2].startswith("video") and parts[2].endswith(".png"):
            by_product.setdefault(parts[1], []).append(n)
    samples = []
    for product in sorted(by_product, key=int)[:products]:
        frames = sorted(by_product[product], key=lambda s: int(Path(s).stem[5:]))
        n = len(frames)
        picks = [(frames[i], True) for i in (0, n // 6, n // 3)] + \
                [(frames[i], False) for i in (2 * n // 3, 5 * n // 6, n - 1)]
        for name, is_cat in picks:
            dest = out / name
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(_git(mirror, "show", f"{GROZI_COMMIT}:{name}"))
            samples.append(Sample(product, dest, is_cat))
    return samples


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a genuine claim scores above a swap (ties count half)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def tpr_at_fpr(pos: np.ndarray, neg: np.ndarray, max_fpr: float = 0.02) -> tuple[float, float]:
    """Best TPR with FPR <= max_fpr, and the threshold giving it (accept when score >= threshold)."""
    best, thr = 0.0, float("inf")
    for t in np.unique(np.concatenate([pos, neg])):
        fpr = float(np.mean(neg >= t))
        if fpr <= max_fpr:
            tpr = float(np.mean(pos >= t))
            if tpr > best:
                best, thr = tpr, float(t)
    return best, thr


def write_catalogue(samples: list[Sample], root: Path) -> Path:
    """A station catalogue folder (catalogue.csv beside the images) of the samples' catalogue frames."""
    import csv

    root.mkdir(parents=True, exist_ok=True)
    with open(root / "catalogue.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["sku", "category", "brand", "image"])
        for s in samples:
            if s.catalogue:
                w.writerow([f"GROZI-{s.product}", "grocery", "grozi", str(s.path.resolve())])
    return root


def station_decisions(samples: list[Sample], lookalike: dict[str, str], root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Identity scores of the station's own comparer (`station compare`'s), genuine and swapped claims."""
    from station.domain import Frame
    from vision.catalogue import Catalogue
    from vision.compare import CatalogueComparer

    cat = Catalogue.load(write_catalogue(samples, root))
    cmp = CatalogueComparer(cat)
    gen, swp = [], []
    for s in samples:
        if s.catalogue:
            continue
        frame = Frame(cv2.imread(str(s.path)), "front")
        gen.append(cmp.compare(cat.get(f"GROZI-{s.product}"), [frame]).identity_score)
        swp.append(cmp.compare(cat.get(f"GROZI-{lookalike[s.product]}"), [frame]).identity_score)
    return np.array(gen), np.array(swp)


def main() -> None:
    from vision.identity import IdentityIndex

    ap = argparse.ArgumentParser(description="identity AUROC on real Grozi-120 photos")
    ap.add_argument("--mirror", type=Path, required=True, help="git mirror of dthiagarajan/grozi_tf")
    ap.add_argument("--out", type=Path, default=Path("build/real/grozi"))
    ap.add_argument("--products", type=int, default=120)
    ap.add_argument("--station", action="store_true", help="also score through the station's own comparer")
    args = ap.parse_args()
    samples = extract(args.mirror, args.out, args.products)
    index = IdentityIndex()
    for s in samples:
        if s.catalogue:
            index.add(s.product, str(s.path), cv2.imread(str(s.path)))
    cat_sim = index.sku_similarity()  # product x product, max over views
    lookalike = {p: max((q for q in index.skus if q != p), key=lambda q: cat_sim[p][q]) for p in index.skus}
    gen, swp = {"retrieval": [], "identity": []}, {"retrieval": [], "identity": []}
    first_half = set(index.skus[: len(index.skus) // 2])
    half: list[bool] = []
    for s in samples:
        if s.catalogue:
            continue
        img = cv2.imread(str(s.path))
        q = index.query(img)
        half.append(s.product in first_half)
        for claimed, store in ((s.product, gen), (lookalike[s.product], swp)):
            r = index.judge(q, img, claimed)
            store["retrieval"].append(r.retrieval_margin)
            store["identity"].append(r.score)
    n = len(gen["identity"])
    print(f"Grozi-120 ({GROZI_REPO}@{GROZI_COMMIT[:7]}): {len(index.skus)} products, {n} returns, "
          f"each genuine once and swapped for its nearest look-alike once")
    for key in ("retrieval", "identity"):
        pos, neg = np.array(gen[key]), np.array(swp[key])
        tpr, thr = tpr_at_fpr(pos, neg)
        print(f"  {key:<10} AUROC {auroc(pos, neg):.3f}  TPR {tpr:.3f} at FPR<=0.02 (threshold {thr:.3f})")
    pos, neg = np.array(gen["identity"]), np.array(swp["identity"])
    a = np.array(half)
    _, thr = tpr_at_fpr(pos[a], neg[a])
    print(f"  calibration: products of the first half put the FPR<=0.02 point at {thr:.3f}; on the other half "
          f"that threshold accepts {np.mean(pos[~a] >= thr):.1%} of genuine and {np.mean(neg[~a] >= thr):.1%} of swaps")
    print(f"  station decision (accept when identity >= 0.9): genuine accepted {np.mean(pos >= 0.9):.1%}, "
          f"swaps accepted {np.mean(neg >= 0.9):.1%}")
    if args.station:
        pos, neg = station_decisions(samples, lookalike, args.out / "catalogue")
        tpr, thr = tpr_at_fpr(pos, neg)
        print(f"  station comparer (CatalogueComparer.compare): AUROC {auroc(pos, neg):.3f}, TPR {tpr:.3f} at "
              f"FPR<=0.02; at its threshold 0.9 genuine accepted {np.mean(pos >= 0.9):.1%}, swaps accepted "
              f"{np.mean(neg >= 0.9):.1%}")


if __name__ == "__main__":
    main()
