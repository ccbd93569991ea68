"""Int8 variants of the station's networks (NNCF post-training quantisation, OpenVINO IR) and their gate.

    python -m models.quantize detector --out build/int8/defects.int8.xml \\
        [--model models/weights/defects.onnx] [--real build/real/label_recognition/train/good] [--renders 120]
    python -m models.quantize gate-detector --int8 build/int8/defects.int8.xml \\
        --heldout build/testsets/heldout [--real build/real] [--json]
    python -m models.quantize backbone --out build/int8/backbone.int8.xml \\
        [--real build/real/label_recognition/train/good] [--renders 60]

Calibration images are real photos (the training split of the real sets, never an evaluation split) and
renders at camera sizes (seed 31, a seed no test set uses), prepared exactly as each engine feeds its network.
The detector's int8 model is its cut trunk (models/yolo_head.py): the box branch on candidates stays float in
numpy, so the int8 model plugs into ``OpenVinoYoloDetector(int8_trunk=...)``. The gate compares it with the
float ONNX engine on the held-out renders (mAP50, shipped only at a loss <= 0.01) and reports the real-photo
rungs of the detector ladder beside it; the backbone's gate is the identity and difference AUROCs
(vision/real_identity.py, vision/real_anomaly.py with STATION_BACKBONE=openvino:f32:<int8 xml>, loss <= 0.005).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from models.onnx_yolo import ModelError, OnnxYoloDetector, letterbox_into, letterbox_shape

DETECTOR_MAP50_MAX_LOSS = 0.01
BACKBONE_AUROC_MAX_LOSS = 0.005
CALIBRATION_RENDER_SEED = 31  # never a test set's seed (1000, 2000, 4000) nor a training seed
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


class QuantizeError(ValueError):
    """Bad input to a quantisation command; the message says what to give instead."""


def calibration_images(real: list[Path], renders: int, cache: Path, limit_real: int = 200) -> list[np.ndarray]:
    """Real photos (every file of the given folders, at most ``limit_real``, spread evenly) and ``renders``
    rendered items at camera sizes."""
    from models.training.bench import bench_images

    files: list[Path] = []
    for folder in real:
        if not folder.is_dir():
            raise QuantizeError(f"calibration folder {folder} not found: extract the real photos first "
                                f"(make real-photos) or leave --real out")
        files += sorted(p for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if len(files) > limit_real:
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit_real).round().astype(int)]
    out = [im for im in (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in files) if im is not None]
    if renders:
        out += [im for _, im in bench_images(cache, renders, seed=CALIBRATION_RENDER_SEED)]
    if not out:
        raise QuantizeError("no calibration images: give --real folders with photos or --renders N > 0")
    return out


def detector_input(detector: OnnxYoloDetector, image: np.ndarray) -> np.ndarray:
    """(1, 3, H, W) float32 in [0, 1]: the letterboxed RGB input the engine feeds the network for ``image``."""
    shape = letterbox_shape(*image.shape[:2], detector.input_size, detector.stride)
    buf = np.full((*shape, 3), 114, np.uint8)
    letterbox_into(image, buf, detector.input_size)
    return np.ascontiguousarray(buf[None, :, :, ::-1].transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def quantize_detector(model: Path, out: Path, images: list[np.ndarray], ignore_head: bool = False) -> dict:
    """The detector's cut trunk quantised to int8 (OpenVINO IR at ``out``, .xml beside its .bin)."""
    import nncf
    import openvino as ov

    detector = OnnxYoloDetector(model).load()
    if detector._head is None:
        raise QuantizeError(f"{model}: not an ultralytics Detect head this engine cuts; int8 needs the cut trunk")
    network = ov.Core().read_model(detector._head.trunk)
    data = [detector_input(detector, im) for im in images]
    # The class logits feed thresholds and the head inputs feed the float box branch: ignore_head keeps the
    # Detect head's convolutions in float (a smaller loss, a little slower).
    ignored = nncf.IgnoredScope(patterns=[r".*/model\.22/.*"]) if ignore_head else None
    quantized = nncf.quantize(network, nncf.Dataset(data), preset=nncf.QuantizationPreset.MIXED,
                              subset_size=len(data), **({"ignored_scope": ignored} if ignored else {}))
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    return {"model": str(model), "out": str(out), "calibration_images": len(data), "ignore_head": ignore_head}


def quantize_backbone(model: Path, out: Path, images: list[np.ndarray]) -> dict:
    """The backbone quantised to int8 (OpenVINO IR), calibrated on the crops it is fed (to_input)."""
    import nncf
    import openvino as ov

    from vision.embedding import to_input

    network = ov.Core().read_model(str(model))
    data = [to_input(im)[None] for im in images]
    quantized = nncf.quantize(network, nncf.Dataset(data), preset=nncf.QuantizationPreset.MIXED,
                              subset_size=len(data))
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    return {"model": str(model), "out": str(out), "calibration_images": len(data)}


NEGATIVE_SETS = (("label_recognition", "test"), ("eth80", "test"), ("shelves", "test"), ("cans", "test"),
                 ("kolektor", "test"))  # as station.detector_ladder (models/ may not import station/)
DEFECT_SETS = ("cans", "kolektor")


def _auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / max(len(pos) * len(neg), 1))


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise QuantizeError(f"{path}: not a readable image")
    return img


