"""Cameras as separate devices: `Camera` (newest frame + its capture time), and OpenCV, RealSense and simulated
(embedded franky-sim scene) implementations, each importing its own library only when started.

    from robo_hybrid.deploy.cameras import make_camera
    cam = make_camera("opencv:/dev/video0", size=84)   # or "opencv:clip.mp4", "realsense:<serial>", "realsense:rec.db3"
    cam.start(); frame, stamp_s = cam.latest(); cam.stop()
"""

from __future__ import annotations

from .base import Camera, CameraError, ThreadedCamera, parse_cameras, resize_nearest


def make_camera(source: str, size: int) -> Camera:
    """A camera from 'opencv:<index|path>' or 'realsense:<serial|recording>' (frames resized to size x size)."""
    kind, _, arg = source.partition(":")
    if kind == "opencv":
        from .opencv import OpenCVCamera

        return OpenCVCamera(int(arg) if arg.isdigit() else arg, size=size)
    if kind == "realsense":
        from .realsense import RealSenseCamera

        if arg.endswith((".bag", ".db3")):  # librealsense >= 2.57 records .db3
            return RealSenseCamera(playback_file=arg, size=size)
        return RealSenseCamera(serial=arg or None, size=size)
    raise ValueError(f"camera source {source!r}: use opencv:<index|path> or realsense:<serial|file.bag>")


__all__ = ["Camera", "CameraError", "ThreadedCamera", "make_camera", "parse_cameras", "resize_nearest"]
