"""Write a YOLO-format defect dataset (images, labels, data.yaml): samples from the procedural renderer and,
where real base photos are given, defects composited onto real packaging and real undamaged negatives."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vision.synth import DEFECT_CLASSES, PLAUSIBLE_DEFECTS, ProductShape, SceneStyle, random_look, render_item

SPLITS = ("train", "val", "test")
# Seed streams per split: a split never reuses another split's seeds, whatever the counts.
_SPLIT_STREAM = {"train": 1, "val": 2, "test": 3}


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    train: int = 200
    val: int = 40
    test: int = 40
    seed: int = 0
    size: int = 416
    clean_share: float = 0.12
    shifted: bool = False
    # (class, n): that class leads n slots of the primary-class cycle instead of one, so a fine-tune can
    # see more of the classes it finds worst. Empty keeps every class at an equal share.
    primary_repeats: tuple[tuple[str, int], ...] = ()
    # Real photos (models.composite): a folder of base images, the share of samples that are real undamaged
    # negatives and the share with defects composited onto a real photo; the rest are rendered.
    real_photos: str | None = None
    negative_share: float = 0.0
    composite_share: float = 0.0
    # The share with defects from the third generator (models.photo_defects), painted on the same real photos
    # by methods of its own, so the detector does not learn one painter's style.
    photo_share: float = 0.0

    def mixes_real_photos(self) -> bool:
        return bool(self.real_photos and (self.negative_share or self.composite_share or self.photo_share))

    def primary_cycle(self) -> tuple[str, ...]:
        """The primary classes in the order samples cycle through; ValueError names what is wrong."""
        repeats = dict(self.primary_repeats)
        unknown = sorted(set(repeats) - set(DEFECT_CLASSES))
        if unknown:
            raise ValueError(f"primary_repeats names unknown classes {unknown}; known: {list(DEFECT_CLASSES)}")
        if any(n < 1 for n in repeats.values()):
            raise ValueError("each primary_repeats count must be at least 1")
        return tuple(c for c in DEFECT_CLASSES for _ in range(repeats.get(c, 1)))


def _shapes_for(defect: str) -> list[ProductShape]:
    return [s for s, allowed in PLAUSIBLE_DEFECTS.items() if defect in allowed]


def _packaged_view(shape: ProductShape, defect: str) -> str:
    # Seals and package damage need packaging: a gadget is shown boxed (side view) for those.
    if shape == ProductShape.GADGET and defect in ("seal_broken", "package_damage"):
        return "side"
    return "front"


def _defects_for(rng: np.random.Generator, primary: str, allowed) -> tuple[str, ...]:
    extra_n = int(rng.choice([0, 0, 1, 2]))
    return (primary, *tuple(rng.choice(allowed, size=extra_n))) if extra_n else (primary,)


def render_sample(rng: np.random.Generator, index: int, spec: DatasetSpec, bases=None, photo_bases=None):
    """One training sample; the primary class cycles (equal shares unless ``spec.primary_repeats``).

    With ``bases`` (real photos) a share of samples are real negatives or real photos with defects composited
    on, and with ``photo_bases`` a share from the third generator; without, the random stream is exactly that
    of a rendered-only set, so pinned datasets stay the same."""
    if bases or photo_bases:
        u = rng.random()
        if u < spec.negative_share + spec.composite_share:
            from models.composite import COMPOSITE_CLASSES, composite_sample

            if u < spec.negative_share:
                return composite_sample(rng, bases, (), spec.size)
            cycle = spec.primary_cycle()
            return composite_sample(rng, bases, _defects_for(rng, cycle[index % len(cycle)], COMPOSITE_CLASSES),
                                    spec.size)
        if u < spec.negative_share + spec.composite_share + spec.photo_share:
            from models.photo_defects import photo_defect_sample

            return photo_defect_sample(rng, photo_bases, spec.size, index=index)
    style = SceneStyle(size=(spec.size, spec.size), shifted=spec.shifted)
    if rng.random() < spec.clean_share:
        shape = ProductShape(rng.choice([s.value for s in ProductShape]))
        view = "front" if rng.random() < 0.5 else "side"
        return render_item(rng, random_look(rng, shape), (), style, view)
    cycle = spec.primary_cycle()
    primary = cycle[index % len(cycle)]
    shapes = _shapes_for(primary)
    shape = shapes[int(rng.integers(0, len(shapes)))]
    view = _packaged_view(shape, primary)
    extra_n = int(rng.choice([0, 0, 1, 2]))
    allowed = PLAUSIBLE_DEFECTS[shape]
    extras = tuple(rng.choice(allowed, size=extra_n)) if extra_n else ()
    return render_item(rng, random_look(rng, shape), (primary, *extras), style, view)


def yolo_lines(item, width: int, height: int) -> list[str]:
    lines = []
    for name, (x1, y1, x2, y2) in item.boxes():
        cls = DEFECT_CLASSES.index(name)
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        bw, bh = (x2 - x1) / width, (y2 - y1) / height
        lines.append(f"{cls} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
    return lines


def _real_photos_provenance(folder: Path) -> dict:
    """Where the base photos came from: the extraction manifest of ``models.real_photos`` when present."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    digest = hashlib.sha256()
    for p in files:
        digest.update(hashlib.sha256(p.read_bytes()).digest())
    out = {"folder": str(folder), "files": len(files), "sha256": digest.hexdigest()}
    for parent in (folder, *folder.parents[:3]):
        if (parent / "manifest.json").is_file():
            m = json.loads((parent / "manifest.json").read_text())
            out.update({k: m.get(k) for k in ("set", "repository", "commit", "licence", "use")})
            break
    return out


