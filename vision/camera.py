"""Camera backends: synthetic (renders staged returns), folder replay, and OpenCV VideoCapture.

Every backend has ``capture(view)`` and ``close()``. A backend that can show a live picture between captures
also has ``preview(view=None) -> Frame | None`` (:class:`PreviewCamera`): a cheap frame that never changes
what the next ``capture`` returns; ``None`` means "no new picture now". The folder replay has none (each read
would take a file from the replay). Like ``capture``, call it only from the thread that owns the camera.
"""

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


class PreviewCamera(Camera, Protocol):
    def preview(self, view: str | None = None) -> Frame | None: ...


def can_preview(camera: object) -> bool:
    """Whether ``camera`` offers a live picture (a wrapper without ``preview`` simply has none)."""
    return callable(getattr(camera, "preview", None))


@dataclass(frozen=True, slots=True)
class StagedItem:
    """What physically lies on the synthetic bench: which SKU it looks like, and its defects per view."""

    looks_like_sku: str
    defects: dict[str, tuple[str, ...]]
    seed: int


class SyntheticCamera:
    """Renders the staged item on a calibrated neutral bench (grey 200) with real lighting variation."""

    BENCH_GREY = 200
    PREVIEW_SIZE = (400, 300)

    def __init__(self, width: int = 640, height: int = 480, seed: int = 7) -> None:
        self.size = (width, height)
        self.seed = seed
        self._staged: StagedItem | None = None
        self._shots = 0
        self._preview_base: tuple[StagedItem | None, str | None, np.ndarray] | None = None
        self._preview_rng = np.random.default_rng(seed)

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

    def preview(self, view: str | None = None) -> Frame:
        """The live picture: the staged item seen from ``view`` (the empty bench when nothing is staged), at
        PREVIEW_SIZE with fresh sensor noise and lamp flicker each call. Captures are unaffected (the preview
        has its own random stream, so its framing may differ a little from the capture's).

        The scene is rendered once per (item, view) and only the noise is redrawn: a full render costs ~80 ms
        at capture size on a loaded bench PC, the noise a few ms, so ~10 fps stays cheap."""
        s = self._staged
        base = self._preview_base
        if base is None or base[0] is not s or base[1] != view:
            w, h = self.PREVIEW_SIZE
            if s is None:
                image = np.full((h, w, 3), self.BENCH_GREY, np.uint8)
            else:
                look = sample_sku(s.looks_like_sku).look
                key = view or SAMPLE_VIEWS[0]
                view_index = SAMPLE_VIEWS.index(key) if key in SAMPLE_VIEWS else len(SAMPLE_VIEWS)
                rng = np.random.default_rng([self.seed, s.seed, view_index])
                style = SceneStyle(size=(w, h), bench_grey=self.BENCH_GREY, perspective=0.03, lighting_jitter=0.5,
                                   blur_max=0.0, noise_max=0.0, jpeg_min=95)
                image = render_item(rng, look, s.defects.get(key, ()), style, key).image
            base = self._preview_base = (s, view, image)
        rng = self._preview_rng
        grain = rng.normal(0.0, 2.0, base[2].shape[:2] + (1,)).astype(np.float32)
        image = np.clip(base[2].astype(np.float32) * float(rng.uniform(0.98, 1.02)) + grain, 0, 255).astype(np.uint8)
        source = f"synthetic-preview:{s.looks_like_sku}#{s.seed}" if s is not None else "synthetic-preview:empty"
        return Frame(image, view or "live", source, time.time())

    def close(self) -> None:
        self._staged = None
        self._preview_base = None


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
                 exposure: float | None = None, warmup_frames: int = 3, focus: float | None = None,
                 autofocus: bool | None = None) -> None:
        self.source, self.width, self.height, self.exposure = source, width, height, exposure
        self.warmup_frames = warmup_frames
        self.focus, self.autofocus = focus, autofocus
        self.unsupported: list[str] = []  # settings this backend/device refused (a file or RTSP stream has none)
        self._cap = None
        self._triggered_at: float | None = None

    @property
    def is_open(self) -> bool:
        """True once a capture or preview opened the device and it is still open (it opens lazily)."""
        return self._cap is not None and self._cap.isOpened()

    @property
    def live_source(self) -> bool:
        """A device or a network stream; a video file is not live (every read consumes one of its frames)."""
        return isinstance(self.source, int) or str(self.source).startswith(("rtsp://", "http://", "https://",
                                                                            "/dev/"))

    def _open(self):
        cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            raise CameraError(f"cannot open camera {self.source!r}: check the cable, the index or the URL")
        if self.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        self.unsupported = []
        for name, prop, value in self._settings():
            if not cap.set(prop, value):
                self.unsupported.append(name)
        for _ in range(self.warmup_frames):  # auto-exposure settles over the first frames
            cap.read()
        return cap

    def _settings(self) -> list[tuple[str, int, float]]:
        out = []
        if self.exposure is not None:
            out.append(("exposure", cv2.CAP_PROP_EXPOSURE, float(self.exposure)))
        if self.autofocus is not None:
            out.append(("autofocus", cv2.CAP_PROP_AUTOFOCUS, 1.0 if self.autofocus else 0.0))
        if self.focus is not None:
            out.append(("focus", cv2.CAP_PROP_FOCUS, float(self.focus)))
        return out

    def set_exposure_focus(self, exposure: float | None = None, focus: float | None = None) -> list[str]:
        """Change exposure and/or focus now (or at the next open); returns the names the device refused."""
        if exposure is not None:
            self.exposure = exposure
        if focus is not None:
            self.focus, self.autofocus = focus, False
        if self._cap is None:
            return []
        refused = [name for name, prop, value in self._settings() if not self._cap.set(prop, value)]
        self.unsupported = refused
        return refused

    def trigger(self) -> float:
        """Latch a frame now (the photo-eye moment) with ``grab()``; ``capture`` then decodes that frame. Returns
        the trigger time, which becomes the frame's timestamp."""
        if self._cap is None:
            self._cap = self._open()
        at = time.time()
        if not self._cap.grab():
            self.close()
            raise CameraError(f"camera {self.source!r} delivered no frame: it was unplugged or the stream ended")
        self._triggered_at = at
        return at

    def capture(self, view: str) -> Frame:
        if self._cap is None:
            self._cap = self._open()
        if self._triggered_at is not None:  # the frame latched by trigger()
            at, self._triggered_at = self._triggered_at, None
            ok, image = self._cap.retrieve()
        else:
            at = time.time()
            ok, image = self._cap.read()
        if not ok or image is None:
            self.close()
            raise CameraError(f"camera {self.source!r} delivered no frame: it was unplugged or the stream ended")
        return Frame(image, view, f"opencv:{self.source}", at)

    def preview(self, view: str | None = None) -> Frame | None:
        """The newest frame of a live source (opens the device if needed). ``None`` for a video file, whose
        frames belong to the captures, and while a triggered frame waits for its ``capture``."""
        if not self.live_source or self._triggered_at is not None:
            return None
        return self.capture(view or "live")

    def close(self) -> None:
        self._triggered_at = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None
