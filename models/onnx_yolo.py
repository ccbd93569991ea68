"""ONNX Runtime YOLO detector (ultralytics export: output (B, 4 + nc, N), cx cy w h + sigmoided scores).

Reads class names, stride and input size from the model's metadata and thresholds from the model card
beside it. A model whose inputs, outputs or metadata do not fit is refused when it is loaded, with a
message that says what is wrong, never mid-inspection.

Thresholds: ``thresholds.confidence`` is the decode floor (every box at or above it is kept, so the boxes do
not depend on calibration); ``thresholds.per_class`` (optional, written by ``station model thresholds``, see
models/thresholds.py) holds each class's calibrated threshold, exposed as ``class_thresholds``: the pipeline
treats a box below its class's threshold as evidence for review, not as a named defect.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import cv2
import numpy as np

from models.yolo_head import HeadGraph, cut_detect_head, decode_head
from station.domain import Detections


class ModelError(ValueError):
    """The model file is missing or does not fit this engine."""


class Detector(Protocol):
    """What the pipeline needs from a detector backend."""

    class_names: tuple[str, ...]
    version: str

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]: ...


@dataclass(frozen=True, slots=True)
class ModelCard:
    classes: tuple[str, ...]
    input_size: tuple[int, int]
    confidence: float
    iou: float
    raw: dict
    per_class: dict[str, float] = field(default_factory=dict)  # calibrated thresholds; empty: none

    @classmethod
    def load(cls, path: Path) -> "ModelCard | None":
        import yaml

        if not path.exists():
            return None
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            th = data.get("thresholds", {})
            card = cls(tuple(data.get("classes", ())), tuple(data.get("input_size", (0, 0))),
                       float(th.get("confidence", 0.25)), float(th.get("iou", 0.45)), data)
            per_class = th.get("per_class")
        except (yaml.YAMLError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"model card {path} is not valid: {exc}") from None
        if per_class is None:
            return card
        return cls(card.classes, card.input_size, card.confidence, card.iou, data,
                   parse_per_class(per_class, card.classes, path))


def parse_per_class(per_class, classes: Sequence[str], path: Path) -> dict[str, float]:
    """A card's ``thresholds.per_class`` as {class: threshold}; ModelError naming the problem when it is not a
    mapping of known class names (``classes``, when given) to numbers in [0, 1]."""
    if not isinstance(per_class, dict):
        raise ModelError(f"model card {path}: thresholds.per_class must map class names to thresholds, "
                         f"got {type(per_class).__name__}")
    unknown = [str(k) for k in per_class if classes and str(k) not in classes]
    if unknown:
        raise ModelError(f"model card {path}: thresholds.per_class names unknown classes {unknown} "
                         f"(the model's classes: {list(classes)})")
    out: dict[str, float] = {}
    for name, value in per_class.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise ModelError(f"model card {path}: thresholds.per_class.{name} must be a number in [0, 1], "
                             f"got {value!r}")
        out[str(name)] = float(value)
    return out


@dataclass(frozen=True, slots=True)
class LetterboxParams:
    """How one image was fitted into the network input, to map boxes back."""

    gain: float
    pad_x: float
    pad_y: float


def letterbox_shape(h: int, w: int, size: tuple[int, int], stride: int | None) -> tuple[int, int]:
    """Network input shape for an h x w image: the full square ``size``, or with ``stride`` the smallest
    stride multiple that holds the resized image (ultralytics' ``auto`` letterbox for dynamic models)."""
    th, tw = size
    gain = min(th / h, tw / w)
    nw, nh = int(round(w * gain)), int(round(h * gain))
    if stride is None:
        return th, tw
    return nh + (th - nh) % stride, nw + (tw - nw) % stride


def letterbox_into(image: np.ndarray, out: np.ndarray, size: tuple[int, int]) -> LetterboxParams:
    """Resize keeping aspect into ``out`` (H, W, 3 uint8), centred on 114 grey like ultralytics.

    ``size`` is the square the gain is computed for; ``out`` may be smaller (a rectangular letterbox)."""
    h, w = image.shape[:2]
    th, tw = size
    oh, ow = out.shape[:2]
    gain = min(th / h, tw / w)
    nw, nh = int(round(w * gain)), int(round(h * gain))
    pad_x, pad_y = (ow - nw) / 2, (oh - nh) / 2
    left, top = int(round(pad_x - 0.1)), int(round(pad_y - 0.1))
    out[:] = 114
    resized = image if (nw, nh) == (w, h) else cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    out[top:top + nh, left:left + nw] = resized
    return LetterboxParams(gain, left, top)


def decode_predictions(pred: np.ndarray, conf: float, iou: float, params: LetterboxParams,
                       image_shape: tuple[int, int], max_det: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one image's (4 + nc, N) output: threshold, class-wise NMS, map back to image pixels.

    Returns (xyxy float32 (K, 4), class ids int32 (K,), scores float32 (K,)), best score first.
    """
    scores_all = pred[4:]
    class_ids = scores_all.argmax(axis=0)
    scores = scores_all[class_ids, np.arange(pred.shape[1])]
    keep = scores > conf
    if not keep.any():
        return _no_boxes()
    boxes = pred[:4, keep].T
    scores, class_ids = scores[keep], class_ids[keep]
    xyxy = np.empty_like(boxes)
    xyxy[:, 0] = boxes[:, 0] - boxes[:, 2] / 2
    xyxy[:, 1] = boxes[:, 1] - boxes[:, 3] / 2
    xyxy[:, 2] = boxes[:, 0] + boxes[:, 2] / 2
    xyxy[:, 3] = boxes[:, 1] + boxes[:, 3] / 2
    return nms_to_image(xyxy, class_ids, scores, conf, iou, params, image_shape, max_det)


def _no_boxes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.int32), np.zeros((0,), np.float32)


def nms_to_image(xyxy: np.ndarray, class_ids: np.ndarray, scores: np.ndarray, conf: float, iou: float,
                 params: LetterboxParams, image_shape: tuple[int, int], max_det: int = 300
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class-wise NMS of candidates in network-input pixels, then map them back to image pixels."""
    if len(scores) == 0:
        return _no_boxes()
    # Class-wise NMS in one call: offset each class far apart so boxes of different classes never overlap.
    offset = class_ids[:, None].astype(np.float32) * 7680.0
    shifted = xyxy + offset
    wh = shifted[:, 2:] - shifted[:, :2]
    idx = cv2.dnn.NMSBoxes(np.concatenate([shifted[:, :2], wh], 1).tolist(), scores.tolist(), conf, iou)
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)[:max_det]
    xyxy, class_ids, scores = xyxy[idx], class_ids[idx], scores[idx]
    xyxy[:, [0, 2]] -= params.pad_x
    xyxy[:, [1, 3]] -= params.pad_y
    xyxy /= params.gain
    h, w = image_shape
    xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, w)  # fancy indexing copies: assign back
    xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, h)
    order = np.argsort(-scores, kind="stable")
    return xyxy[order].astype(np.float32), class_ids[order].astype(np.int32), scores[order].astype(np.float32)


