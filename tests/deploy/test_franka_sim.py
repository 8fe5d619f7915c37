"""robot=franka against a REAL franky-sim server speaking libfranka's protocol (franky-control as the client).

The server runs in its own process (it can be killed mid-motion) or embedded in this process (the simulated camera
renders its scene). franky-sim raises no robot errors by itself, so a robot error is injected at the driver's
boundary as franky's own exception type (franky.ControlException) raised by a wrapped franky.Robot.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time

import franky  # franky-control and franky-sim come with [dev]: missing is a failure, not a skip
import franky_sim
import numpy as np
import pytest

from robo_hybrid.bench.franky_sim_scene import build_scene
from robo_hybrid.deploy.franka import TARGET_LEAD_PERIODS, FrankaRobot
from robo_hybrid.deploy.loop import Controller, LoopConfig
from robo_hybrid.deploy.policy import CallablePolicy
from robo_hybrid.deploy.run import latch_reason, run_deploy
from robo_hybrid.deploy.safety import SafetyConfig
from robo_hybrid.spec import SpecMismatchError

SERVER = """
import sys
import franky_sim
from franky_sim.mujoco_simulator import MujocoSimulator
sim = MujocoSimulator(); sim.init(); sim.add_robot()
srv = franky_sim.SimulationServer(sim, hostname_candidates=[sys.argv[1]]); srv.init()
print("ready", flush=True)
srv.run_forever()
"""


_HOSTS = itertools.count(2)


def _host() -> str:
    """A fresh loopback address per server: libfranka's port 1337 is fixed, and a killed server's port lingers in
    TIME_WAIT (franky-sim would wait to bind it). Not `random`: test plugins may reseed it identically per test."""
    n = next(_HOSTS)
    return f"127.{os.getpid() % 250 + 1}.{(time.monotonic_ns() // 1000) % 250 + 1}.{n % 250 + 2}"


@pytest.fixture
def server():
    """franky-sim in a child process; yields (host, process)."""
    host = _host()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, host], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield host, proc
    finally:
        proc.kill()
        proc.wait(10)


class StillCamera:
    """A camera delivering one fresh grey frame per read (the tests that do not look at images)."""

    size = 32

    def start(self) -> None:
        """Nothing to open."""

    def latest(self):
        """A grey frame stamped now."""
        return np.full((32, 32, 3), 128, np.uint8), time.monotonic()

    def stop(self) -> None:
        """Nothing to close."""


def _robot(spec, host, **kw) -> FrankaRobot:
    return FrankaRobot(spec, host, cameras={"image": StillCamera()}, **kw)


def _controller(policy, robot, steps=25) -> Controller:
    loop = LoopConfig(max_steps=steps, handle_signals=False)
    return Controller(policy, robot, loop, SafetyConfig(estop_signal=False))


def test_connect_and_read_state(server, fr3_spec):
    host, _ = server
    robot = _robot(fr3_spec, host)
    robot.connect()
    try:
        obs = robot.read()
        fr3_spec.check_obs(obs.arrays)
        proprio = obs.arrays["proprio"]
        np.testing.assert_allclose(proprio[:7], (0.0, 0.0, 0.0, -1.57, 0.0, 1.57, 0.785), atol=0.01)  # start pose
        np.testing.assert_allclose(proprio[14:17], (0.554, 0.0, 0.521), atol=0.01)  # franky's tcp, = our env's
        assert 0.0 < proprio[17] <= 0.08  # gripper width from the poller
        # franky's translation limit x factor x the target lead
        assert robot.limits.max_ee_speed_m_s == pytest.approx(1.7 * robot.dynamics_factor * TARGET_LEAD_PERIODS)
    finally:
        robot.close()


def test_a_model_for_another_robot_is_refused(fr3_spec):
    from robo_hybrid.deploy.mock import mock_io_spec

    with pytest.raises(SpecMismatchError, match="FR3"):
        FrankaRobot(mock_io_spec(), "127.0.0.1")
    with pytest.raises(ValueError, match="no camera"):
        FrankaRobot(fr3_spec, "127.0.0.1")


def test_short_episode_through_deploy(server, fr3_spec, tmp_path):
    """run_deploy(robot=franka): the policy drives the simulated arm toward the goal over libfranka's protocol."""
    import sys as _sys

    _sys.path.insert(0, os.path.dirname(__file__))
    from deploy_testlib import build_policy_onnx

    host, _ = server
    model = build_policy_onnx(str(tmp_path / "p.onnx"), fr3_spec)
    video = _video(tmp_path / "cam.avi")
    result = run_deploy(model, "franka", episodes=1, max_steps=30, host=host, cameras=f"image=opencv:{video}",
                        realtime="off", estop_file="")  # fmt: skip
    assert result["latched"] is None, result.get("latch_reason")
    assert result["counters"].get("actions", 0) >= 25  # commands reached the arm, not holds
    assert result["ends"] == ["max_steps"]


