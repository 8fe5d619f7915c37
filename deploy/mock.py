"""MockRobot: mirrors commands into states, records every command, and injects faults on demand.

Modelled on ros2_control's mock hardware, whose command interfaces accept READ_FAIL / WRITE_FAIL values
that make the next read / write fail. Here `inject(Fault.X)` switches a fault on and `clear()` off; an
optional `fault_hook(read_index, robot)` runs before every read so a test can script faults in time.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robo_hybrid.spec import IOSpec, TensorSpec, assemble_proprio, proprio_layout

from .robot import Observation, Robot, RobotDisconnected, RobotLimits, RobotReadError, RobotWriteError, hold_action

GRIPPER_OPEN_M = 0.08  # mock gripper: command +1 -> 0.08 m opening, -1 -> closed
SUCCESS_RADIUS_M = 0.02
# The mock arm's own reach, declared by the robot whatever spec a model brings (a point has no top speed).
MOCK_LIMITS = RobotLimits((0.2, -0.4, 0.0), (0.8, 0.4, 0.6), joint_pos_low_rad=(-2.9,) * 7,
                          joint_pos_high_rad=(2.9,) * 7)  # fmt: skip


class Fault(enum.Enum):
    """Faults a MockRobot can inject."""

    READ_FAIL = "read_fail"  # read() raises RobotReadError
    WRITE_FAIL = "write_fail"  # write()/hold() raise RobotWriteError
    DISCONNECT = "disconnect"  # read()/write() raise RobotDisconnected
    NAN_OBS = "nan_obs"  # proprio contains NaN
    INF_OBS = "inf_obs"  # goal contains +Inf
    STALE_CAMERA = "stale_camera"  # camera frame and its stamp stop updating
    STATE_STOPS = "state_stops"  # state values and stamp stop updating (stream stopped)
    FROZEN_STATE = "frozen_state"  # state values stop changing but stamps keep advancing
    WRONG_IMAGE_SHAPE = "wrong_image_shape"  # image comes back 64x64
    WRONG_DTYPE = "wrong_dtype"  # proprio comes back float64
    SLOW_READ = "slow_read"  # read() sleeps `slow_read_s`


@dataclass
class CommandRecord:
    """One command that reached the mock robot."""

    t_s: float
    kind: str  # "action" | "hold" | "stop"
    action: np.ndarray
    ee_before_m: np.ndarray


def mock_io_spec(
    image_size: int = 84, wrist_camera: bool = False, control_rate_hz: float = 25.0, episode_steps: int = 60
) -> IOSpec:
    """An I/O spec with the shared env layout (7-joint arm, ee-delta action), for mocks and tests."""
    joints = tuple(f"joint{i}" for i in range(1, 8))
    layout = proprio_layout(joints)
    cams = ("image", "image_wrist") if wrist_camera else ("image",)
    obs = [TensorSpec(k, (image_size, image_size, 3), "uint8", "rgb_0_255", 0, 255) for k in cams]
    obs.append(TensorSpec("proprio", (len(layout),), "float32", "mixed_si"))
    obs.append(TensorSpec("goal", (3,), "float32", "m"))
    return IOSpec(
        task_id="mock_reach",
        observations=tuple(obs),
        action=TensorSpec("action", (4,), "float32", "normalized", -1.0, 1.0),
        action_meaning=("ee_delta_x", "ee_delta_y", "ee_delta_z", "gripper_open_close"),
        control_rate_hz=float(control_rate_hz),
        joint_names=joints,
        proprio_layout=layout,
        privileged=(TensorSpec("privileged", (13,), "float32", "mixed_si"),),
        max_ee_delta_m=0.05,
        workspace_low_m=(0.2, -0.4, 0.0),
        workspace_high_m=(0.8, 0.4, 0.6),
        episode_steps=episode_steps,
        extras={"gripper_open_m": GRIPPER_OPEN_M},
    )


class MockRobot(Robot):
    """A point end effector that moves by exactly action[:3] * max_ee_delta_m per write; reach-the-goal task."""

    supports_reset = True

    def __init__(
        self,
        spec: IOSpec | None = None,
        seed: int = 0,
        start_ee_m: tuple[float, float, float] | None = None,
        fault_hook: Callable[[int, MockRobot], None] | None = None,
        slow_read_s: float = 0.0,
        terminate_on_success: bool = True,
        limits: RobotLimits | None = None,
    ) -> None:
        self._spec = spec or mock_io_spec()
        self._limits = limits or MOCK_LIMITS
        self._rng = np.random.default_rng(seed)
        self._start_ee = start_ee_m
        self.fault_hook = fault_hook
        self.slow_read_s = slow_read_s
        self.terminate_on_success = terminate_on_success
        self.faults: set[Fault] = set()
        self.commands: list[CommandRecord] = []
        self.reset_at: list[int] = []  # len(commands) at each reset (episode boundaries in the command log)
        self.n_reads = 0
        self.n_write_attempts = 0
        self.connected = False
        self.stopped = False
        self._img_keys = self._spec.image_keys
        self._n_joints = len(self._spec.joint_names)
        self._reset_state()

    # ----- fault injection -----
    def inject(self, fault: Fault) -> None:
        """Switch a fault on (it stays until `clear`)."""
        self.faults.add(fault)

    def clear(self, fault: Fault | None = None) -> None:
        """Switch one fault (or all, when None) off."""
        if fault is None:
            self.faults.clear()
        else:
            self.faults.discard(fault)

    # ----- Robot -----
    @property
    def io_spec(self) -> IOSpec:
        """The spec this mock provides."""
        return self._spec

    @property
    def limits(self) -> RobotLimits:
        """The mock arm's declared limits (MOCK_LIMITS unless given), never the model's spec."""
        return self._limits

    def connect(self) -> None:
        """Mark connected; fails while Fault.DISCONNECT is injected."""
        if Fault.DISCONNECT in self.faults:
            raise RobotDisconnected("mock robot unreachable (Fault.DISCONNECT injected); clear the fault first")
        self.connected = True
        self.stopped = False

    def reset(self, seed: int | None = None) -> Observation:
        """New episode: random start and goal inside the workspace."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._reset_state()
        self.reset_at.append(len(self.commands))
        self.stopped = False
        return self.read()

    def read(self) -> Observation:
        """Current state with fresh stamps, unless a fault says otherwise."""
        if self.fault_hook is not None:
            self.fault_hook(self.n_reads, self)
        self.n_reads += 1
        if Fault.DISCONNECT in self.faults or not self.connected:
            self.connected = False
            raise RobotDisconnected("mock robot link lost (Fault.DISCONNECT); reconnect and re-arm")
        if Fault.READ_FAIL in self.faults:
            raise RobotReadError("mock READ_FAIL: state read failed")
        if Fault.SLOW_READ in self.faults:
            time.sleep(self.slow_read_s)
        now = time.monotonic()
        if Fault.STATE_STOPS not in self.faults:
            if Fault.FROZEN_STATE not in self.faults:
                self._proprio = self._assemble()
            self._state_stamp = now
        for k in self._img_keys:
            if Fault.STALE_CAMERA not in self.faults:
                self._images[k][0, 0, 0] = self.n_reads % 256  # a changing pixel: frames differ
                self._image_stamps[k] = now
        return Observation(
            arrays=self._arrays(), stamp_s=self._state_stamp, image_stamp_s=dict(self._image_stamps),
            seq=self.n_reads, info=self._info(),
        )  # fmt: skip

    def write(self, action: np.ndarray) -> None:
        """Apply an action: ee moves by action[:3] * max_ee_delta_m, gripper follows action[3]."""
        self._apply("action", np.asarray(action, dtype=np.float32))

    def hold(self) -> None:
        """Zero motion, gripper unchanged."""
        self._apply("hold", hold_action(self._spec, self._gripper_cmd))

    def stop(self) -> None:
        """Controlled stop: zero motion and inactive until connect()/reset()."""
        self._apply("stop", hold_action(self._spec, self._gripper_cmd))
        self.stopped = True

    def close(self) -> None:
        """Disconnect."""
        self.connected = False

    # ----- inspection helpers for tests -----
    @property
    def ee_pos_m(self) -> np.ndarray:
        """True end-effector position."""
        return self._ee.copy()

    def actions(self, kind: str | None = None) -> np.ndarray:
        """Recorded commands (N, 4), optionally only of one kind."""
        rows = [c.action for c in self.commands if kind is None or c.kind == kind]
        return np.array(rows, dtype=np.float32).reshape(-1, self._spec.action.shape[0])

    # ----- internals -----
    def _apply(self, kind: str, action: np.ndarray) -> None:
        self.n_write_attempts += 1
        if Fault.DISCONNECT in self.faults or not self.connected:
            raise RobotDisconnected("mock robot link lost; command not delivered")
        if Fault.WRITE_FAIL in self.faults:
            raise RobotWriteError("mock WRITE_FAIL: command rejected by the robot")
        self.commands.append(CommandRecord(time.monotonic(), kind, action.copy(), self._ee.copy()))
        if self.stopped:
            return  # an inactive robot ignores motion
        delta = np.asarray(action[:3], dtype=np.float64) * self._spec.max_ee_delta_m
        self._ee = self._ee + delta
        self._qvel[:3] = delta * self._spec.control_rate_hz
        self._qpos[:3] += delta
        self._gripper_cmd = float(action[-1])
        self._gripper_m = (self._gripper_cmd + 1.0) / 2.0 * GRIPPER_OPEN_M
        self._steps += 1

    def _reset_state(self) -> None:
        lo = np.asarray(self._spec.workspace_low_m, dtype=np.float64)
        hi = np.asarray(self._spec.workspace_high_m, dtype=np.float64)
        span = hi - lo
        self._ee = np.asarray(self._start_ee, dtype=np.float64) if self._start_ee else lo + span * 0.5
        self._goal = (lo + span * self._rng.uniform(0.3, 0.7, size=3)).astype(np.float32)
        self._qpos = np.zeros(self._n_joints)
        self._qvel = np.zeros(self._n_joints)
        self._gripper_cmd, self._gripper_m, self._steps = 1.0, GRIPPER_OPEN_M, 0
        self._proprio = self._assemble()
        now = time.monotonic()
        self._state_stamp = now
        n = next((t.shape[0] for t in self._spec.observations if t.name in self._img_keys), 84)
        self._images = {k: np.zeros((n, n, 3), dtype=np.uint8) for k in self._img_keys}
        self._image_stamps = {k: now for k in self._img_keys}

    def _assemble(self) -> np.ndarray:
        return assemble_proprio(self._qpos, self._qvel, self._ee, self._gripper_m)

    def _arrays(self) -> dict[str, np.ndarray]:
        proprio = self._proprio.copy()
        goal = self._goal.copy()
        images = {k: v.copy() for k, v in self._images.items()}
        if Fault.NAN_OBS in self.faults:
            proprio[0] = np.nan
        if Fault.INF_OBS in self.faults:
            goal[1] = np.inf
        if Fault.WRONG_DTYPE in self.faults:
            proprio = proprio.astype(np.float64)
        if Fault.WRONG_IMAGE_SHAPE in self.faults and "image" in images:
            images["image"] = np.zeros((64, 64, 3), dtype=np.uint8)
        out: dict[str, np.ndarray] = {**images, "proprio": proprio, "goal": goal}
        return {k: out[k] for k in self._spec.policy_keys if k in out}

    def _info(self) -> dict:
        success = bool(np.linalg.norm(self._ee - self._goal) < SUCCESS_RADIUS_M)
        limit = self._spec.episode_steps or 0
        truncated = bool(limit and self._steps >= limit)
        return {"is_success": success, "terminated": success and self.terminate_on_success, "truncated": truncated}
