"""Camera backends: synthetic (renders staged returns), folder replay, and OpenCV VideoCapture."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from station.domain import Frame
from vision.catalogue import SAMPLE_VIEWS, sample_sku
from vision.synth import SceneStyle, render_item


class CameraError(RuntimeError):
    """The camera could not deliver a frame; the message says what to check."""


class Camera(Protocol):
    def capture(self, view: str) -> Frame: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class StagedItem:
    """What physically lies on the synthetic bench: which SKU it looks like, and its defects per view."""

    looks_like_sku: str
    defects: dict[str, tuple[str, ...]]
    seed: int


class SyntheticCamera:
    """Renders the staged item on a calibrated neutral bench (grey 200) with real lighting variation."""

    BENCH_GREY = 200

    def __init__(self, width: int = 640, height: int = 480, seed: int = 7) -> None:
        self.size = (width, height)
        self.seed = seed
        self._staged: StagedItem | None = None
        self._shots = 0

    def stage(self, item: StagedItem) -> None:
        self._staged = item

    def capture(self, view: str) -> Frame:
        if self._staged is None:
            raise CameraError("nothing on the bench: stage an item before capturing")
        s = self._staged
        look = sample_sku(s.looks_like_sku).look
        view_index = SAMPLE_VIEWS.index(view) if view in SAMPLE_VIEWS else len(SAMPLE_VIEWS)
        rng = np.random.default_rng([self.seed, s.seed, view_index])
        style = SceneStyle(size=self.size, bench_grey=self.BENCH_GREY, perspective=0.03, lighting_jitter=0.5,
                           blur_max=0.6, noise_max=3.0, jpeg_min=85)
        item = render_item(rng, look, s.defects.get(view, ()), style, view)
        self._shots += 1
        return Frame(item.image, view, f"synthetic:{s.looks_like_sku}#{s.seed}", time.time())

    def close(self) -> None:
        self._staged = None


class FolderCamera:
    """Replays images from a folder in name order; each capture takes the next file."""

    def __init__(self, path: Path, pattern: str = "*.jpg", loop: bool = True) -> None:
        self.path, self.pattern, self.loop = Path(path), pattern, loop
        self._files: list[Path] | None = None
        self._next = 0

    def capture(self, view: str) -> Frame:
        if self._files is None:
            if not self.path.is_dir():
                raise CameraError(f"camera folder {self.path} does not exist: check camera.path")
            self._files = sorted(self.path.glob(self.pattern))
            if not self._files:
                raise CameraError(f"no files matching {self.pattern!r} in {self.path}")
        if self._next >= len(self._files):
            if not self.loop:
                raise CameraError(f"camera folder {self.path} is exhausted ({len(self._files)} files)")
            self._next = 0
        path = self._files[self._next]
        self._next += 1
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise CameraError(f"{path} is not a readable image")
        return Frame(image, view, str(path), time.time())

    def close(self) -> None:
        self._files = None


class OpenCVCamera:
    """Device index, video file or RTSP URL, opened lazily on first capture (never in the constructor)."""

    def __init__(self, source: int | str = 0, width: int | None = None, height: int | None = None,
                 exposure: float | None = None, warmup_frames: int = 3) -> None:
        self.source, self.width, self.height, self.exposure = source, width, height, exposure
        self.warmup_frames = warmup_frames
        self._cap = None

    def _open(self):
        cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            raise CameraError(f"cannot open camera {self.source!r}: check the cable, the index or the URL")
        if self.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.exposure is not None:
            cap.set(cv2.CAP_PROP_EXPOSURE, self.exposure)
        for _ in range(self.warmup_frames):  # auto-exposure settles over the first frames
            cap.read()
        return cap

    def capture(self, view: str) -> Frame:
        if self._cap is None:
            self._cap = self._open()
        ok, image = self._cap.read()
        if not ok or image is None:
            self.close()
            raise CameraError(f"camera {self.source!r} delivered no frame: it was unplugged or the stream ended")
        return Frame(image, view, f"opencv:{self.source}", time.time())

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
