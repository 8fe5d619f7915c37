"""The Camera interface: a device that captures on its own clock; the loop reads the newest frame and its age."""

from __future__ import annotations

import abc
import threading
import time

import numpy as np


class CameraError(RuntimeError):
    """A camera failed (not found, stopped delivering, its thread died)."""


def resize_nearest(frame: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to size x size (nearest neighbour, numpy only), uint8 H x W x 3."""
    h, w = frame.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    rows = y0 + (np.arange(size) * s) // size
    cols = x0 + (np.arange(size) * s) // size
    return np.ascontiguousarray(frame[rows][:, cols, :3], dtype=np.uint8)


def parse_cameras(text: str) -> dict[str, str]:
    """'image=opencv:0,image_wrist=realsense:123' -> {'image': 'opencv:0', 'image_wrist': 'realsense:123'}."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, source = part.partition("=")
        if not sep or not key or not source:
            raise ValueError(f"deploy.cameras entry {part!r}: write <image key>=<source>, e.g. image=opencv:0")
        out[key] = source
    return out


class Camera(abc.ABC):
    """A camera: start(), latest() -> (frame uint8 (size, size, 3), capture time on time.monotonic), stop()."""

    size: int

    @abc.abstractmethod
    def start(self) -> None:
        """Open the device and begin capturing; raise CameraError when it cannot."""

    @abc.abstractmethod
    def latest(self) -> tuple[np.ndarray, float]:
        """The newest frame and its capture stamp; CameraError when there is none or the camera died."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop capturing and release the device (idempotent)."""


class ThreadedCamera(Camera):
    """Captures in a background thread (`_open`, `_grab` -> (frame, stamp) or None, `_close`); keeps the newest."""

    def __init__(self, size: int, name: str) -> None:
        self.size, self.name = int(size), name
        self._lock = threading.Lock()
        self._frame: np.ndarray | None = None
        self._stamp_s = float("nan")
        self._error: str | None = None
        self._running = False
        self._thread: threading.Thread | None = None
        self.frames = 0

    def _open(self) -> None:  # noqa: B027 - optional hook (runs in the capture thread)
        """Open the device (in the capture thread, so thread-bound contexts such as GL live there)."""

    @abc.abstractmethod
    def _grab(self) -> tuple[np.ndarray, float] | None:
        """Block until the next frame; (frame, monotonic capture stamp), or None at the end of the source."""

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Release the device (capture thread)."""

    def start(self) -> None:
        """Start the capture thread and wait (up to 10 s) for its first frame."""
        if self._running:
            return
        self._running, self._error = True, None
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._thread.start()
        t_end = time.monotonic() + 10.0
        while self._frame is None and self._error is None and time.monotonic() < t_end:
            time.sleep(0.005)
        if self._error is not None or self._frame is None:
            self.stop()
            raise CameraError(f"camera {self.name}: {self._error or 'no frame within 10 s'}")

    def _run(self) -> None:
        try:
            self._open()
            while self._running:
                got = self._grab()
                if got is None:
                    self._error = "source ended"
                    break
                frame = resize_nearest(got[0], self.size)
                with self._lock:
                    self._frame, self._stamp_s = frame, float(got[1])
                    self.frames += 1
        except Exception as e:  # the device failed: latest() reports it, the loop holds and latches
            self._error = f"{type(e).__name__}: {e}"
        finally:
            try:
                self._close()
            except Exception:  # closing a failed device: nothing more to do
                pass

    def latest(self) -> tuple[np.ndarray, float]:
        """The newest frame (a copy) and its capture stamp."""
        with self._lock:
            frame, stamp = self._frame, self._stamp_s
        if self._error is not None and not (self._thread is not None and self._thread.is_alive()):
            raise CameraError(f"camera {self.name} stopped: {self._error}")
        if frame is None:
            raise CameraError(f"camera {self.name}: no frame yet (start() it first)")
        return frame.copy(), stamp

    def stop(self) -> None:
        """Stop the thread and close the device."""
        self._running = False
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self._thread = None
