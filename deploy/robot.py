"""The Robot interface the controller loop talks to, and the Observation it reads.

Every backend (in-process MuJoCo, the ZeroMQ sim-server client, the mock, a real driver) implements
`Robot`. The controller never touches hardware-specific code; it only calls the methods below.

How a real driver implements Robot (sketch; numpy + your vendor SDK, never torch)::

    import time
    import numpy as np
    from robo_hybrid.spec import IOSpec, assemble_proprio
    from robo_hybrid.deploy.robot import Observation, Robot, RobotReadError, RobotWriteError

    class MyArm(Robot):
        def __init__(self, spec: IOSpec, host: str):
            self._spec, self._host, self._last_gripper = spec, host, 0.0

        @property
        def io_spec(self) -> IOSpec:
            return self._spec            # the spec this driver provides; must match the model's

        def connect(self) -> None:
            self._arm = vendor.connect(self._host)   # open links, start camera threads

        def read(self) -> Observation:
            try:
                s = self._arm.state()                # joint pos/vel, ee pose, gripper, sensor time
                img, img_t = self._camera.latest()   # newest frame and its capture time
            except vendor.Error as e:
                raise RobotReadError(f"arm state read failed: {e}") from e
            proprio = assemble_proprio(s.q, s.dq, s.ee_pos, s.gripper_width)   # shared with the sim envs
            return Observation(
                arrays={"image": img, "proprio": proprio, "goal": self._goal},
                stamp_s=s.time_monotonic_s,          # time.monotonic() of the measurement, not receipt
                image_stamp_s={"image": img_t},
            )

        def write(self, action: np.ndarray) -> None:
            # action: float32 (4,), already filtered by the SafetyFilter: [dx, dy, dz, gripper] in [-1, 1];
            # xyz * spec.max_ee_delta_m is the end-effector displacement for this control step.
            try:
                self._arm.cartesian_delta(action[:3] * self._spec.max_ee_delta_m, gripper=action[3])
            except vendor.Error as e:
                raise RobotWriteError(f"command rejected: {e}") from e
            self._last_gripper = float(action[3])

        def hold(self) -> None:
            self._arm.cartesian_delta(np.zeros(3), gripper=self._last_gripper)   # zero motion

        def stop(self) -> None:
            self._arm.controlled_stop()              # decelerate, then brakes / inactive

        def close(self) -> None:
            self._arm.disconnect()

Keep the vendor's own robot-side watchdog enabled: if commands stop arriving, the arm must decelerate
to zero velocity on its own (the ZeroMQ sim server in `sim_server.py` models exactly that).
"""

from __future__ import annotations

import abc
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from robo_hybrid.spec import IOSpec


class RobotError(RuntimeError):
    """A robot backend failed (hardware, driver or transport)."""


class RobotReadError(RobotError):
    """Reading state or images from the robot failed."""


class RobotWriteError(RobotError):
    """Sending a command to the robot failed."""


class RobotDisconnected(RobotError):
    """The link to the robot is gone (no data for longer than the backend's disconnect time-out)."""


@dataclass
class Observation:
    """One read of the robot: raw policy inputs plus monotonic timestamps per stream."""

    arrays: dict[str, np.ndarray]
    """Policy inputs keyed by `IOSpec.policy_keys` (raw units; the exported graph normalizes)."""
    stamp_s: float
    """time.monotonic() at which the state stream (proprio, goal) was measured."""
    image_stamp_s: dict[str, float] = field(default_factory=dict)
    """time.monotonic() at which each camera frame was captured, keyed by image key."""
    seq: int = 0
    """Sequence number of the state message (backends that have one)."""
    info: dict = field(default_factory=dict)
    """Simulation only: 'is_success', 'terminated', 'truncated'. Empty on a real robot."""

    def oldest_stamp_s(self) -> float:
        """The oldest timestamp across all streams (state and every camera)."""
        return min([self.stamp_s, *self.image_stamp_s.values()])