def _video(path) -> str:
    import cv2  # noqa: PLC0415
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 50.0, (48, 48))
    for i in range(200):
        w.write(np.full((48, 48, 3), i % 256, np.uint8))
    w.release()
    return str(path)


def test_server_killed_mid_motion_latches_with_a_one_line_reason(server, fr3_spec):
    host, proc = server
    robot = _robot(fr3_spec, host)
    writes_after_kill = []
    killed = threading.Event()
    policy = CallablePolicy(fr3_spec, lambda obs: np.array([0.0, 0.8, -0.3, 1.0], np.float32))
    ctl = _controller(policy, robot, steps=150)
    real_write = robot.write

    def write(a):
        if killed.is_set():
            writes_after_kill.append(a)
        real_write(a)

    robot.write = write  # type: ignore[method-assign]
    threading.Timer(0.6, lambda: (proc.kill(), killed.set())).start()
    try:
        result = ctl.run(1)
    finally:
        robot.close()
    result["results"] = [vars(r) for r in result["results"]]
    assert result["latched"] == "hardware_error" and result["ends"] == ["hardware_error"]
    reason = latch_reason(result)
    assert reason is not None and "\n" not in reason and ("franky" in reason or "robot state" in reason), reason
    assert len(writes_after_kill) <= 3  # the commands in flight when it died; none after the latch


def test_a_command_outside_the_robots_limits_is_clamped(server, fr3_spec):
    """The policy asks for +x at full speed, forever: the robot's workspace (and speed) win; the tcp stays inside."""
    host, _ = server
    robot = _robot(fr3_spec, host, workspace=((0.3, -0.3, 0.2), (0.6, 0.3, 0.6)))
    policy = CallablePolicy(fr3_spec, lambda obs: np.array([5.0, 0.0, 0.0, 1.0], np.float32))
    ctl = _controller(policy, robot, steps=40)
    xs = []
    real_read = robot.read

    def read():
        obs = real_read()
        xs.append(float(obs.arrays["proprio"][14]))
        return obs

    robot.read = read  # type: ignore[method-assign]
    try:
        result = ctl.run(1)
    finally:
        robot.close()
    assert result["latched"] is None
    assert result["counters"]["clamped"] > 0 and result["counters"]["workspace_clamped"] > 0
    # went to the box's edge; every target was inside it, the measured tcp overshoots by franky-sim's tracking error
    # when braking at the edge (about 1 cm: its joint PD lags; a real FR3 tracks to well under a millimetre)
    assert 0.58 < max(xs) < 0.6 + 0.02
    assert xs[-1] < 0.6 + 0.005  # and settles on the edge


class FlakyRobot:
    """franky.Robot whose move() raises franky's own ControlException on the n-th call (a reflex on a real arm)."""

    def __init__(self, host, fail_at: int, **kw):
        self._r = franky.Robot(host, **kw)
        self._fail_at, self.moves, self.recovered = fail_at, 0, 0

    def __getattr__(self, name):
        return getattr(self._r, name)

    def __setattr__(self, name, value):
        if name.startswith("_") or name in ("moves", "recovered"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._r, name, value)

    def move(self, motion, asynchronous=False):
        self.moves += 1
        if self.moves == self._fail_at:
            raise franky.ControlException("cartesian_reflex: injected at the driver boundary")
        return self._r.move(motion, asynchronous=asynchronous)

    def recover_from_errors(self):
        self.recovered += 1
        return self._r.recover_from_errors()


