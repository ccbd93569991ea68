"""Independent generator of labelled defect images, for evaluating the detector off its training style.

Written from a prose description of the classes and the label convention only (not from the training
renderer), so its look is deliberately different: every product is painted on a flat "product sheet" of
its own (cartons in three-quarter view, cylindrical bottles, jars and cans with labels, pillow pouches
with heat seals, folded woven fabric, electronics with glass screens, plastic toys), defects are painted
on that sheet where the material allows them, and the sheet is then placed in a bench scene with a
perspective homography, a soft drop shadow, directional light with falloff, a colour cast, specular
glints and camera defects (defocus or motion blur, vignetting, sensor noise, JPEG at varied quality).

Each defect's box is the tight box around the pixels it changed: the difference between the sheet before
and after painting it (colour and silhouette), carried into the scene by the same homography; puddles and
foreign objects are painted in the scene and diffed there.

This module plans the set and writes it; the parts live beside it: ``independent_classes`` (classes and
label convention), ``independent_paint`` (drawing primitives), ``independent_products`` (product sheets),
``independent_defects`` (defect painters on a sheet) and ``independent_scene`` (one image in its scene).

    python -m models.independent_render OUT --images N --seed S [--size 416] [--split test]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from models.independent_classes import CLASSES, CLS, KIND_CLASSES, KINDS
from models.independent_scene import render

GENERATOR = "models.independent_render"
SPLITS = ("train", "val", "test")
EMPTY_FRACTION = 0.15


class UsageError(ValueError):
    """Bad command-line arguments or output folder."""


def plan(rng, n: int) -> list[tuple[str, list[str]]]:
    """Product kind and defect classes per image: ~15 % empty, the rest 1-3 classes, balanced over the set."""
    empty = set(rng.permutation(n)[:int(round(EMPTY_FRACTION * n))].tolist())
    counts = np.zeros(len(CLASSES))
    out = []
    for i in range(n):
        if i in empty:
            out.append((KINDS[int(rng.integers(len(KINDS)))], []))
            continue
        k = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
        first = int(np.lexsort((rng.random(len(CLASSES)), counts))[0])
        kinds = [kd for kd in KINDS if CLASSES[first] in KIND_CLASSES[kd]]
        kind = kinds[int(rng.integers(len(kinds)))]
        chosen = [CLASSES[first]]
        allowed = [c for c in CLASSES if c in KIND_CLASSES[kind] and c != CLASSES[first]]
        order = np.lexsort((rng.random(len(allowed)), counts[[CLS[c] for c in allowed]]))
        chosen += [allowed[j] for j in order[:k - 1]]
        for c in chosen:
            counts[CLS[c]] += 1
        out.append((kind, chosen))
    return out


def yolo_line(c: int, box, W: int, H: int) -> str:
    x0, y0, x1, y1 = box
    return f"{c} {(x0 + x1) / 2 / W:.6f} {(y0 + y1) / 2 / H:.6f} {(x1 - x0) / W:.6f} {(y1 - y0) / H:.6f}"


def generate(out: Path, images: int, seed: int, size: int = 416, split: str = "test", progress=None) -> dict:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder")
    img_dir, lab_dir = out / "images" / split, out / "labels" / split
    if img_dir.is_dir() and any(img_dir.iterdir()):
        raise UsageError(f"{img_dir} already holds files; choose an empty output folder")
    for s in SPLITS:
        (out / "images" / s).mkdir(parents=True, exist_ok=True)
        (out / "labels" / s).mkdir(parents=True, exist_ok=True)
    plans = plan(np.random.default_rng([seed, 0]), images)
    digest = hashlib.sha256()
    per_class = [0] * len(CLASSES)
    kinds: dict[str, int] = {}
    empty = 0
    for i, (kind, classes) in enumerate(plans):
        r = render(np.random.default_rng([seed, 1, i]), size, kind, classes)
        stem = f"indep_{i:05d}"
        text = "".join(yolo_line(b[0], b[1:], size, size) + "\n" for b in r.boxes)
        (img_dir / f"{stem}.jpg").write_bytes(r.jpeg)
        (lab_dir / f"{stem}.txt").write_text(text)
        digest.update(stem.encode() + b"\0" + r.jpeg + b"\0" + text.encode() + b"\0")
        for b in r.boxes:
            per_class[b[0]] += 1
        empty += not r.boxes
        kinds[kind] = kinds.get(kind, 0) + 1
        if progress:
            progress(i + 1, images)
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CLASSES))
    (out / "data.yaml").write_text(f"path: {out.resolve()}\ntrain: images/train\nval: images/val\ntest: images/test\n"
                                   f"nc: {len(CLASSES)}\nnames:\n{names}\n")
    manifest = {
        "generator": GENERATOR, "seed": seed, "size": size, "split": split,
        "counts": {"images": images, "empty_images": empty, "boxes": sum(per_class), "product_kinds": dict(sorted(kinds.items()))},
        "boxes_per_class": {n: per_class[i] for i, n in enumerate(CLASSES)},
        "sha256": digest.hexdigest(),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        raise UsageError(message)


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(prog="python -m models.independent_render", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="output dataset folder")
    ap.add_argument("--images", type=int, required=True, help="number of images")
    ap.add_argument("--seed", type=int, required=True, help="random seed")
    ap.add_argument("--size", type=int, default=416, help="square image size in pixels (64..2048)")
    ap.add_argument("--split", default="test", help="train, val or test (default test)")
    try:
        a = ap.parse_args(argv)
        if a.images < 1:
            raise UsageError(f"--images must be at least 1, got {a.images}")
        if a.seed < 0:
            raise UsageError(f"--seed must be non-negative, got {a.seed}")
        if not 64 <= a.size <= 2048:
            raise UsageError(f"--size must be between 64 and 2048, got {a.size}")
        if a.split not in SPLITS:
            raise UsageError(f"--split must be one of {', '.join(SPLITS)}, got {a.split!r}")
        t0 = time.perf_counter()
        m = generate(a.out, a.images, a.seed, a.size, a.split)
    except UsageError as exc:
        print(f"independent_render: error: {exc}", file=sys.stderr)
        return 2
    dt = time.perf_counter() - t0
    print(f"wrote {m['counts']['images']} images ({m['counts']['empty_images']} undamaged, {m['counts']['boxes']} boxes) "
          f"to {a.out}/images/{a.split} in {dt:.1f} s; sha256 {m['sha256'][:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