def confirmed_share(detector, files: list[Path]) -> float:
    """Share of images with a box at or above its class's calibrated threshold (the ladder's "with detection":
    a named defect, not an uncertain one)."""
    thresholds = getattr(detector, "class_thresholds", None) or {}
    hits = 0
    for path in files:
        det = detector.detect([_read(path)])[0]
        hits += any(float(s) >= thresholds.get(n, 0.0) for n, s in zip(det.names(), det.score))
    return round(hits / max(len(files), 1), 4)


def max_score_auroc(detector, defective: list[Path], good: list[Path]) -> float:
    """Image AUROC of the maximum box score, defective against undamaged (the ladder's real-defect rung)."""
    saved = detector.confidence
    detector.confidence = 0.001
    try:
        def top(files):
            return np.array([float(d.score.max()) if len(d) else 0.0
                             for d in (detector.detect([_read(p)])[0] for p in files)])
        return round(_auroc(top(defective), top(good)), 4)
    finally:
        detector.confidence = saved


def detector_figures(detector, heldout: Path | None, real: Path | None) -> dict:
    """mAP50 on the held-out renders and the real-photo rungs of the detector ladder for one engine."""
    from models.evaluate import evaluate
    from models.real_photos import images as real_images

    out: dict = {}
    if heldout is not None:
        report = evaluate(detector, heldout, "test")
        out["heldout_mAP50"] = round(report.map50, 4)
        out["heldout_mAP50_95"] = round(report.map50_95, 4)
    if real is not None:
        out["real_negatives_with_detection"] = {}
        for name, split in NEGATIVE_SETS:
            files = real_images(real, name, split, "good")
            if files:
                out["real_negatives_with_detection"][name] = confirmed_share(detector, files)
        out["real_defect_auroc"] = {}
        for name in DEFECT_SETS:
            bad, good = real_images(real, name, "test", "defective"), real_images(real, name, "test", "good")
            if bad and good:
                out["real_defect_auroc"][name] = max_score_auroc(detector, bad, good)
    return out


def gate_detector(model: Path, int8: Path, heldout: Path | None, real: Path | None,
                  also_default_precision: bool = True) -> dict:
    """The int8 model against the float ONNX engine; ``passed``: mAP50 loss <= DETECTOR_MAP50_MAX_LOSS."""
    from models.openvino_yolo import OpenVinoYoloDetector

    if heldout is None or not (heldout / "images" / "test").is_dir():
        raise QuantizeError(f"held-out set {heldout} not found: `station dataset generate build/testsets/heldout "
                            f"--train 0 --val 0 --test 200 --seed 1000`")
    engines = {"onnx_fp32": OnnxYoloDetector(model).load(),
               "openvino_int8": OpenVinoYoloDetector(model, precision="f32", int8_trunk=int8).load()}
    if also_default_precision:
        engines["openvino_default"] = OpenVinoYoloDetector(model, precision="default").load()
    figures = {name: detector_figures(det, heldout, real) for name, det in engines.items()}
    base = figures["onnx_fp32"]["heldout_mAP50"]
    loss = {name: round(base - f["heldout_mAP50"], 4) for name, f in figures.items() if name != "onnx_fp32"}
    return {"model": str(model), "int8": str(int8), "heldout": str(heldout), "figures": figures,
            "mAP50_loss": loss, "max_loss": DETECTOR_MAP50_MAX_LOSS,
            "passed": loss["openvino_int8"] <= DETECTOR_MAP50_MAX_LOSS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    det = sub.add_parser("detector", help="quantise the detector's trunk")
    det.add_argument("--model", type=Path, default=Path("models/weights/defects.onnx"))
    det.add_argument("--out", type=Path, required=True)
    det.add_argument("--real", type=Path, action="append", default=None)
    det.add_argument("--renders", type=int, default=120)
    det.add_argument("--ignore-head", action="store_true", help="keep the Detect head in float")
    bb = sub.add_parser("backbone", help="quantise the identity/difference backbone")
    bb.add_argument("--model", type=Path, default=Path("models/weights/backbone.onnx"))
    bb.add_argument("--out", type=Path, required=True)
    bb.add_argument("--real", type=Path, action="append", default=None)
    bb.add_argument("--renders", type=int, default=60)
    gate = sub.add_parser("gate-detector", help="int8 vs float: held-out mAP50 and the real-photo rungs")
    gate.add_argument("--model", type=Path, default=Path("models/weights/defects.onnx"))
    gate.add_argument("--int8", type=Path, required=True)
    gate.add_argument("--heldout", type=Path, default=Path("build/testsets/heldout"))
    gate.add_argument("--real", type=Path, default=None)
    for p in (det, bb, gate):
        p.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        if not args.model.is_file():
            raise QuantizeError(f"model {args.model} not found: give --model an ONNX file")
        if args.command == "gate-detector":
            if not args.int8.is_file():
                raise QuantizeError(f"int8 model {args.int8} not found: make it with `python -m models.quantize "
                                    f"detector --out {args.int8}`")
            result = gate_detector(args.model, args.int8, args.heldout, args.real)
        else:
            if args.out.suffix != ".xml":
                raise QuantizeError(f"--out {args.out}: give an OpenVINO IR path ending in .xml")
            real = args.real if args.real is not None else [Path("build/real/label_recognition/train/good")]
            real = [r for r in real if r.is_dir()] if args.real is None else real  # the default only if present
            images = calibration_images(real, args.renders, Path("build/bench_images"))
            result = (quantize_detector(args.model, args.out, images, args.ignore_head) if args.command == "detector"
                      else quantize_backbone(args.model, args.out, images))
    except (QuantizeError, ModelError) as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"{exc.name or exc}: int8 needs the optional extras: pip install openvino nncf", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
