"""Detector benchmark: our ONNX engine against ultralytics `YOLO(pt).predict` and `YOLO(onnx).predict`
on the same weights and the same images, side by side in one run (needs the [train] extra)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from models.evaluate import box_iou
from models.onnx_yolo import OnnxYoloDetector
from models.training.run import prepare_offline
from vision.synth import SceneStyle, random_defects, random_look, render_item


def bench_images(cache: Path, n: int, seed: int = 123) -> list[tuple[str, np.ndarray]]:
    """n images, half camera-sized 1920x1080 frames and half 640x480, rendered once and cached as PNG."""
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    rng = np.random.default_rng(seed)
    for i in range(n):
        size = (1920, 1080) if i % 2 == 0 else (640, 480)
        path = cache / f"bench_{seed}_{i:04d}_{size[0]}x{size[1]}.png"
        if path.exists():
            out.append((path.name, cv2.imread(str(path), cv2.IMREAD_COLOR)))
            continue
        look = random_look(rng)
        item = render_item(rng, look, random_defects(rng, look.shape), SceneStyle(size=size))
        cv2.imwrite(str(path), item.image)
        out.append((path.name, item.image))
    return out


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def agreement(ours: list, theirs: list, iou_min: float = 0.99) -> tuple[int, int]:
    """(boxes of theirs matched by one of ours with the same class at IoU >= iou_min, boxes of theirs)."""
    matched = total = 0
    for (a_xyxy, a_cls), (b_xyxy, b_cls) in zip(ours, theirs):
        total += len(b_cls)
        if len(a_cls) == 0 or len(b_cls) == 0:
            continue
        iou = box_iou(b_xyxy, a_xyxy) * (b_cls[:, None] == a_cls[None, :])
        used = set()
        for i in np.argsort(-iou.max(axis=1)):
            j = int(iou[i].argmax())
            if iou[i, j] >= iou_min and j not in used:
                used.add(j)
                matched += 1
    return matched, total


def run_benchmark(onnx_path: Path, pt_path: Path, n_images: int = 200, views_per_item: int = 3,
                  cache: Path = Path("build/bench_images"), workdir: Path = Path("build"), threads: int = 2,
                  progress=print, round_pairs: int = 2) -> dict:
    prepare_offline(workdir.resolve())
    from ultralytics import YOLO  # optional dependency, imported only here

    images = bench_images(cache, n_images)
    # Items: consecutive images of the same size (the views of one item share a camera).
    by_size: dict[tuple[int, int], list[np.ndarray]] = {}
    for _, img in images:
        by_size.setdefault(img.shape[:2], []).append(img)
    items = [group[i:i + views_per_item] for group in by_size.values()
             for i in range(0, len(group), views_per_item)]

    ours = OnnxYoloDetector(onnx_path, threads=threads).load()
    # The same engine running the exported graph whole (DFL and box decode in ORT): what the head cut buys.
    whole = OnnxYoloDetector(onnx_path, threads=threads, cut_head=False).load()
    imgsz = ours.input_size[0]
    conf, iou = ours.confidence, ours.iou
    # ultralytics prints progress to stdout; keep stdout for our report (--json) by sending its chatter to stderr.
    import contextlib
    import sys

    import logging

    from ultralytics.utils import LOGGER

    LOGGER.setLevel(logging.WARNING)  # its handler holds the real stdout, so a redirect alone does not catch it
    with contextlib.redirect_stdout(sys.stderr):
        yolo_pt = YOLO(str(pt_path), task="detect")
        yolo_onnx = YOLO(str(onnx_path), task="detect")
    kw = dict(imgsz=imgsz, conf=conf, iou=iou, verbose=False, device="cpu")

    def run_ours(detector, views):
        return [(d.xyxy, d.class_id) for d in detector.detect(views)]

    def run_ultra(model, views):
        with contextlib.redirect_stdout(sys.stderr):
            res = model.predict(views, **kw)
        return [(r.boxes.xyxy.cpu().numpy(), r.boxes.cls.cpu().numpy().astype(np.int32)) for r in res]

    engines = {"ours_onnx": lambda v: run_ours(ours, v),
               "ours_whole_graph": lambda v: run_ours(whole, v),
               "ultralytics_pt": lambda v: run_ultra(yolo_pt, v),
               "ultralytics_onnx": lambda v: run_ultra(yolo_onnx, v)}
    for fn in engines.values():  # warm-up: first calls allocate and JIT
        for _ in range(3):
            fn(items[0])
    times: dict[str, list[float]] = {k: [] for k in engines}
    outputs: dict[str, list] = {k: [] for k in engines}
    # Each engine runs all items in a block, in the order A B C D, D C B A, twice: interleaving item by item
    # would let one engine's thread pools (ORT and OpenMP spin after a call) steal the cores from the next
    # engine, and alternating blocks spreads slow phases of a shared machine over all engines.
    order = list(engines)
    for rnd, names in enumerate((order, order[::-1]) * round_pairs):
        for name in names:
            fn = engines[name]
            for _ in range(2):
                fn(items[0])  # re-warm after the other engines ran
            for views in items:
                t0 = time.perf_counter()
                result = fn(views)
                times[name].append((time.perf_counter() - t0) * 1000)
                if rnd == 0:
                    outputs[name].extend(result)
            if progress:
                progress(f"round {rnd + 1}: {name} done")
    matched, total = agreement(outputs["ours_onnx"], outputs["ultralytics_onnx"])
    whole_matched, whole_total = agreement(outputs["ours_onnx"], outputs["ours_whole_graph"])
    n = len(items)

    def paired(other: str) -> float:
        # Per item: the other engine's time over ours on the same views, median over items and rounds.
        ratios = [times[other][k] / times["ours_onnx"][k] for k in range(2 * round_pairs * n)]
        return round(_pct(ratios, 0.5), 3)

    report = {
        "images": len(images),
        "items": len(items),
        "views_per_item": views_per_item,
        "imgsz": imgsz,
        "threads": threads,
        "latency_ms_per_item": {k: {"p50": round(_pct(v, 0.5), 2), "p95": round(_pct(v, 0.95), 2),
                                    "mean": round(statistics.fmean(v), 2)} for k, v in times.items()},
        "speedup_p50": {
            "vs_ultralytics_pt": round(_pct(times["ultralytics_pt"], 0.5) / _pct(times["ours_onnx"], 0.5), 3),
            "vs_ultralytics_onnx": round(_pct(times["ultralytics_onnx"], 0.5) / _pct(times["ours_onnx"], 0.5), 3),
            "vs_ours_whole_graph": round(_pct(times["ours_whole_graph"], 0.5) / _pct(times["ours_onnx"], 0.5), 3),
        },
        "speedup_paired_median": {"vs_ultralytics_pt": paired("ultralytics_pt"),
                                  "vs_ultralytics_onnx": paired("ultralytics_onnx"),
                                  "vs_ours_whole_graph": paired("ours_whole_graph")},
        "rounds": 2 * round_pairs,
        "agreement_with_ultralytics_onnx": {"matched": matched, "boxes": total,
                                            "share": round(matched / total, 4) if total else 1.0,
                                            "iou_min": 0.99, "same_class": True},
        "agreement_with_whole_graph": {"matched": whole_matched, "boxes": whole_total},
    }
    return report