def write_dataset(out: Path, spec: DatasetSpec, progress=None) -> dict:
    """Render the dataset into ``out``; return a manifest with per-split counts and a content hash."""
    out = Path(out)
    bases = photo_bases = None
    if spec.real_photos and (spec.negative_share or spec.composite_share):
        from models.composite import load_bases

        bases = load_bases(Path(spec.real_photos))
    if spec.real_photos and spec.photo_share:
        from models.photo_defects import load_photo_bases

        photo_bases = load_photo_bases(Path(spec.real_photos))
    counts: dict[str, dict[str, int]] = {}
    digest = hashlib.sha256()
    for split in SPLITS:
        n = getattr(spec, split)
        img_dir, lbl_dir = out / "images" / split, out / "labels" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        lbl_dir.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([spec.seed, _SPLIT_STREAM[split], int(spec.shifted)])
        per_class = dict.fromkeys(DEFECT_CLASSES, 0)
        for i in range(n):
            item = render_sample(rng, i, spec, bases, photo_bases)
            stem = f"{split}_{i:05d}"
            ok, buf = cv2.imencode(".jpg", item.image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            if not ok:
                raise RuntimeError(f"could not encode {stem}")
            (img_dir / f"{stem}.jpg").write_bytes(buf.tobytes())
            lines = yolo_lines(item, spec.size, spec.size)
            text = "\n".join(lines) + ("\n" if lines else "")
            (lbl_dir / f"{stem}.txt").write_text(text)
            digest.update(buf.tobytes())
            digest.update(text.encode())
            for line in lines:
                per_class[DEFECT_CLASSES[int(line.split()[0])]] += 1
            if progress:
                progress(split, i + 1, n)
        counts[split] = per_class
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(DEFECT_CLASSES))
    (out / "data.yaml").write_text(
        f"path: {out.resolve()}\ntrain: images/train\nval: images/val\ntest: images/test\nnames:\n{names}\n"
    )
    manifest = {
        "spec": {k: getattr(spec, k) for k in DatasetSpec.__dataclass_fields__},
        "boxes_per_class": counts,
        "sha256": digest.hexdigest(),
    }
    if spec.mixes_real_photos():
        manifest["real_photos"] = _real_photos_provenance(Path(spec.real_photos))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