def test_injected_franky_exception_latches_and_only_rearm_recovers(server, fr3_spec):
    host, _ = server
    holder = {}

    def factory(h, **kw):
        holder["r"] = FlakyRobot(h, fail_at=5, **kw)
        return holder["r"]

    robot = _robot(fr3_spec, host, robot_factory=factory)
    policy = CallablePolicy(fr3_spec, lambda obs: np.array([0.0, 0.5, 0.0, 1.0], np.float32))
    ctl = _controller(policy, robot, steps=20)
    try:
        first = ctl.run(1)
        assert first["latched"] == "hardware_error" and holder["r"].moves == 5
        assert holder["r"].recovered == 0  # never recovered behind the operator's back
        again = ctl.run(1)
        assert again["ends"] == ["latched"] and holder["r"].moves == 5  # nothing sent while latched
        ctl.rearm()
        assert holder["r"].recovered == 1
        ctl.run(1)
        assert holder["r"].moves > 10  # moving again after the explicit re-arm
    finally:
        robot.close()


def test_embedded_franky_sim_with_the_simulated_camera(fr3_spec):
    """franky-sim in this process, cube and cameras in its scene; the sim camera renders it while the loop runs."""
    from franky_sim.mujoco_simulator import MujocoSimulator

    from robo_hybrid.deploy.cameras.sim import SimSceneCamera

    sim = MujocoSimulator()
    sim.init()
    sim.add_robot()
    build_scene(sim)  # drawn like our env (collision meshes): franky-sim's own look takes ~120 ms a frame here
    host = _host()
    srv = franky_sim.SimulationServer(sim, hostname_candidates=[host])
    srv.init()
    ticks = []
    sim.register_post_step_callback(lambda s: ticks.append(time.monotonic()))
    srv.run_async()
    cam = SimSceneCamera(sim, "front", size=32, rate_hz=25.0)
    grabbed, real_grab = [], cam._grab

    def grab():  # each frame with the state it was drawn from
        out = real_grab()
        if out is not None:
            grabbed.append((np.array(cam._qpos), out[0].copy()))
        return out

    cam._grab = grab  # type: ignore[method-assign]
    robot = FrankaRobot(fr3_spec, host, cameras={"image": cam})
    policy = CallablePolicy(fr3_spec, lambda obs: np.array([0.0, -0.5, -0.5, 1.0], np.float32))
    ctl = _controller(policy, robot, steps=25)
    try:
        result = ctl.run(1)
        robot.close()  # stops the camera
        qpos, frame = grabbed[-1]
        ref = _reference_frame(sim.model, qpos, "front", 32)
    finally:
        robot.close()
        srv.cleanup()
    assert result["latched"] is None and result["counters"]["actions"] >= 20
    assert frame.shape == (32, 32, 3) and frame.std() > 0 and cam.frames >= 15
    diff = np.abs(frame.astype(int) - ref.astype(int))  # a camera pose never computed would show another view
    assert diff.mean() < 1.0, f"mean pixel difference {diff.mean():.1f} from a full forward pass of the same state"
    assert len(ticks) > 0  # the camera's snapshot callback shares the simulator's step hook with others


def _reference_frame(model, qpos: np.ndarray, camera: str, size: int) -> np.ndarray:
    """`camera`'s frame of `qpos` after a full mj_forward, in a renderer of its own."""
    import mujoco

    data = mujoco.MjData(model)
    data.qpos[:] = qpos
    mujoco.mj_forward(model, data)
    renderer = mujoco.Renderer(model, size, size)
    try:
        renderer.update_scene(data, camera=camera)
        return renderer.render().copy()
    finally:
        renderer.close()