def _parse_meta_literal(value: str, what: str, path: Path):
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise ModelError(f"{path}: metadata {what!r} is not readable ({value[:60]!r})") from None


class OnnxYoloDetector:
    """YOLOv8-style detector on ONNX Runtime, tuned for small CPUs.

    The runtime is one method, ``_open_graph``: an engine on another runtime (models/openvino_yolo.py)
    overrides it and keeps the model checks, the letterbox, the head cut and the decode of this class."""

    engine = "onnxruntime"  # which runtime runs the network (logged at boot, printed by `station bench detector`)

    def __init__(self, model_path: Path, confidence: float | None = None, iou: float | None = None,
                 threads: int = 2, input_size: int | None = None, cut_head: bool = True) -> None:
        self.model_path = Path(model_path)
        self.cut_head = cut_head  # decode the Detect head in numpy on candidates only (see models.yolo_head)
        self._head: HeadGraph | None = None
        self._conf_override, self._iou_override, self.threads = confidence, iou, threads
        self._session = None
        self.class_names: tuple[str, ...] = ()
        self.input_size: tuple[int, int] = (0, 0)
        self.version = self.model_path.stem
        self.confidence = confidence if confidence is not None else 0.25  # decode floor
        self.iou = iou if iou is not None else 0.45
        # Calibrated per-class thresholds from the card (thresholds.per_class); empty: every decoded box counts.
        self.class_thresholds: dict[str, float] = {}
        self._fixed_batch: int | None = None
        self._size_override = input_size

    def load(self) -> "OnnxYoloDetector":
        """Open the session and check the model fits; raises ModelError with a clear message."""
        import onnxruntime as ort

        path = self.model_path
        if not path.exists():
            raise ModelError(f"model file {path} not found: set detector.model in the config to an ONNX file")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types for corrupt files
            raise ModelError(f"{path} is not a loadable ONNX model: {str(exc).splitlines()[0][:200]}") from None
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelError(f"{path}: expected one image input (B, 3, H, W), got {[i.shape for i in inputs]}")
        meta = session.get_modelmeta().custom_metadata_map
        if "names" not in meta:
            raise ModelError(f"{path}: metadata has no 'names' (class list); export it with ultralytics")
        names = _parse_meta_literal(meta["names"], "names", path)
        if isinstance(names, dict):
            names = [names[k] for k in sorted(names)]
        self.class_names = tuple(str(n) for n in names)
        imgsz = _parse_meta_literal(meta.get("imgsz", "None"), "imgsz", path)
        shape = inputs[0].shape
        if isinstance(shape[2], int) and isinstance(shape[3], int):
            self.input_size = (shape[2], shape[3])
        elif isinstance(imgsz, (list, tuple)) and len(imgsz) == 2:
            self.input_size = (int(imgsz[0]), int(imgsz[1]))
        else:
            raise ModelError(f"{path}: input size unknown (no fixed input shape and no 'imgsz' metadata)")
        self._fixed_batch = shape[0] if isinstance(shape[0], int) else None
        out_shape = outputs[0].shape
        expected = 4 + len(self.class_names)
        if len(out_shape) != 3 or (isinstance(out_shape[1], int) and out_shape[1] != expected):
            raise ModelError(f"{path}: output {out_shape} does not fit a YOLO detector with "
                             f"{len(self.class_names)} classes (expected (B, {expected}, N))")
        card = ModelCard.load(path.with_suffix(".yaml"))
        if card is not None:
            if card.classes and card.classes != self.class_names:
                raise ModelError(f"{path}: model card classes {list(card.classes)} differ from the model's "
                                 f"metadata {list(self.class_names)}")
            self.confidence = self._conf_override if self._conf_override is not None else card.confidence
            self.iou = self._iou_override if self._iou_override is not None else card.iou
            self.version = f"{card.raw.get('name', path.stem)}@{card.raw.get('training', {}).get('date', '?')}"
            # Checked against the model's own classes too (a card without a class list).
            self.class_thresholds = parse_per_class(card.per_class, self.class_names, path.with_suffix(".yaml"))
        self._input_name = inputs[0].name
        self._head = cut_detect_head(path, len(self.class_names)) if self.cut_head else None
        self._box_session = None  # the head's box branch over whole maps, opened on first need
        self._opts = opts
        if self._head is not None:
            session = self._open_graph(self._head.trunk)
            from threadpoolctl import ThreadpoolController

            # numpy's BLAS runs the head's small per-candidate products on one thread: its worker threads would
            # otherwise spin beside ONNX Runtime's on the same two cores (side by side: 56 instead of 40 ms for
            # a 1080p item).
            self._blas = ThreadpoolController()
        else:
            session = self._whole_graph(path, session)
        self._session = session
        stride = _parse_meta_literal(meta.get("stride", "32"), "stride", path)
        # A model with dynamic height/width gets a rectangular letterbox (less padding, less work), exactly
        # as ultralytics feeds it; a fixed-shape model gets the full square.
        self.stride = int(stride) if not (isinstance(shape[2], int) and isinstance(shape[3], int)) else None
        self._buffers: dict[tuple[int, int], np.ndarray] = {}  # per input shape, reused between calls
        if self._size_override is None and card is not None and self.stride is not None:
            # The card may recommend a larger inference size than the training size (measured on camera frames).
            inference = card.raw.get("inference_size")
            if isinstance(inference, int) and inference >= 32:
                self._size_override = inference
        if self._size_override is not None:
            if self.stride is None and self._size_override != self.input_size[0]:
                raise ModelError(f"{path}: fixed input {self.input_size}; input_size {self._size_override} "
                                 f"needs a model exported with dynamic axes")
            self.input_size = (self._size_override, self._size_override)
        return self

    def _buffer_for(self, shape: tuple[int, int], n: int) -> np.ndarray:
        buf = self._buffers.get(shape)
        if buf is None or buf.shape[0] < n:
            buf = self._buffers[shape] = np.full((max(n, 4), *shape, 3), 114, np.uint8)
        return buf

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._fixed_batch is None or self._fixed_batch == len(batch):
            return self._session.run(None, {self._input_name: batch})
        runs = [self._session.run(None, {self._input_name: batch[i:i + 1]}) for i in range(len(batch))]
        return [np.concatenate(parts) for parts in zip(*runs)]

    def _open_graph(self, model: bytes | str):
        """A runnable graph (``run(None, feeds) -> outputs in graph order``) of serialized ONNX or a path."""
        import onnxruntime as ort

        return ort.InferenceSession(model, self._opts, providers=["CPUExecutionProvider"])

    def _whole_graph(self, path: Path, checked_session):
        """The graph that runs when the head is not cut: here the session the checks already opened."""
        return checked_session

    def _run_box_graph(self, features: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self._box_session is None:
            self._box_session = self._open_graph(self._head.box_graph)
        return self._box_session.run(None, features)

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect on all views of an item: views of the same size go through in one batched call."""
        if self._session is None:
            self.load()
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(letterbox_shape(*img.shape[:2], self.input_size, self.stride), []).append(i)
        out: list[Detections | None] = [None] * len(images)
        for shape, idxs in groups.items():
            buf = self._buffer_for(shape, len(idxs))
            params = [letterbox_into(images[i], buf[k], self.input_size) for k, i in enumerate(idxs)]
            # BGR HWC uint8 -> RGB CHW float32 in [0, 1], for the whole group at once.
            batch = np.ascontiguousarray(buf[:len(idxs), :, :, ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
            batch *= 1.0 / 255.0
            outputs = self._run(batch)
            for k, i in enumerate(idxs):
                if self._head is not None:
                    with self._blas.limit(limits=1, user_api="blas"):
                        cand = decode_head(self._head, outputs, k, shape, self.confidence, self._run_box_graph)
                    xyxy, cls, sc = nms_to_image(*cand, self.confidence, self.iou, params[k], images[i].shape[:2])
                else:
                    xyxy, cls, sc = decode_predictions(outputs[0][k], self.confidence, self.iou, params[k],
                                                       images[i].shape[:2])
                out[i] = Detections(xyxy, cls, sc, self.class_names)
        return out  # type: ignore[return-value]
