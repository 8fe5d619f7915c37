"""OpenCV camera (opencv-python-headless): a V4L2 / USB device index, a stream URL or a video file.

A video file is paced at its own frame rate so it behaves like a live camera (a test source); `loop=True` restarts
it at the end. Capture stamps are time.monotonic() when the frame was read from the device.
"""

from __future__ import annotations

import time

import numpy as np

from .base import CameraError, ThreadedCamera


class OpenCVCamera(ThreadedCamera):
    """cv2.VideoCapture in a thread; frames converted BGR -> RGB and resized to size x size."""

    def __init__(self, source: int | str, size: int = 84, loop: bool = False, fps: float | None = None) -> None:
        super().__init__(size, f"opencv:{source}")
        self.source, self.loop, self.fps = source, loop, fps
        self._cap = None
        self._is_file = isinstance(source, str) and not source.startswith(("rtsp:", "http:", "https:"))
        self._next_t = 0.0

    def _open(self) -> None:
        try:
            import cv2
        except ImportError as e:
            raise CameraError("OpenCV is not installed: pip install opencv-python-headless") from e
        self._cv2 = cv2
        self._cap = cv2.VideoCapture(self.source)
        if not self._cap.isOpened():
            raise CameraError(f"cannot open {self.source!r}")
        file_fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = self.fps or (file_fps if file_fps > 0 else 30.0)
        self._next_t = time.monotonic()

    def _grab(self) -> tuple[np.ndarray, float] | None:
        assert self._cap is not None
        if self._is_file:  # pace a file like a live camera
            self._next_t += 1.0 / float(self.fps or 30.0)
            time.sleep(max(0.0, self._next_t - time.monotonic()))
        ok, bgr = self._cap.read()
        if not ok and self._is_file and self.loop:
            self._cap.set(self._cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._cap.read()
        if not ok:
            return None
        return bgr[:, :, ::-1], time.monotonic()

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
