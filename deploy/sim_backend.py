"""MujocoRobot: the in-process simulated robot (the only deploy module that touches MuJoCo, lazily).

Wraps `robo_hybrid.envs.make_env(task, **env_kwargs)`: a gymnasium env whose observation dict holds the
policy keys plus "privileged" (never passed on: the policy must not see simulator state), whose
`env.unwrapped.io_spec` is its IOSpec, and whose info carries "is_success". Each `write` steps the env one
control period; the observation it produced is stamped with the monotonic time the step finished.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from robo_hybrid.spec import IOSpec

from .robot import Observation, Robot, RobotError, RobotLimits, RobotReadError, RobotWriteError, hold_action


def env_kwargs_for_spec(spec: IOSpec) -> dict:
    """make_env keyword arguments that reproduce a model's observation layout and rate (EnvConfig fields)."""
    images = [t for t in spec.observations if t.dtype == "uint8"]
    kw: dict[str, Any] = {"control_rate_hz": float(spec.control_rate_hz)}
    if images:
        kw["image_size"] = int(images[0].shape[0])
    kw["wrist_camera"] = "image_wrist" in spec.policy_keys
    return kw


class MujocoRobot(Robot):
    """A robo_hybrid.envs task stepped synchronously: one `write` (or `hold`) = one env step."""

    supports_reset = True

    def __init__(self, task: str, seed: int = 0, **env_kwargs) -> None:
        self.task, self.seed, self.env_kwargs = task, seed, env_kwargs
        self.env = None
        self._spec: IOSpec | None = None
        self._obs: dict | None = None
        self._info: dict = {}
        self._stamp = 0.0
        self._done = False
        self._stopped = False
        self._gripper = 0.0
        self.n_steps = 0
        self.n_ignored_writes = 0

    @property
    def io_spec(self) -> IOSpec:
        """The env's spec (available after connect)."""
        if self._spec is None:
            raise RobotError("MujocoRobot.io_spec is known only after connect(); call connect() first")
        return self._spec

    @property
    def limits(self) -> RobotLimits:
        """The simulated arm's limits: its env's workspace and speed, and the MJCF's joint ranges when it has them."""
        base = RobotLimits.from_spec(self.io_spec)
        model = getattr(getattr(self.env, "unwrapped", None), "model", None)
        try:  # MuJoCo model: jnt_range rows of the spec's joints (limited joints only)
            ids = [model.joint(j).id for j in self.io_spec.joint_names]  # type: ignore[union-attr]
            lo = tuple(float(model.jnt_range[i][0]) for i in ids)  # type: ignore[union-attr]
            hi = tuple(float(model.jnt_range[i][1]) for i in ids)  # type: ignore[union-attr]
            if all(a < b for a, b in zip(lo, hi, strict=True)):
                return RobotLimits(base.workspace_low_m, base.workspace_high_m, base.max_ee_speed_m_s, lo, hi)
        except Exception:  # noqa: BLE001 - an env without a MuJoCo model (or unnamed joints): no joint limits
            pass
        return base

    def connect(self) -> None:
        """Create the env (first call) and reset it; later calls only leave the stopped state."""
        self._stopped = False
        if self.env is not None:
            return
        try:
            from robo_hybrid.envs import make_env  # lazy: mujoco and gymnasium load only for the sim backend
        except ImportError as e:
            raise RobotError(
                f"the sim backend needs robo_hybrid.envs.make_env ({e}). Fix: pip install 'robo-hybrid[sim]'"
            ) from e
        self.env = make_env(self.task, **self.env_kwargs)
        self._spec = self.env.unwrapped.io_spec
        self.reset(self.seed)

    def reset(self, seed: int | None = None) -> Observation:
        """Start a new episode."""
        if self.env is None:
            raise RobotError("MujocoRobot.reset before connect(); call connect() first")
        obs, info = self.env.reset(seed=seed)
        self._store(obs, info, False, False)
        self._gripper = self._measured_gripper_cmd()
        self._stopped = False
        return self.read()

    def read(self) -> Observation:
        """The observation of the last step, stamped when that step finished."""
        if self._obs is None:
            raise RobotReadError("MujocoRobot.read before connect(); call connect() first")
        arrays = {k: self._obs[k] for k in self.io_spec.policy_keys}  # "privileged" stays in the simulator
        return Observation(
            arrays=arrays, stamp_s=self._stamp, image_stamp_s={k: self._stamp for k in self.io_spec.image_keys},
            seq=self.n_steps, info=dict(self._info),
        )  # fmt: skip

    def write(self, action: np.ndarray) -> None:
        """Step the env one control period with `action`."""
        if self.env is None:
            raise RobotWriteError("MujocoRobot.write before connect(); call connect() first")
        if self._done or self._stopped:
            self.n_ignored_writes += 1
            return
        a = np.asarray(action, dtype=np.float32)
        try:
            obs, _, terminated, truncated, info = self.env.step(a)
        except Exception as e:  # a physics blow-up is a hardware fault for the controller
            raise RobotWriteError(f"env.step failed: {e!r}") from e
        self._gripper = float(a[-1])
        self.n_steps += 1
        self._store(obs, info, bool(terminated), bool(truncated))

    def hold(self) -> None:
        """Step with zero motion and the gripper unchanged."""
        self.write(hold_action(self.io_spec, self._gripper))

    def stop(self) -> None:
        """One zero-motion step, then ignore commands until connect()/reset()."""
        if self.env is not None and not self._done and not self._stopped:
            self.hold()
        self._stopped = True

    def close(self) -> None:
        """Close the env (and its renderers)."""
        if self.env is not None:
            self.env.close()
            self.env = None

    def _measured_gripper_cmd(self) -> float:
        """The gripper command that keeps the measured opening (a hold must not move the fingers)."""
        spec = self.io_spec
        open_m = spec.extras.get("gripper_open_m")
        if open_m and "gripper.opening_m" in spec.proprio_layout and self._obs is not None:
            opening = float(self._obs["proprio"][spec.proprio_layout.index("gripper.opening_m")])
            return float(np.clip(2.0 * opening / float(open_m) - 1.0, -1.0, 1.0))
        return 1.0  # the tasks reset with the gripper open (+1)

    def _store(self, obs: dict, info: dict, terminated: bool, truncated: bool) -> None:
        self._obs = obs
        self._stamp = time.monotonic()
        self._done = terminated or truncated
        self._info = {"is_success": bool(info.get("is_success", False)), "terminated": terminated,
                      "truncated": truncated}  # fmt: skip