@dataclass(frozen=True)
class RobotLimits:
    """What the robot itself allows, declared by its backend from its own configuration (never from a model file).

    The safety filter enforces the intersection of these and the model's spec: a model can narrow them, not widen.
    """

    workspace_low_m: tuple[float, float, float]
    workspace_high_m: tuple[float, float, float]
    max_ee_speed_m_s: float = math.inf
    """Largest commanded end-effector speed (norm of the xyz displacement per second)."""
    joint_pos_low_rad: tuple[float, ...] = ()
    """Soft joint limits (empty = the backend enforces none beyond its own hardware limits)."""
    joint_pos_high_rad: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        lo, hi = np.asarray(self.workspace_low_m, float), np.asarray(self.workspace_high_m, float)
        if lo.shape != (3,) or hi.shape != (3,) or not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise ValueError(f"robot workspace {self.workspace_low_m}..{self.workspace_high_m}: need 3 finite values")
        if (lo > hi).any():
            raise ValueError(f"robot workspace {self.workspace_low_m}..{self.workspace_high_m}: low > high")
        if not self.max_ee_speed_m_s > 0:
            raise ValueError(f"robot max_ee_speed_m_s={self.max_ee_speed_m_s}: must be > 0")
        if len(self.joint_pos_low_rad) != len(self.joint_pos_high_rad):
            raise ValueError("robot joint limits: low and high must have the same length")

    def to_dict(self) -> dict:
        """Plain-JSON dict (infinite speed as None)."""
        d = asdict(self)
        d["max_ee_speed_m_s"] = None if math.isinf(self.max_ee_speed_m_s) else self.max_ee_speed_m_s
        return d

    @staticmethod
    def from_dict(d: dict) -> RobotLimits:
        """Inverse of to_dict; ValueError / TypeError when malformed."""
        speed = d.get("max_ee_speed_m_s")
        low, high = (tuple(float(x) for x in d[k]) for k in ("workspace_low_m", "workspace_high_m"))
        return RobotLimits(low, high,  # type: ignore[arg-type]
                           math.inf if speed is None else float(speed),
                           tuple(float(x) for x in d.get("joint_pos_low_rad", ())),
                           tuple(float(x) for x in d.get("joint_pos_high_rad", ())))  # fmt: skip

    @staticmethod
    def from_spec(spec: IOSpec) -> RobotLimits:
        """Limits of a simulated robot whose env declares `spec`: its box, and one full action step per period."""
        speed = spec.max_ee_delta_m * spec.control_rate_hz * math.sqrt(3) if spec.max_ee_delta_m > 0 else math.inf
        return RobotLimits(spec.workspace_low_m, spec.workspace_high_m, speed)


def hold_action(spec: IOSpec, gripper: float) -> np.ndarray:
    """Zero end-effector motion with the gripper command kept at `gripper` (the safe setpoint)."""
    a = np.zeros(spec.action.shape, dtype=np.float32)
    a[-1] = gripper
    return a


class Robot(abc.ABC):
    """Interface between the controller loop and a robot (real, simulated or mock)."""

    supports_reset: bool = False
    """True for simulators that can start a new episode (`reset`)."""

    @property
    @abc.abstractmethod
    def io_spec(self) -> IOSpec:
        """The I/O spec this robot provides (observation keys/shapes, action meaning, rate)."""

    @property
    def limits(self) -> RobotLimits:
        """The robot's own limits; backends override this from their configuration (the default: its spec's box)."""
        return RobotLimits.from_spec(self.io_spec)

    @abc.abstractmethod
    def connect(self) -> None:
        """Open links and start streams; raise RobotError when the robot is unreachable."""

    @abc.abstractmethod
    def read(self) -> Observation:
        """Latest observation with per-stream monotonic stamps; raise RobotReadError on failure."""

    @abc.abstractmethod
    def write(self, action: np.ndarray) -> None:
        """Send one filtered action (float32, spec.action.shape); raise RobotWriteError on failure."""

    @abc.abstractmethod
    def hold(self) -> None:
        """Command zero motion with the gripper unchanged."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Controlled stop: decelerate and go inactive until reconnected / re-armed."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends need nothing
        """Release resources (idempotent)."""

    def reset(self, seed: int | None = None) -> Observation:
        """Start a new episode (simulators only)."""
        raise NotImplementedError(f"{type(self).__name__} cannot reset; episodes need a simulated robot")

    def __enter__(self) -> Robot:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
