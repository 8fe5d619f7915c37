"""Intel RealSense colour stream (pyrealsense2): a device by serial, or a recording (.bag, or .db3 from
librealsense >= 2.57) played back. pyrealsense2 also needs the host's libusb-1.0.

Capture stamps: the frame's own timestamp is on the camera's clock, so the stamp is time.monotonic() when the
frameset arrived (librealsense delivers within about a frame period of exposure).
"""

from __future__ import annotations

import time

import numpy as np

from .base import CameraError, ThreadedCamera


class RealSenseCamera(ThreadedCamera):
    """pyrealsense2 pipeline in a thread; RGB8 colour frames resized to size x size."""

    def __init__(self, serial: str | None = None, playback_file: str | None = None, size: int = 84,
                 width: int = 640, height: int = 480, fps: int = 30) -> None:  # fmt: skip
        super().__init__(size, f"realsense:{playback_file or serial or 'first'}")
        self.serial, self.playback_file = serial, playback_file
        self.width, self.height, self.fps = width, height, fps
        self._pipe = None

    def _open(self) -> None:
        try:
            import pyrealsense2 as rs
        except ImportError as e:  # also: libusb-1.0 missing on the host
            raise CameraError(f"pyrealsense2 is not usable ({e}): pip install pyrealsense2") from e
        self._rs = rs
        cfg = rs.config()
        if self.playback_file:
            cfg.enable_device_from_file(self.playback_file, repeat_playback=False)
        elif self.serial:
            cfg.enable_device(self.serial)
        if not self.playback_file:
            cfg.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, self.fps)
        self._pipe = rs.pipeline()
        try:
            self._pipe.start(cfg)
        except RuntimeError as e:
            self._pipe = None
            raise CameraError(f"cannot start the RealSense pipeline: {e}") from e

    def _grab(self) -> tuple[np.ndarray, float] | None:
        assert self._pipe is not None
        try:
            frames = self._pipe.wait_for_frames(2000)
        except RuntimeError:  # no frame within 2 s: device unplugged, or the end of a recording
            return None
        stamp = time.monotonic()
        color = frames.get_color_frame()
        if not color:
            return None
        img = np.asanyarray(color.get_data())
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        return img, stamp

    def _close(self) -> None:
        if self._pipe is not None:
            self._pipe.stop()
            self._pipe = None
