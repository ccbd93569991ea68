"""The YOLO detector on OpenVINO (an optional extra: ``pip install openvino``).

Everything but the runtime is the ONNX engine's (models/onnx_yolo.py): the model checks and metadata, the
card's thresholds, the rectangular letterbox, the head cut (the trunk runs here, the box branch on candidates
in numpy) and the decode. OpenVINO reads the ONNX graph directly at load, so nothing is converted ahead or
shipped beside the model; ``cache_dir`` (under the station's data dir at boot) keeps OpenVINO's compiled blobs.

Precision: ``"f32"`` (the default) forces full precision: boxes and scores agree with ONNX Runtime to float
rounding. ``"default"`` lets OpenVINO pick the CPU's native inference precision (bf16 on CPUs with AMX or
AVX512-BF16, f32 elsewhere): 2-3x faster on such a CPU, mAP50 unchanged on the held-out renders, but single
scores move (a thin seal_broken box 0.70 -> 0.44 in the demo), so it is opt-in. `station bench detector`
measures both side by side with their agreement with the ONNX engine.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path

import numpy as np

from models.onnx_yolo import ModelError, OnnxYoloDetector

PRECISIONS = ("default", "f32", "bf16", "f16")
_LOG = logging.getLogger(__name__)


def openvino_available() -> bool:
    """Whether the optional OpenVINO runtime is installed (checked without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def compile_config(threads: int, precision: str, cache_dir: Path | None) -> dict:
    """OpenVINO CPU properties for a latency-bound station: ``threads`` streams' worth of threads, one request
    at a time, and the precision asked for ("default": the CPU plugin's own choice)."""
    if precision not in PRECISIONS:
        raise ModelError(f"OpenVINO precision {precision!r} unknown: use one of {', '.join(PRECISIONS)}")
    config: dict = {"INFERENCE_NUM_THREADS": int(threads), "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    if precision != "default":
        config["INFERENCE_PRECISION_HINT"] = precision
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
    return config


def int8_path(model_path: Path) -> Path:
    """Where the int8 variant of a model sits: ``defects.onnx`` -> ``defects.int8.xml`` (with its .bin)."""
    return Path(model_path).with_suffix(".int8.xml")


class OpenVinoGraph:
    """One compiled OpenVINO model called like an ONNX Runtime session: ``run(None, feeds)`` returns the outputs
    in graph order. One infer request, guarded by a lock: a request is not safe to share between threads."""

    def __init__(self, compiled) -> None:
        self._compiled = compiled
        self._outputs = list(compiled.outputs)
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()

    def run(self, output_names, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            # share_outputs=False (the default) copies the results out of the request's buffers, so the next
            # call cannot overwrite what the caller is still decoding.
            result = self._request.infer(feeds, share_inputs=True)
            return [np.asarray(result[o]) for o in self._outputs]


def open_openvino(model: bytes | str | Path, threads: int, precision: str, cache_dir: Path | None,
                  what: str) -> OpenVinoGraph:
    """Read an ONNX graph (serialized bytes or a file) into OpenVINO and compile it for the CPU; ModelError with
    the reason when OpenVINO is missing or cannot read it."""
    try:
        import openvino as ov
    except ImportError:
        raise ModelError("OpenVINO is not installed: `pip install openvino`, or use type = \"onnx\" "
                         "(or \"auto\", which falls back to ONNX Runtime)") from None
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    core = ov.Core()
    try:
        network = core.read_model(model if isinstance(model, bytes) else str(model))
        compiled = core.compile_model(network, "CPU", compile_config(threads, precision, cache_dir))
    except ModelError:
        raise
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
        raise ModelError(f"{what}: OpenVINO cannot compile it: {str(exc).splitlines()[0][:200]}") from None
    return OpenVinoGraph(compiled)


class OpenVinoYoloDetector(OnnxYoloDetector):
    """The ONNX engine with its network on OpenVINO's CPU plugin."""

    engine = "openvino"

    def __init__(self, model_path: Path, confidence: float | None = None, iou: float | None = None,
                 threads: int = 2, input_size: int | None = None, cut_head: bool = True,
                 precision: str = "f32", cache_dir: Path | None = None, int8_trunk: Path | None = None) -> None:
        super().__init__(model_path, confidence, iou, threads, input_size, cut_head)
        if precision not in PRECISIONS:
            raise ModelError(f"OpenVINO precision {precision!r} unknown: use one of {', '.join(PRECISIONS)}")
        self.precision = precision
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        # An int8 trunk (models/quantize.py: the cut trunk quantised with NNCF, OpenVINO IR) runs in place of
        # the float one; the checks, the card and the box branch's weights stay the float model's.
        self.int8_trunk = None if int8_trunk is None else Path(int8_trunk)

    def _open_graph(self, model: bytes | str):
        if self.int8_trunk is not None and self._head is not None and model is self._head.trunk:
            if not self.int8_trunk.is_file():
                raise ModelError(f"int8 trunk {self.int8_trunk} not found: make it with `python -m models.quantize "
                                 f"detector`")
            model = str(self.int8_trunk)
        return open_openvino(model, self.threads, self.precision, self.cache_dir, str(self.model_path))

    def _whole_graph(self, path: Path, checked_session):
        # The checks ran on an ONNX Runtime session; without a head cut the whole graph runs here instead.
        return self._open_graph(str(path))


def make_engine_detector(engine: str, model_path: Path, confidence: float | None = None, iou: float | None = None,
                         threads: int = 2, input_size: int | None = None, precision: str = "f32",
                         cache_dir: Path | None = None, log: logging.Logger | None = None,
                         int8: bool = False) -> OnnxYoloDetector:
    """A loaded detector on ``engine``: "onnx", "openvino", or "auto" (OpenVINO where it is installed, ONNX
    Runtime otherwise). ``int8``: on OpenVINO, the int8 trunk shipped beside the model (``int8_path``) when
    there is one. Logs one line saying which runtime runs it and why."""
    log = log or _LOG
    if engine == "auto":
        chosen = "openvino" if openvino_available() else "onnx"
        why = "OpenVINO is installed" if chosen == "openvino" else "OpenVINO is not installed (pip install openvino)"
    elif engine in ("onnx", "openvino"):
        chosen, why = engine, f"detector.type = {engine!r}"
    else:
        raise ModelError(f"detector engine {engine!r} unknown: use onnx, openvino or auto")
    if chosen == "openvino":
        trunk = int8_path(model_path) if int8 else None
        if trunk is not None and not trunk.is_file():
            log.warning("detector: no int8 variant %s beside the model; running it in float", trunk.name)
            trunk = None
        # The int8 graph's float remainder runs fastest in f32 (measured: bf16 there is slower than f32).
        precision = "f32" if trunk is not None and precision == "default" else precision
        detector = OpenVinoYoloDetector(model_path, confidence, iou, threads, input_size, precision=precision,
                                        cache_dir=cache_dir, int8_trunk=trunk).load()
        log.info("detector engine: OpenVINO (%s, precision %s, %d threads) for %s; %s",
                 "int8" if trunk is not None else "float", precision, threads, Path(model_path).name, why)
    else:
        detector = OnnxYoloDetector(model_path, confidence, iou, threads, input_size).load()
        log.info("detector engine: ONNX Runtime (%d threads) for %s; %s", threads, Path(model_path).name, why)
    return detector
