"""The YOLO Detect head decoded in numpy, only where a class clears the confidence threshold.

An ultralytics export ends in a DFL softmax over every anchor, a box decode and a concat of all levels. On
the 2-core station that tail costs about a tenth of the whole run (the Softmax over a non-last axis alone
~3.4 of ~39 ms for three 416x256 views, measured with ORT's profiler), although NMS then keeps a few dozen
anchors. So the graph is cut after the head's last convolutions (per level: 4 x reg_max box logits and
nc class logits), and the same maths runs here on the anchors whose best class logit clears the threshold.
The boxes are those of the full graph up to float rounding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Final convolutions of ultralytics' Detect head: cv2 (box distribution) and cv3 (class logits), per level.
_HEAD_CONV = re.compile(r"/cv(?P<branch>[23])\.(?P<level>\d+)/cv[23]\.(?P=level)\.2/Conv$")


@dataclass(frozen=True, slots=True)
class HeadGraph:
    """The detector cut after its head: ``model`` (serialized ONNX) outputs box, cls per level, in order."""

    model: bytes
    levels: int
    reg_max: int


def cut_detect_head(path: Path, n_classes: int) -> HeadGraph | None:
    """The model cut after its Detect head's last convolutions, or None when the graph is not an ultralytics
    Detect head of that shape (a custom model then runs whole, decoded from its (4 + nc, N) output)."""
    import onnx
    from onnx.utils import Extractor

    model = onnx.load(str(path))
    weights = {w.name: tuple(w.dims) for w in model.graph.initializer}
    found: dict[tuple[int, str], tuple[str, int]] = {}
    for node in model.graph.node:
        match = _HEAD_CONV.search(node.name) if node.op_type == "Conv" else None
        if match and len(node.input) >= 2 and node.input[1] in weights:
            found[(int(match["level"]), match["branch"])] = (node.output[0], weights[node.input[1]][0])
    levels = sorted({level for level, _ in found})
    if not levels or levels != list(range(len(levels))) or len(found) != 2 * len(levels):
        return None
    box_channels = {found[(lv, "2")][1] for lv in levels}
    cls_channels = {found[(lv, "3")][1] for lv in levels}
    if cls_channels != {n_classes} or len(box_channels) != 1 or next(iter(box_channels)) % 4:
        return None
    outputs = [found[(lv, branch)][0] for lv in levels for branch in ("2", "3")]
    cut = Extractor(model).extract_model([i.name for i in model.graph.input], outputs)
    return HeadGraph(cut.SerializeToString(), len(levels), next(iter(box_channels)) // 4)


def decode_head(outputs: list[np.ndarray], k: int, reg_max: int, input_hw: tuple[int, int], conf: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates of image ``k`` from the cut head's outputs (box, cls per level, each (B, C, h, w)).

    Returns (xyxy in network-input pixels (K, 4), class ids (K,), scores (K,)) of the anchors whose best
    class score exceeds ``conf``; ultralytics' rule: best class only, sigmoid score, DFL expectation of the
    four side distances (left, top, right, bottom) from the anchor centre, times the level's stride."""
    # sigmoid(x) > conf  <=>  x > logit(conf): the sigmoid runs on the few candidates only.
    threshold = np.log(conf / (1.0 - conf)) if 0.0 < conf < 1.0 else (-np.inf if conf <= 0.0 else np.inf)
    bins = np.arange(reg_max, dtype=np.float32)
    boxes, ids, scores = [], [], []
    for lv in range(len(outputs) // 2):
        box, cls = outputs[2 * lv][k], outputs[2 * lv + 1][k]
        nc, h, w = cls.shape
        logits = cls.reshape(nc, h * w)
        best = logits.argmax(axis=0)
        best_logit = np.take_along_axis(logits, best[None], axis=0)[0]
        idx = np.flatnonzero(best_logit > threshold)
        if idx.size == 0:
            continue
        dist = box.reshape(4, reg_max, h * w)[:, :, idx]
        dist = np.exp(dist - dist.max(axis=1, keepdims=True))
        dist = (dist * bins[None, :, None]).sum(axis=1) / dist.sum(axis=1)  # (4, K): l, t, r, b in cells
        stride_y, stride_x = input_hw[0] / h, input_hw[1] / w
        ax, ay = idx % w + 0.5, idx // w + 0.5
        boxes.append(np.stack([(ax - dist[0]) * stride_x, (ay - dist[1]) * stride_y,
                               (ax + dist[2]) * stride_x, (ay + dist[3]) * stride_y], axis=1))
        ids.append(best[idx])
        scores.append(1.0 / (1.0 + np.exp(-best_logit[idx])))
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.int64), np.zeros((0,), np.float32)
    return (np.concatenate(boxes).astype(np.float32), np.concatenate(ids),
            np.concatenate(scores).astype(np.float32))
