"""The YOLO Detect head finished in numpy, only where a class clears the confidence threshold.

An ultralytics export computes, for every anchor of every level, a box branch (cv2: two 3x3 convolutions and
a 1x1 giving 4 x reg_max distance logits), a DFL softmax, a box decode and a concat of all levels. NMS then
keeps the few anchors whose best class score clears the threshold: on the bench's camera frames a median of
1 and at most 16 per image, out of 2,184 at 416x256. On the 2-core station that tail is about a fifth of the
run (ORT's profiler, three 416x256 views: box-branch convolutions ~5.7 ms, the DFL Softmax over a non-last
axis ~3.4 ms, of ~39 ms).

So the graph is cut: the trunk runs in ONNX Runtime up to each level's head input and class logits; the box
branch, the DFL and the decode run here for the candidate anchors only, with the model's own weights (a 5x5
patch of the head input per candidate). Every box the whole graph would output is computed, the same maths
up to float rounding. When a call has many candidates (a low threshold, as in `station eval`), the box
branch runs as its own small ORT graph over the whole map instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# Convolutions of ultralytics' Detect head: cv2 (box distribution) and cv3 (class logits), per level; the
# box branch is cv2.L.0 (3x3, SiLU), cv2.L.1 (3x3, SiLU), cv2.L.2 (1x1).
_HEAD_CONV = re.compile(r"/cv(?P<branch>[23])\.(?P<level>\d+)/cv[23]\.(?P=level)\.(?P<layer>[012])(/conv)?/Conv$")
# Above this many candidates per image, the box branch over the whole map (one ORT call) is cheaper than
# per-candidate patches (about 0.4 M multiply-adds each at level 0).
LAZY_CANDIDATES_PER_IMAGE = 48


@dataclass(frozen=True, slots=True)
class BoxBranch:
    """One level's box branch as matrices: 3x3 conv (pad 1), SiLU, 3x3 conv (pad 1), SiLU, 1x1 conv."""

    w1: np.ndarray  # (C * 9, c1), rows ordered (channel, ky, kx)
    b1: np.ndarray
    w2: np.ndarray  # (9 * c1, c2), rows ordered (ky, kx, channel)
    b2: np.ndarray
    w3: np.ndarray  # (c2, 4 * reg_max)
    b3: np.ndarray

    def logits_at(self, feature: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Box logits (4 * reg_max, K) at flat positions ``idx`` of the head input ``feature`` (C, h, w)."""
        c, h, w = feature.shape
        ys, xs = np.divmod(idx, w)
        padded = np.pad(feature, ((0, 0), (2, 2), (2, 2)))
        r = np.arange(5)
        patch = padded[:, ys[:, None, None] + r[None, :, None], xs[:, None, None] + r[None, None, :]]  # C,K,5,5
        # First conv at the 3x3 neighbours of each candidate: rows (k, i, j), columns (channel, u, v).
        cols = sliding_window_view(patch, (3, 3), axis=(2, 3)).transpose(1, 2, 3, 0, 4, 5)
        h1 = _silu(cols.reshape(len(idx) * 9, c * 9) @ self.w1 + self.b1).reshape(len(idx), 3, 3, -1)
        # The second conv pads its input with zeros: neighbours outside the map contribute nothing.
        ny, nx = ys[:, None] + np.arange(-1, 2), xs[:, None] + np.arange(-1, 2)
        inside = ((ny >= 0) & (ny < h))[:, :, None] & ((nx >= 0) & (nx < w))[:, None, :]
        h1 *= inside[..., None]
        h2 = _silu(h1.reshape(len(idx), -1) @ self.w2 + self.b2)
        return (h2 @ self.w3 + self.b3).T


def _silu(x: np.ndarray) -> np.ndarray:
    return x * (0.5 + 0.5 * np.tanh(0.5 * x))  # x * sigmoid(x), without exp overflow


@dataclass(frozen=True, slots=True)
class HeadGraph:
    """The detector cut before its box branch.

    ``trunk`` (serialized ONNX) outputs (head input, class logits) per level; ``box_graph`` maps the head
    inputs (``feature_names``) to box logits per level, for calls with many candidates."""

    trunk: bytes
    box_graph: bytes
    feature_names: tuple[str, ...]
    branches: tuple[BoxBranch, ...]
    reg_max: int


def _conv_attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _is_conv(node, kernel: int) -> bool:
    a = _conv_attrs(node)
    return (list(a.get("kernel_shape", [])) == [kernel, kernel] and a.get("group", 1) == 1
            and list(a.get("strides", [1, 1])) == [1, 1] and list(a.get("dilations", [1, 1])) == [1, 1]
            and list(a.get("pads", [0] * 4)) == [kernel // 2] * 4 and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"))


def cut_detect_head(path: Path, n_classes: int) -> HeadGraph | None:
    """The model cut before its Detect head's box branch, or None when the graph is not an ultralytics Detect
    head of this shape (a custom model then runs whole, decoded from its (4 + nc, N) output)."""
    import onnx
    from onnx import numpy_helper
    from onnx.utils import Extractor

    model = onnx.load(str(path))
    graph = model.graph
    weights = {w.name: w for w in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    convs: dict[tuple[int, str, int], object] = {}
    for node in graph.node:
        match = _HEAD_CONV.search(node.name) if node.op_type == "Conv" else None
        if match and len(node.input) == 3 and node.input[1] in weights and node.input[2] in weights:
            convs[(int(match["level"]), match["branch"], int(match["layer"]))] = node
    levels = sorted({key[0] for key in convs})
    if not levels or levels != list(range(len(levels))):
        return None

    def silu_input(conv) -> str | None:
        # The tensor that `conv` reads is SiLU(x) = Mul(x, Sigmoid(x)) of another conv's output x.
        mul = producer.get(conv.input[0])
        if mul is None or mul.op_type != "Mul":
            return None
        sig = producer.get(mul.input[1])
        ok = sig is not None and sig.op_type == "Sigmoid" and sig.input[0] == mul.input[0]
        return mul.input[0] if ok else None

    def array(name: str) -> np.ndarray:
        return numpy_helper.to_array(weights[name]).astype(np.float32)

    branches, features, boxes, classes = [], [], [], []
    for lv in levels:
        try:
            c0, c1, c2, cls = (convs[(lv, "2", 0)], convs[(lv, "2", 1)], convs[(lv, "2", 2)], convs[(lv, "3", 2)])
        except KeyError:
            return None
        if not (_is_conv(c0, 3) and _is_conv(c1, 3) and _is_conv(c2, 1)) or silu_input(c1) != c0.output[0] \
                or silu_input(c2) != c1.output[0] or array(cls.input[1]).shape[0] != n_classes:
            return None
        w1, w2, w3 = array(c0.input[1]), array(c1.input[1]), array(c2.input[1])
        if w3.shape[0] % 4:
            return None
        branches.append(BoxBranch(
            np.ascontiguousarray(w1.reshape(w1.shape[0], -1).T), array(c0.input[2]),
            np.ascontiguousarray(w2.transpose(2, 3, 1, 0).reshape(-1, w2.shape[0])), array(c1.input[2]),
            np.ascontiguousarray(w3.reshape(w3.shape[0], -1).T), array(c2.input[2])))
        features.append(c0.input[0])
        boxes.append(c2.output[0])
        classes.append(cls.output[0])
    reg_max = {b.w3.shape[1] // 4 for b in branches}
    if len(reg_max) != 1:
        return None
    trunk = Extractor(model).extract_model([i.name for i in graph.input],
                                           [t for pair in zip(features, classes) for t in pair])
    box_graph = Extractor(model).extract_model(features, boxes)
    return HeadGraph(trunk.SerializeToString(), box_graph.SerializeToString(), tuple(features),
                     tuple(branches), reg_max.pop())


def logit_threshold(conf: float) -> float:
    """sigmoid(x) > conf  <=>  x > logit(conf): the sigmoid then runs on the few candidates only."""
    if conf <= 0.0:
        return -np.inf
    if conf >= 1.0:
        return np.inf
    return float(np.log(conf / (1.0 - conf)))


def candidates(class_logits: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat positions, best class and its logit of the anchors of one level (nc, h, w) above ``threshold``."""
    logits = class_logits.reshape(class_logits.shape[0], -1)
    best = logits.argmax(axis=0)
    best_logit = np.take_along_axis(logits, best[None], axis=0)[0]
    idx = np.flatnonzero(best_logit > threshold)
    return idx, best[idx], best_logit[idx]


def dfl_boxes(box_logits: np.ndarray, idx: np.ndarray, level_hw: tuple[int, int], input_hw: tuple[int, int],
              reg_max: int) -> np.ndarray:
    """xyxy (K, 4) in network-input pixels from box logits (4 * reg_max, K) at flat positions ``idx``:
    the DFL expectation of the distances left, top, right, bottom from the anchor centre, times the stride."""
    h, w = level_hw
    dist = box_logits.reshape(4, reg_max, -1)
    dist = np.exp(dist - dist.max(axis=1, keepdims=True))
    dist = (dist * np.arange(reg_max, dtype=np.float32)[None, :, None]).sum(axis=1) / dist.sum(axis=1)
    stride_y, stride_x = input_hw[0] / h, input_hw[1] / w
    ax, ay = idx % w + 0.5, idx // w + 0.5
    return np.stack([(ax - dist[0]) * stride_x, (ay - dist[1]) * stride_y,
                     (ax + dist[2]) * stride_x, (ay + dist[3]) * stride_y], axis=1).astype(np.float32)


def decode_head(head: HeadGraph, outputs: list[np.ndarray], k: int, input_hw: tuple[int, int], conf: float,
                run_box_graph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates of image ``k`` from the trunk's outputs ((head input, class logits) per level, batched).

    Returns (xyxy in network-input pixels (K, 4), class ids (K,), scores (K,)): ultralytics' rule, best class
    only with its sigmoid score. ``run_box_graph(features)`` runs ``head.box_graph`` on one image's head
    inputs; it is called only when the image has many candidates."""
    threshold = logit_threshold(conf)
    found = [candidates(outputs[2 * lv + 1][k], threshold) for lv in range(len(head.branches))]
    box_maps = None
    if sum(len(idx) for idx, _, _ in found) > LAZY_CANDIDATES_PER_IMAGE:
        box_maps = run_box_graph({name: outputs[2 * lv][k:k + 1] for lv, name in enumerate(head.feature_names)})
    boxes, ids, scores = [], [], []
    for lv, (idx, best, best_logit) in enumerate(found):
        if idx.size == 0:
            continue
        feature = outputs[2 * lv][k]
        if box_maps is None:
            logits = head.branches[lv].logits_at(feature, idx)
        else:
            logits = box_maps[lv][0].reshape(box_maps[lv].shape[1], -1)[:, idx]
        boxes.append(dfl_boxes(logits, idx, feature.shape[1:], input_hw, head.reg_max))
        ids.append(best)
        scores.append((1.0 / (1.0 + np.exp(-best_logit))).astype(np.float32))
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.int64), np.zeros((0,), np.float32)
    return np.concatenate(boxes), np.concatenate(ids), np.concatenate(scores)
