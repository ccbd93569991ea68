"""Detector benchmark: the engines side by side in one run, on the same weights and the same images.

The baseline is our ONNX Runtime engine (models/onnx_yolo.py); beside it the same engine on the whole graph
(what the head cut buys), OpenVINO at f32 and at the CPU's default precision when OpenVINO is installed, and
ultralytics `YOLO(pt).predict` / `YOLO(onnx).predict` only when ultralytics (the [train] extra) is installed and
the .pt sits beside the model. Every engine's boxes are compared with the baseline's (same class, IoU >= 0.99)."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from models.evaluate import box_iou
from models.onnx_yolo import OnnxYoloDetector
from station.domain import percentile
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


BASELINE = "ours_onnx"


def _ultralytics_engines(onnx_path: Path, pt_path: Path, imgsz: int, conf: float, iou: float, workdir: Path) -> dict:
    from models.training.run import prepare_offline

    prepare_offline(workdir.resolve())
    from ultralytics import YOLO  # optional dependency, imported only here
    from ultralytics.utils import LOGGER

    # ultralytics prints progress to stdout; keep stdout for our report (--json). Its handler holds the real
    # stdout, so a redirect alone does not catch it.
    LOGGER.setLevel(logging.WARNING)
    with contextlib.redirect_stdout(sys.stderr):
        yolo_pt = YOLO(str(pt_path), task="detect")
        yolo_onnx = YOLO(str(onnx_path), task="detect")
    kw = dict(imgsz=imgsz, conf=conf, iou=iou, verbose=False, device="cpu")

    def run_ultra(model, views):
        with contextlib.redirect_stdout(sys.stderr):
            res = model.predict(views, **kw)
        return [(r.boxes.xyxy.cpu().numpy(), r.boxes.cls.cpu().numpy().astype(np.int32)) for r in res]

    return {"ultralytics_pt": lambda v: run_ultra(yolo_pt, v), "ultralytics_onnx": lambda v: run_ultra(yolo_onnx, v)}


def available_engines(onnx_path: Path, threads: int = 2, openvino: bool | None = None,
                      openvino_int8: Path | None = None) -> dict[str, object]:
    """The loaded detectors to compare, baseline first: ours on ONNX Runtime (cut and whole graph), and on
    OpenVINO at f32 and at the CPU's default precision when it is installed (``openvino`` None: when
    importable), plus an int8 OpenVINO model when given."""
    from models.onnx_yolo import OnnxYoloDetector
    from models.openvino_yolo import OpenVinoYoloDetector, openvino_available

    engines: dict[str, object] = {
        BASELINE: OnnxYoloDetector(onnx_path, threads=threads).load(),
        # The same engine running the exported graph whole (DFL and box decode in ORT): what the head cut buys.
        "ours_whole_graph": OnnxYoloDetector(onnx_path, threads=threads, cut_head=False).load(),
    }
    if openvino if openvino is not None else openvino_available():
        engines["openvino_f32"] = OpenVinoYoloDetector(onnx_path, threads=threads, precision="f32").load()
        engines["openvino_default"] = OpenVinoYoloDetector(onnx_path, threads=threads, precision="default").load()
        if openvino_int8 is not None:
            engines["openvino_int8"] = OpenVinoYoloDetector(onnx_path, threads=threads, precision="f32",
                                                            int8_trunk=openvino_int8).load()
    return engines


def run_benchmark(onnx_path: Path, pt_path: Path | None = None, n_images: int = 200, views_per_item: int = 3,
                  cache: Path = Path("build/bench_images"), workdir: Path = Path("build"), threads: int = 2,
                  progress=print, round_pairs: int = 2, openvino: bool | None = None,
                  ultralytics: bool | None = None, openvino_int8: Path | None = None) -> dict:
    """Latency per item (p50/p95/mean) of every available engine, ratios to the ONNX engine and box agreement
    with it. ``ultralytics`` None: its columns when it is installed and ``pt_path`` exists."""
    images = bench_images(cache, n_images)
    # Items: consecutive images of the same size (the views of one item share a camera).
    by_size: dict[tuple[int, int], list[np.ndarray]] = {}
    for _, img in images:
        by_size.setdefault(img.shape[:2], []).append(img)
    items = [group[i:i + views_per_item] for group in by_size.values()
             for i in range(0, len(group), views_per_item)]

    detectors = available_engines(onnx_path, threads, openvino, openvino_int8)
    ours = detectors[BASELINE]
    imgsz, conf, iou = ours.input_size[0], ours.confidence, ours.iou

    def run_ours(detector):
        return lambda views: [(d.xyxy, d.class_id) for d in detector.detect(views)]

    engines = {name: run_ours(det) for name, det in detectors.items()}
    if ultralytics is None:
        ultralytics = (pt_path is not None and Path(pt_path).is_file()
                       and importlib.util.find_spec("ultralytics") is not None)
    if ultralytics:
        engines.update(_ultralytics_engines(onnx_path, Path(pt_path), imgsz, conf, iou, workdir))
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
    n = len(items)

    def paired(other: str) -> float:
        # Per item: our engine's time over the other's on the same views (> 1: the other is faster), median over
        # items and rounds.
        ratios = [times[BASELINE][k] / times[other][k] for k in range(2 * round_pairs * n)]
        return round(percentile(ratios, 0.5), 3)

    def agreeing(name: str) -> dict:
        matched, total = agreement(outputs[name], outputs[BASELINE])
        return {"matched": matched, "boxes": total, "share": round(matched / total, 4) if total else 1.0,
                "engine_boxes": sum(len(cls) for _, cls in outputs[name])}

    base_p50 = percentile(times[BASELINE], 0.5)
    others = [k for k in engines if k != BASELINE]
    report = {
        "images": len(images),
        "items": len(items),
        "views_per_item": views_per_item,
        "imgsz": imgsz,
        "threads": threads,
        "baseline": BASELINE,
        "engines": {name: getattr(det, "engine", "?") + (f" ({det.precision})" if hasattr(det, "precision") else "")
                    for name, det in detectors.items()},
        "latency_ms_per_item": {k: {"p50": round(percentile(v, 0.5), 2), "p95": round(percentile(v, 0.95), 2),
                                    "mean": round(statistics.fmean(v), 2)} for k, v in times.items()},
        # How many times faster than our ONNX engine (p50 over p50; > 1: faster, < 1: slower).
        "faster_than_baseline_p50": {k: round(base_p50 / percentile(times[k], 0.5), 3) for k in others},
        "faster_than_baseline_paired_median": {k: paired(k) for k in others},
        "rounds": 2 * round_pairs,
        # Boxes of the baseline matched by the engine's with the same class at IoU >= 0.99.
        "agreement_with_baseline": {k: agreeing(k) for k in others},
        "agreement_iou_min": 0.99,
    }
    if ultralytics:
        matched, total = agreement(outputs[BASELINE], outputs["ultralytics_onnx"])
        report["agreement_with_ultralytics_onnx"] = {"matched": matched, "boxes": total,
                                                     "share": round(matched / total, 4) if total else 1.0,
                                                     "iou_min": 0.99, "same_class": True}
    return report
