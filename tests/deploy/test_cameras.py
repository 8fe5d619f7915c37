"""deploy/cameras: the Camera interface, OpenCV on a video file, RealSense playback, independence, frame age."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from robo_hybrid.deploy.cameras import CameraError, make_camera, parse_cameras, resize_nearest
from robo_hybrid.deploy.mock import mock_io_spec
from robo_hybrid.deploy.robot import Observation
from robo_hybrid.deploy.safety import SafetyFilter


def _video(path, n=20, fps=50.0) -> str:
    import cv2  # noqa: PLC0415  ([franka] / [dev] install it; missing is a failure, not a skip)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    for i in range(n):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:, :, 2] = 10 * i  # red rises frame by frame (BGR on disk)
        w.write(frame)
    w.release()
    return str(path)


def test_resize_crops_the_centre_square_and_parse_cameras():
    img = np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3)
    out = resize_nearest(img, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], img[0, 8])  # the 48x48 centre square starts at column 8
    assert parse_cameras("image=opencv:0, image_wrist=realsense:123") == {"image": "opencv:0",
                                                                          "image_wrist": "realsense:123"}
    with pytest.raises(ValueError, match="image key"):
        parse_cameras("opencv:0")


def test_opencv_camera_on_a_video_file(tmp_path):
    cam = make_camera(f"opencv:{_video(tmp_path / 'clip.avi')}", size=32)
    cam.start()
    try:
        f1, t1 = cam.latest()
        time.sleep(0.1)
        f2, t2 = cam.latest()
        assert f1.shape == (32, 32, 3) and t2 > t1  # new frames with later capture stamps
        assert f2[..., 0].mean() > f1[..., 0].mean()  # RGB order: red is channel 0, and it rises
        assert f1[..., 2].max() < 5
        time.sleep(0.5)  # 20 frames at 50 fps: the file has ended
        with pytest.raises(CameraError, match="source ended"):
            cam.latest()
    finally:
        cam.stop()


def test_a_camera_that_cannot_open_says_so():
    cam = make_camera("opencv:/nonexistent/clip.avi", size=32)
    with pytest.raises(CameraError, match="cannot open"):
        cam.start()


def test_frame_age_check_holds_on_an_old_frame(tmp_path):
    """The loop's frame-age check: a camera delivering at 5 fps is older than max(2.5 periods, 50 ms) at 25 Hz."""
    from robo_hybrid.deploy.cameras.opencv import OpenCVCamera

    spec = mock_io_spec(image_size=32)
    sf = SafetyFilter(spec)
    cam = OpenCVCamera(_video(tmp_path / "slow.avi", n=10), size=32, fps=5.0)
    cam.start()
    try:
        time.sleep(0.3)
        frame, stamp = cam.latest()
        now = time.monotonic()
        obs = Observation({"image": frame, "proprio": np.zeros(18, np.float32), "goal": np.zeros(3, np.float32)},
                          stamp_s=now, image_stamp_s={"image": stamp})  # fmt: skip
        age = now - stamp
        assert sf.check_obs(obs, now) == ("stale_image" if age > sf.stale_limit_s else None)
        assert sf.check_obs(obs, stamp + sf.stale_limit_s + 0.01) in ("stale_image", "stale_state")
        fresh = Observation(obs.arrays, stamp_s=now, image_stamp_s={"image": now})
        assert sf.check_obs(fresh, now) is None
    finally:
        cam.stop()


def _record_realsense(path: str, n: int = 20) -> None:
    """A colour recording made through librealsense's software device (no hardware)."""
    import pyrealsense2 as rs  # noqa: PLC0415  ([dev]; needs the host's libusb-1.0, which .ci/run installs)
    w, h = 64, 48
    dev = rs.software_device()
    sensor = dev.add_sensor("Color")
    vs = rs.video_stream()
    vs.type, vs.index, vs.uid, vs.width, vs.height, vs.fps, vs.bpp = rs.stream.color, 0, 0, w, h, 30, 3
    vs.fmt = rs.format.rgb8
    intr = rs.intrinsics()
    intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy = w, h, 50.0, 50.0, w / 2, h / 2
    vs.intrinsics = intr
    prof = sensor.add_video_stream(vs)
    rec = rs.recorder(path, dev)
    sensor.open(prof)
    sensor.start(rs.frame_queue())
    for i in range(n):
        f = rs.software_video_frame()
        f.pixels = np.full((h, w, 3), 10 * i, np.uint8).tobytes()
        f.bpp, f.stride, f.timestamp, f.frame_number = 3, w * 3, i * 33.3, i
        f.domain = rs.timestamp_domain.hardware_clock
        f.profile = prof.as_video_stream_profile()
        sensor.on_video_frame(f)
        time.sleep(0.005)
    sensor.stop()
    sensor.close()
    del rec  # closes the file


def test_realsense_camera_plays_back_a_recording(tmp_path):
    path = str(tmp_path / "rec.db3")
    _record_realsense(path)
    cam = make_camera(f"realsense:{path}", size=16)
    cam.start()
    try:
        time.sleep(0.3)
        frame, stamp = cam.latest()
    finally:
        cam.stop()
    assert frame.shape == (16, 16, 3) and frame.dtype == np.uint8 and stamp <= time.monotonic()
    assert cam.frames >= 10 and frame.std() == 0 and frame[0, 0, 0] > 0  # the recorded uniform frames


@pytest.mark.parametrize("blocked, use", [("pyrealsense2", "opencv"), ("cv2", "realsense")])
def test_each_camera_works_without_the_other_library(blocked, use, tmp_path):
    src = _video(tmp_path / "c.avi") if use == "opencv" else str(tmp_path / "rec.db3")
    if use == "realsense":
        _record_realsense(src)
    code = (f"import sys; sys.modules[{blocked!r}] = None\n"
            "import time; from robo_hybrid.deploy.cameras import make_camera\n"
            f"c = make_camera({use + ':' + src!r}, 16); c.start(); time.sleep(0.1)\n"
            "print(c.latest()[0].shape); c.stop()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "(16, 16, 3)" in out.stdout
