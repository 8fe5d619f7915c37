"""`robot=franka`: a Franka FR3 (or Panda) through franky-control, the Python interface on libfranka.

Each action becomes an asynchronous franky `CartesianMotion` to an absolute pose target: the measured tool centre
point plus action[:3] * spec.max_ee_delta_m, tool orientation held. The 1 kHz loop is libfranka's; a new motion
takes over from the running one (franky's Ruckig keeps the motion state), the target is reached under franky's
Cartesian velocity / acceleration / jerk limits times the dynamics factor, exactly the meaning of the action in
our FR3 env (envs/fr3.py). The gripper is binary at 0 (open: `Gripper.move` to the full width; close:
`Gripper.grasp`) and runs asynchronously; its width is read by a background thread, so nothing blocks the loop.

Every franky / libfranka exception becomes a RobotError (the loop holds and latches); errors are recovered
(`recover_from_errors`) only on an explicit re-arm (`Controller.rearm` calls connect again).
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np

from robo_hybrid.spec import IOSpec, SpecMismatchError, assemble_proprio

from .cameras.base import Camera, CameraError
from .robot import Observation, Robot, RobotDisconnected, RobotError, RobotLimits, RobotReadError, RobotWriteError

FR3_JOINTS = tuple(f"fr3_joint{i}" for i in range(1, 8))
# FR3 joint limits (Franka's datasheet; the Menagerie model has the same), shrunk by a margin: soft limits.
FR3_Q_LOW_RAD = (-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159)
FR3_Q_HIGH_RAD = (2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159)
JOINT_MARGIN_RAD = 0.05
# FR3 joint velocity limits (Franka's datasheet). A measured joint speed over them means the arm is not under
# control (a real FR3 reflexes first; franky-sim's arm, fed the jumps libfranka sends after a lossy link, flies):
# read() raises, the loop latches.
FR3_DQ_MAX_RAD_S = (2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26)
# The reach this driver allows the tool centre point by default (robot base frame): in front of the robot, above
# the table surface. A lab narrows it to its cell (FrankaRobot(workspace=...)).
FR3_WORKSPACE_LOW_M = (0.25, -0.4, 0.01)
FR3_WORKSPACE_HIGH_M = (0.8, 0.4, 0.6)
DEFAULT_DYNAMICS_FACTOR = 0.15
GRIPPER_SPEED_M_S = 0.05
GRASP_FORCE_N = 40.0
GRIPPER_POLL_S = 0.02
STALE_STATE_S = 0.1  # franky's robot time not advancing for this long: the link is gone
# An action is a pose target, not a velocity: franky itself keeps the arm under its velocity limit. The declared
# speed bounds how far a target may lead the measured pose: this many control periods at the arm's top speed
# (a lead of 1 would scale down the 2 cm targets the FR3 env trains with, and the arm would crawl).
TARGET_LEAD_PERIODS = 3.0
# franky's asynchronous gripper command runs in a thread holding a raw pointer to its Gripper: freeing the Gripper
# while the command still runs crashes the process (use after free in libfranka). close() waits this long for it,
# then parks both here (a bounded leak of one Gripper per unfinished command) instead of freeing them.
GRIPPER_CLOSE_WAIT_S = 3.0
_PARKED_GRIPPERS: list = []


def _franky():
    try:
        import franky
    except ImportError as e:
        raise RobotError("robot=franka needs franky-control: pip install 'robo-hybrid[franka]'") from e
    return franky


def check_fr3_spec(spec: IOSpec) -> None:
    """Refuse a model that was not trained for an FR3 with end-effector targets (SpecMismatchError naming why)."""
    if spec.extras.get("robot") != "fr3" or tuple(spec.joint_names) != FR3_JOINTS:
        raise SpecMismatchError(
            f"robot=franka runs FR3 models (joints {FR3_JOINTS[0]}..), but this model was trained for "
            f"robot={spec.extras.get('robot')!r} joints {list(spec.joint_names)}. Fix: train on an FR3 task "
            "(task=fr3_pickplace)"
        )
    if spec.max_ee_delta_m <= 0:
        raise SpecMismatchError("the model's spec has no max_ee_delta_m: its actions are not end-effector targets")


class FrankaRobot(Robot):
    """Robot on franky-control. `robot_factory` / `gripper_factory` replace franky.Robot / franky.Gripper in tests."""

    def __init__(self, spec: IOSpec, host: str, dynamics_factor: float | None = None,
                 cameras: dict[str, Camera] | None = None, goal_m: tuple[float, float, float] | None = None,
                 workspace: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None,
                 realtime_enforce: bool = False, gripper: bool = True,
                 robot_factory=None, gripper_factory=None) -> None:  # fmt: skip
        check_fr3_spec(spec)
        if not host:
            raise ValueError("robot=franka: set deploy.host=<robot IP> (franky-sim: 127.0.0.1)")
        factor = dynamics_factor or spec.extras.get("dynamics_factor") or DEFAULT_DYNAMICS_FACTOR
        if not 0.0 < float(factor) <= 1.0:
            raise ValueError(f"deploy.dynamics_factor={factor}: franky accepts (0, 1]")
        self._spec, self.host, self.dynamics_factor = spec, host, float(factor)
        self.cameras = dict(cameras or {})
        missing = [k for k in spec.image_keys if k not in self.cameras]
        if missing:
            raise ValueError(f"robot=franka: no camera for {missing}; set deploy.cameras=image=opencv:0,...")
        lo, hi = workspace or (FR3_WORKSPACE_LOW_M, FR3_WORKSPACE_HIGH_M)
        self._ws_low, self._ws_high = np.asarray(lo, float), np.asarray(hi, float)
        self.goal = np.asarray(goal_m if goal_m is not None else (self._ws_low + self._ws_high) / 2, np.float32)
        self._realtime_enforce, self._use_gripper = realtime_enforce, gripper
        self._robot_factory, self._gripper_factory = robot_factory, gripper_factory
        self._arm = self._gripper = None
        self._quat: np.ndarray | None = None
        self._speed_m_s = math.inf
        self._grip_open: bool | None = None  # last command sent (None = none yet)
        self._grip_want: bool | None = None  # last command asked for
        self._grip_future = None
        self._width = (float("nan"), float("nan"))  # (opening m, monotonic stamp)
        self._grip_error: str | None = None
        self._poll_stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._last_time = (-1.0, 0.0)  # (robot time s, monotonic when it last advanced)
        self._stopped = False
        self._holding = False

    # ----- Robot -----
    @property
    def io_spec(self) -> IOSpec:
        """The model's FR3 spec (checked at construction)."""
        return self._spec

    @property
    def limits(self) -> RobotLimits:
        """This driver's workspace, the target lead (franky's velocity limit x factor x lead), soft joint limits."""
        low = tuple(q + JOINT_MARGIN_RAD for q in FR3_Q_LOW_RAD)
        high = tuple(q - JOINT_MARGIN_RAD for q in FR3_Q_HIGH_RAD)
        return RobotLimits(tuple(self._ws_low), tuple(self._ws_high), self._speed_m_s, low, high)  # type: ignore[arg-type]

    def connect(self) -> None:
        """Connect (first call) or recover from errors (a re-arm; a new session when libfranka closed the old one);
        start the gripper poller and the cameras."""
        franky = _franky()
        try:
            if self._arm is not None:  # explicit re-arm: the only place errors are recovered
                try:
                    self._arm.recover_from_errors()
                except franky.NetworkException:  # libfranka closed the session (a UDP time-out): open a new one
                    self._drop_session()
            if self._arm is None:
                rt = franky.RealtimeConfig.Enforce if self._realtime_enforce else franky.RealtimeConfig.Ignore
                self._arm = (self._robot_factory or franky.Robot)(self.host, realtime_config=rt)
                if self._arm.has_errors:
                    raise RobotError(f"the robot at {self.host} reports errors ({self._arm.state.current_errors}); "
                                     "clear them (Desk or a re-arm) before starting")  # fmt: skip
            self._arm.relative_dynamics_factor = self.dynamics_factor
            v_max = float(self._arm.translation_velocity_limit.get()) * self.dynamics_factor
            self._speed_m_s = v_max * TARGET_LEAD_PERIODS
            self._quat = np.asarray(self._arm.current_pose.end_effector_pose.quaternion, float)  # hold this tool pose
            if self._use_gripper and self._gripper is None:
                self._gripper = (self._gripper_factory or franky.Gripper)(self.host)
        except RobotError:
            raise
        except Exception as e:  # franky / libfranka: NetworkException, IncompatibleVersionException, ...
            raise RobotDisconnected(f"franky could not connect to {self.host}: {type(e).__name__}: {e}") from e
        self._stopped, self._holding, self._grip_open, self._grip_error = False, False, None, None
        self._start_poller()
        try:
            for cam in self.cameras.values():
                cam.start()
        except CameraError as e:
            raise RobotError(str(e)) from e

    def _drop_session(self) -> None:
        """Forget a dead franky session (arm, gripper, poller) so that connect opens a new one."""
        self._poll_stop.set()
        if self._poller is not None:
            self._poller.join(timeout=2.0)
            self._poller = None
        self._release_gripper()
        self._arm = None

    def _start_poller(self) -> None:
        if self._gripper is None or (self._poller is not None and self._poller.is_alive()):
            return
        self._poll_stop.clear()
        self._poller = threading.Thread(target=self._poll_gripper, name="franka-gripper", daemon=True)
        self._poller.start()
        t_end = time.monotonic() + 2.0
        while math.isnan(self._width[0]) and self._grip_error is None and time.monotonic() < t_end:
            time.sleep(0.002)

    def _poll_gripper(self) -> None:
        """The gripper's width query blocks on the network: it runs here, never in the control loop."""
        while not self._poll_stop.is_set():
            try:
                width = float(self._gripper.width)  # type: ignore[union-attr]
                self._width = (width, time.monotonic())
            except Exception as e:  # GripperException / NetworkException: read() reports it
                self._grip_error = f"gripper: {type(e).__name__}: {e}"
                return
            self._poll_stop.wait(GRIPPER_POLL_S)

    def read(self) -> Observation:
        """Joint state and tcp from franky, gripper width from the poller, the newest frame of each camera."""
        if self._arm is None:
            raise RobotDisconnected("robot=franka: not connected")
        try:
            s = self._arm.state
            q, dq = np.asarray(s.q, float), np.asarray(s.dq, float)
            ee = np.asarray(s.O_T_EE.translation, float)
            robot_t = float(s.time.to_sec())  # the robot's own clock: it stops advancing when the link is gone
        except Exception as e:
            raise RobotReadError(f"franky state read failed: {type(e).__name__}: {e}") from e
        over = np.abs(dq) > np.asarray(FR3_DQ_MAX_RAD_S)
        if over.any():
            j = int(np.argmax(over))
            raise RobotReadError(f"joint {j + 1} of the arm at {self.host} moves at {dq[j]:.2f} rad/s, over the FR3's "
                                 f"{FR3_DQ_MAX_RAD_S[j]} rad/s: the arm is not under control")  # fmt: skip
        now = time.monotonic()
        if robot_t != self._last_time[0]:
            self._last_time = (robot_t, now)
        elif now - self._last_time[1] > STALE_STATE_S:
            raise RobotDisconnected(f"no new robot state from {self.host} for {now - self._last_time[1]:.2f} s")
        if self._grip_error is not None:
            raise RobotReadError(self._grip_error)
        width = self._width[0] if self._gripper is not None else 0.0
        arrays: dict[str, np.ndarray] = {"proprio": assemble_proprio(q, dq, ee, width), "goal": self.goal.copy()}
        stamps: dict[str, float] = {}
        for key, cam in self.cameras.items():
            try:
                arrays[key], stamps[key] = cam.latest()
            except CameraError as e:
                raise RobotReadError(str(e)) from e
        return Observation(arrays={k: arrays[k] for k in self._spec.policy_keys}, stamp_s=self._last_time[1],
                           image_stamp_s=stamps)  # fmt: skip

    def target_for(self, action: np.ndarray, ee_m: np.ndarray) -> np.ndarray:
        """The absolute tcp target of an action: measured tcp + delta, clipped into this driver's workspace and never
        more than one full delta per axis from the measured tcp (a tcp far outside the box moves back by a delta per
        step instead of jumping to the box's edge)."""
        ee, step = np.asarray(ee_m, float), self._spec.max_ee_delta_m
        target = np.clip(ee + np.asarray(action[:3], float) * step, self._ws_low, self._ws_high)
        return ee + np.clip(target - ee, -step, step)

    def write(self, action: np.ndarray) -> None:
        """One asynchronous CartesianMotion to the pose target; a gripper command when open/close changes."""
        if self._stopped or self._arm is None:
            raise RobotWriteError("robot=franka is stopped; re-arm first")
        a = np.asarray(action, float)
        if a.shape != (4,) or not np.isfinite(a).all():
            raise RobotWriteError(f"refusing action {a!r}: need 4 finite values")
        franky = _franky()
        try:
            self._arm.poll_motion()  # raises what the running motion ended with (reflexes, network)
            target = self.target_for(a, np.asarray(self._arm.current_pose.end_effector_pose.translation, float))
            pose = franky.RobotPose(franky.Affine(target, self._quat))  # type: ignore[arg-type]  # set by connect
            self._arm.move(franky.CartesianMotion(pose, franky.ReferenceType.Absolute), asynchronous=True)
        except Exception as e:
            raise RobotWriteError(f"franky motion failed: {type(e).__name__}: {e}") from e
        self._holding = False
        self._gripper_command(bool(a[3] > 0))

    def _gripper_command(self, want_open: bool) -> None:
        """Issue open / close when it changes, but never while the previous gripper command still runs (franky's
        gripper calls wait for the running one, and a wait inside the loop would stall it): it is issued later."""
        self._grip_want = want_open
        if self._gripper is None or self._grip_want == self._grip_open:
            return
        try:
            if self._grip_future is not None:
                if not self._grip_future.wait(0.0):
                    return  # still moving: the new command goes out on a later cycle
                self._grip_future.get()  # surfaces a GripperException of the previous command
            if want_open:
                self._grip_future = self._gripper.move_async(self._spec.extras.get("gripper_open_m", 0.08),
                                                             GRIPPER_SPEED_M_S)  # fmt: skip
            else:
                self._grip_future = self._gripper.grasp_async(0.0, GRIPPER_SPEED_M_S, GRASP_FORCE_N, 0.005, 0.08)
        except Exception as e:
            raise RobotWriteError(f"gripper command failed: {type(e).__name__}: {e}") from e
        self._grip_open = want_open

    def hold(self) -> None:
        """Decelerate to rest (franky's CartesianStopMotion) once; an idle arm holds its pose by itself."""
        if self._arm is None:
            return
        if self._grip_want is not None:
            self._gripper_command(self._grip_want)  # a hold keeps the gripper command (a pending one goes out)
        if self._holding:
            return
        franky = _franky()
        try:
            if self._moving():
                self._arm.move(franky.CartesianStopMotion(), asynchronous=True)
        except Exception as e:
            raise RobotWriteError(f"franky hold failed: {type(e).__name__}: {e}") from e
        self._holding = True

    def _moving(self) -> bool:
        """Whether a motion runs (franky's is_in_control); raises what the last motion ended with (poll_motion).

        poll_motion's return value is not used: franky 2.0 returns False while a motion runs and True when none
        does, the reverse of its docstring (measured against franky-sim)."""
        assert self._arm is not None  # callers check
        self._arm.poll_motion()
        return bool(self._arm.is_in_control)

    def stop(self) -> None:
        """Stop every motion (libfranka preempts it) and refuse commands until re-armed."""
        self._stopped = True
        if self._arm is None:
            return
        try:
            self._arm.stop()
        except Exception as e:
            raise RobotWriteError(f"franky stop failed: {type(e).__name__}: {e}") from e

    def close(self) -> None:
        """Stop the cameras and the gripper poller; leave the arm stopped."""
        for cam in self.cameras.values():
            cam.stop()
        if self._arm is not None:
            try:
                if self._moving():
                    self._arm.stop()
            except Exception:  # the link may be what failed; libfranka's watchdog stops the arm
                pass
        self._drop_session()

    def _release_gripper(self) -> None:
        """Drop the gripper, never while its asynchronous command still runs (see GRIPPER_CLOSE_WAIT_S)."""
        grip, fut = self._gripper, self._grip_future
        self._gripper = self._grip_future = None
        if grip is None or fut is None:
            return
        try:
            done = bool(fut.wait(GRIPPER_CLOSE_WAIT_S))
        except Exception:  # a failed wait says nothing about the thread: keep both alive
            done = False
        if not done:
            _PARKED_GRIPPERS.append((grip, fut))


def make_franka(spec: IOSpec, host: str, dynamics_factor: float | None, cameras: str, realtime: str) -> FrankaRobot:
    """The FrankaRobot of `robo-hybrid deploy robot=franka` (cameras from deploy.cameras)."""
    from .cameras import make_camera, parse_cameras

    size = next((t.shape[0] for t in spec.observations if t.name in spec.image_keys), 84)
    cams = {key: make_camera(src, size) for key, src in parse_cameras(cameras).items()}
    return FrankaRobot(spec, host, dynamics_factor, cams, realtime_enforce=realtime == "require")
