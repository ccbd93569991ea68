"""OpenCVCamera on a real video file written by cv2.VideoWriter: reads, triggered capture, settings a file
does not have, the end of the stream; a code read from a triggered frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vision.camera import CameraError, OpenCVCamera
from vision.scanner import FrameScanner, Symbology, render_code

N_FRAMES = 6


def level(i: int) -> int:
    return 30 + 30 * i


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """Frame i is grey level 30+30i with a QR code saying 'frame-i' in its corner (MJPG in AVI)."""
    path = tmp_path_factory.mktemp("video") / "line.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    assert writer.isOpened(), "OpenCV cannot write MJPG/AVI here"
    for i in range(N_FRAMES):
        img = np.full((240, 320, 3), level(i), np.uint8)
        code = render_code(f"frame-{i}", Symbology.QR, 3)
        img[10:10 + code.shape[0], 10:10 + code.shape[1]] = code[:, :, None]
        writer.write(img)
    writer.release()
    return path


def frame_index(image: np.ndarray) -> int:
    return round((float(np.median(image[-60:, -60:])) - 30) / 30)


def test_a_video_file_is_an_opencv_source_read_in_order_until_it_ends(video):
    cam = OpenCVCamera(str(video), warmup_frames=1)
    try:
        first = cam.capture("top")
        assert first.image.shape == (240, 320, 3) and first.view == "top" and first.source == f"opencv:{video}"
        assert frame_index(first.image) == 1  # frame 0 went to the warm-up
        assert [frame_index(cam.capture("top").image) for _ in range(N_FRAMES - 2)] == [2, 3, 4, 5]
        with pytest.raises(CameraError, match="stream ended"):
            cam.capture("top")
    finally:
        cam.close()


def test_trigger_latches_a_frame_and_stamps_it_with_the_trigger_time(video):
    cam = OpenCVCamera(str(video), warmup_frames=0)
    try:
        at = cam.trigger()  # the photo-eye moment: frame 0 is latched
        cam.trigger()  # a second trigger before capture latches the next frame: the latest one counts
        latched = cam.capture("side")
        assert frame_index(latched.image) == 1 and latched.timestamp >= at
        untriggered = cam.capture("side")  # no trigger: a plain read of the next frame
        assert frame_index(untriggered.image) == 2 and untriggered.timestamp >= latched.timestamp
        t = cam.trigger()
        scan = FrameScanner((Symbology.QR,)).scan_frame(cam.capture("label"))
        assert scan.text == "frame-3" and cam._triggered_at is None and t <= scan.at
    finally:
        cam.close()


def test_exposure_and_focus_a_file_does_not_have_are_reported_not_fatal(video):
    cam = OpenCVCamera(str(video), warmup_frames=0, exposure=-6.0, focus=40.0, autofocus=False)
    try:
        assert frame_index(cam.capture("top").image) == 0
        assert set(cam.unsupported) == {"exposure", "focus", "autofocus"}
        assert set(cam.set_exposure_focus(exposure=-4.0)) == {"exposure", "focus", "autofocus"}
        assert cam.exposure == -4.0
    finally:
        cam.close()
    assert OpenCVCamera(str(video)).set_exposure_focus(focus=10.0) == []  # not open: applied at the next open


def test_a_missing_source_is_a_clear_error(tmp_path):
    cam = OpenCVCamera(str(tmp_path / "nope.avi"))
    with pytest.raises(CameraError, match="cannot open camera .*nope.avi"):
        cam.trigger()


def test_live_preview_never_changes_what_a_capture_returns(video):
    from vision.camera import StagedItem, SyntheticCamera, can_preview

    cam = SyntheticCamera()
    empty = cam.preview()  # nothing staged: the empty bench, not an error
    assert empty.image.shape == (300, 400, 3) and empty.view == "live"
    cam.stage(StagedItem("BTL-FEED-240", {"front": ("scratch",)}, 3))
    before = cam.capture("front").image
    a, b = cam.preview("front"), cam.preview("front")
    assert a.image.shape == (300, 400, 3) and not np.array_equal(a.image, b.image)  # live: noise moves
    assert np.array_equal(cam.capture("front").image, before)

    opencv = OpenCVCamera(str(video), warmup_frames=1)
    try:
        assert can_preview(opencv) and not opencv.live_source and not opencv.is_open
        assert opencv.preview() is None  # a video file's frames belong to the captures
        assert frame_index(opencv.capture("top").image) == 1 and opencv.is_open
    finally:
        opencv.close()
    assert not opencv.is_open and OpenCVCamera(0).live_source and OpenCVCamera("rtsp://cam/1").live_source
