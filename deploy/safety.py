"""Safety filter between the policy and the robot (on by default), and the latched e-stop.

Per cycle the loop asks `check_obs` whether the observation may be acted on, then passes the policy's
action through `filter`: finite check -> clamp to bounds -> rate limit (libfranka-style: jerk, then
acceleration, then velocity) -> workspace box (motion back inward only). Anything it cannot make safe
becomes a hold: zero end-effector motion with the gripper command unchanged. Every event is counted.
"""

from __future__ import annotations

import math
import os
import signal
import threading
from collections import Counter
from dataclasses import dataclass

import numpy as np

from robo_hybrid.spec import IOSpec, SpecMismatchError

from .robot import Observation, RobotLimits, hold_action

_EE_KEYS = ("ee.x_m", "ee.y_m", "ee.z_m")
_EE_DELTA = ("ee_delta_x", "ee_delta_y", "ee_delta_z")
_GRIPPER_KEY = "gripper.opening_m"


def stale_limit_s(period_s: float) -> float:
    """Observation age beyond which the controller holds: max(2.5 control periods, 50 ms)."""
    return max(2.5 * period_s, 0.05)


@dataclass
class SafetyConfig:
    """Safety filter settings. Finite checks, bounds, watchdogs and the e-stop cannot be switched off."""

    enabled: bool = True
    """Rate limit; False leaves only what can never be disabled (finite checks, bounds, the robot's box and speed,
    watchdogs, e-stop)."""
    max_action_step: float = 1.0
    """Largest change of an xyz action component per control step (action units; acceleration-like). On rh6 at
    25 Hz one unit is 2 cm per step, so 1.0 is ~12.5 m/s^2: about a Franka arm's Cartesian limit (13 m/s^2)."""
    max_action_jerk: float = 2.0
    """Largest change of that per-step change per step (action units; jerk-like). 2.0 lets a full reversal of
    acceleration through in one step, as the arm's own jerk limit (thousands of m/s^3) would."""
    rate_limit_gripper: bool = False
    """Also rate-limit the gripper command (off: grippers were trained with open/close steps)."""
    workspace: bool = True
    """Clamp the end-effector target into the spec's workspace box (needs ee entries in proprio_layout)."""
    stale_limit_s: float | None = None
    """Observation age that triggers a hold; None = max(2.5 periods, 50 ms)."""
    frozen_check: bool = True
    """Hold when proprio stays bit-identical for longer than the stale limit while motion is commanded."""
    estop_file: str | None = None
    """E-stop when this file exists (latched; remove it, then re-arm)."""
    estop_signal: bool = True
    """E-stop on SIGUSR1 (installed by the loop when it runs in the main thread)."""
    gripper_open_m: float | None = None
    """Gripper opening at command +1, to re-arm from the measured opening; None = spec.extras['gripper_open_m']."""

    def __post_init__(self) -> None:
        if self.max_action_step <= 0 or self.max_action_jerk <= 0:
            raise ValueError("safety.max_action_step and max_action_jerk must be > 0; use enabled=False to disable")
        if self.stale_limit_s is not None and self.stale_limit_s <= 0:
            raise ValueError("safety.stale_limit_s must be > 0 (or None for the default)")


class EStop:
    """Latched emergency stop from SIGUSR1, a file's existence, or `trigger()`; cleared only by `reset()`."""

    def __init__(self, file_path: str | None = None, use_signal: bool = True) -> None:
        self.file_path = file_path
        self.use_signal = use_signal
        self._flag = False
        self._reason = ""
        self._prev_handler = None

    def install(self) -> bool:
        """Install the SIGUSR1 handler (main thread only); returns whether it was installed."""
        if not self.use_signal or threading.current_thread() is not threading.main_thread():
            return False
        self._prev_handler = signal.signal(signal.SIGUSR1, self._on_signal)
        return True

    def uninstall(self) -> None:
        """Restore the previous SIGUSR1 handler."""
        if self._prev_handler is not None:
            signal.signal(signal.SIGUSR1, self._prev_handler)
            self._prev_handler = None

    def _on_signal(self, signum, frame) -> None:
        self.trigger("SIGUSR1")

    def trigger(self, reason: str = "api") -> None:
        """Latch the e-stop."""
        self._flag, self._reason = True, reason

    def poll(self) -> bool:
        """True while latched; the file is checked each call (a stat, a few microseconds)."""
        if not self._flag and self.file_path and os.path.exists(self.file_path):
            self.trigger(f"file {self.file_path}")
        return self._flag

    @property
    def reason(self) -> str:
        """What latched it."""
        return self._reason

    def reset(self) -> None:
        """Unlatch; raises while the e-stop file still exists."""
        if self.file_path and os.path.exists(self.file_path):
            raise RuntimeError(f"e-stop file {self.file_path} still exists; remove it before re-arming")
        self._flag, self._reason = False, ""


class SafetyFilter:
    """Makes every command safe or turns it into a hold; counts each event in `counters`."""

    def __init__(
        self,
        spec: IOSpec,
        config: SafetyConfig | None = None,
        period_s: float | None = None,
        robot_limits: RobotLimits | None = None,
    ) -> None:
        self.spec = spec
        self.cfg = config or SafetyConfig()
        self.period_s = period_s or spec.control_dt_s
        self.stale_limit_s = self.cfg.stale_limit_s or stale_limit_s(self.period_s)
        if tuple(spec.action_meaning[:3]) != _EE_DELTA or spec.action.shape != (4,):
            raise ValueError(
                f"the safety filter handles end-effector delta + gripper actions {_EE_DELTA + ('gripper',)}, but this "
                f"spec's actions mean {list(spec.action_meaning)} {spec.action.shape}. Fix: add limits for this action "
                "space to deploy/safety.py before running it on a robot"
            )
        self.counters: Counter[str] = Counter()
        self.estop = EStop(self.cfg.estop_file, self.cfg.estop_signal)
        self.latched: str | None = None
        n = spec.action.shape[0]
        self._low = np.full(n, -1.0 if spec.action.low is None else spec.action.low, dtype=np.float32)
        self._high = np.full(n, 1.0 if spec.action.high is None else spec.action.high, dtype=np.float32)
        layout = tuple(spec.proprio_layout)
        self._ee_idx = [layout.index(k) for k in _EE_KEYS] if all(k in layout for k in _EE_KEYS) else None
        self._grip_idx = layout.index(_GRIPPER_KEY) if _GRIPPER_KEY in layout else None
        self.workspace_active = bool(self._ee_idx is not None and spec.max_ee_delta_m > 0 and self.cfg.workspace)
        self.set_robot_limits(robot_limits)
        self._low_l, self._high_l = self._low.tolist(), self._high.tolist()
        self._gripper_open_m = self.cfg.gripper_open_m or spec.extras.get("gripper_open_m")
        self._gripper = 0.0
        self._prev_proprio: bytes | None = None
        self._frozen_since: float | None = None
        self._frozen = False
        self.reset_motion()

    def set_robot_limits(self, limits: RobotLimits | None) -> None:
        """Enforce the intersection of the robot's declared limits and the model's spec (a model only narrows)."""
        spec = self.spec
        lo, hi = list(spec.workspace_low_m), list(spec.workspace_high_m)
        self._max_step_norm = math.inf  # largest xyz action norm per step (the speed limit in action units)
        self._joint_idx: list[int] = []
        if limits is not None:
            lo = [max(a, b) for a, b in zip(lo, limits.workspace_low_m, strict=True)]
            hi = [min(a, b) for a, b in zip(hi, limits.workspace_high_m, strict=True)]
            if any(a > b for a, b in zip(lo, hi, strict=True)):
                raise SpecMismatchError(
                    f"the model's workspace {list(spec.workspace_low_m)}..{list(spec.workspace_high_m)} does not "
                    f"overlap the robot's {list(limits.workspace_low_m)}..{list(limits.workspace_high_m)}. "
                    "Fix: use a model trained for this robot's workspace"
                )
            if spec.max_ee_delta_m > 0 and math.isfinite(limits.max_ee_speed_m_s):
                self._max_step_norm = limits.max_ee_speed_m_s * self.period_s / spec.max_ee_delta_m
            n = len(spec.joint_names)
            if len(limits.joint_pos_low_rad) == n and n:
                self._joint_idx = [spec.proprio_layout.index(f"{j}.pos_rad") for j in spec.joint_names
                                   if f"{j}.pos_rad" in spec.proprio_layout]  # fmt: skip
                self._joint_lo, self._joint_hi = list(limits.joint_pos_low_rad), list(limits.joint_pos_high_rad)
        self._ws_low, self._ws_high = [float(x) for x in lo], [float(x) for x in hi]
        self.robot_limits = limits

    @property
    def workspace_m(self) -> tuple[list[float], list[float]]:
        """The enforced workspace box (low, high): the robot's and the model's intersection."""
        return list(self._ws_low), list(self._ws_high)

    # ----- state -----
    def reset_motion(self, gripper: float | None = None) -> None:
        """Forget motion history (after a hold / re-arm): the next command ramps up from zero."""
        self._v = [0.0, 0.0, 0.0]  # last commanded xyz action ("velocity")
        self._dv = [0.0, 0.0, 0.0]  # its last per-step change ("acceleration")
        if gripper is not None:
            self._gripper = float(np.clip(gripper, self._low[-1], self._high[-1]))

    @property
    def last_gripper(self) -> float:
        """The gripper command a hold keeps."""
        return self._gripper

    def hold(self, reason: str) -> np.ndarray:
        """A hold command (zero motion, gripper unchanged); counts `reason`."""
        self.counters["holds"] += 1
        self.counters[reason] += 1
        self.reset_motion()
        return hold_action(self.spec, self._gripper)

    def latch(self, reason: str) -> None:
        """Enter a latched state (e-stop, policy error, hardware error) that only `rearm` clears."""
        if self.latched is None:
            self.counters[f"latched_{reason}"] += 1
        self.latched = self.latched or reason

    def rearm(self, obs: Observation, now_s: float) -> None:
        """Clear the latch starting from the measured state; raises if the e-stop or observation is not clear."""
        if self.estop.poll():
            self.estop.reset()  # raises while the e-stop file is present
        problem = self.check_obs(obs, now_s)
        if problem is not None:
            raise RuntimeError(f"cannot re-arm: the measured observation is not usable ({problem}); fix it first")
        gripper = None
        if self._grip_idx is not None and self._gripper_open_m:
            opening = float(obs.arrays["proprio"][self._grip_idx])
            gripper = 2.0 * opening / float(self._gripper_open_m) - 1.0  # measured opening -> command
        self.reset_motion(gripper)
        self._frozen, self._frozen_since = False, None
        self.latched = None
        self.counters["rearm"] += 1

    # ----- observation checks -----
    def check_obs(self, obs: Observation, now_s: float) -> str | None:
        """Why `obs` must not be acted on ('bad_obs', 'nonfinite_obs', 'stale_*', 'frozen_state'), or None."""
        try:
            self.spec.check_obs(obs.arrays)
        except SpecMismatchError:
            return "bad_obs"
        for t in self.spec.observations:
            if t.dtype != "uint8" and not np.isfinite(obs.arrays[t.name]).all():
                return "nonfinite_obs"
        if now_s - obs.stamp_s > self.stale_limit_s:
            return "stale_state"
        for key in self.spec.image_keys:
            if now_s - obs.image_stamp_s.get(key, obs.stamp_s) > self.stale_limit_s:
                return "stale_image"
        if self.cfg.frozen_check and self._is_frozen(obs, now_s):
            return "frozen_state"
        if self._joint_idx and len(self._joint_idx) == len(self._joint_lo):
            q = obs.arrays["proprio"][self._joint_idx].tolist()
            if any(not lo <= x <= hi for x, lo, hi in zip(q, self._joint_lo, self._joint_hi, strict=True)):
                return "joint_limit"  # the arm is past a soft limit: hold, a person must move it back
        return None

    def _is_frozen(self, obs: Observation, now_s: float) -> bool:
        """Bit-identical proprio while motion is commanded, for longer than the stale limit (latched until it moves)."""
        cur = obs.arrays["proprio"].tobytes() if "proprio" in obs.arrays else None
        same = cur is not None and cur == self._prev_proprio
        self._prev_proprio = cur
        if not same:
            self._frozen, self._frozen_since = False, None
            return False
        if self._frozen:
            return True
        if max(abs(x) for x in self._v) < 1e-3:  # nothing commanded: an arm at rest may legitimately not change
            self._frozen_since = None
            return False
        self._frozen_since = self._frozen_since if self._frozen_since is not None else now_s
        self._frozen = now_s - self._frozen_since > self.stale_limit_s
        return self._frozen

    # ----- action filter -----
    # Plain Python floats below: for 4 numbers they are ~10x faster than numpy calls (this runs every cycle).
    def filter(self, action: np.ndarray, obs: Observation) -> tuple[np.ndarray, bool]:
        """(safe action, is_hold): finite -> clamp -> rate limit -> speed -> workspace; non-finite becomes a hold."""
        a = np.asarray(action, dtype=np.float32)
        if a.shape != self.spec.action.shape:
            return self.hold("bad_action_shape"), True
        req = a.tolist()
        if not all(math.isfinite(x) for x in req):
            return self.hold("nonfinite_action"), True
        out = [min(max(x, lo), hi) for x, lo, hi in zip(req, self._low_l, self._high_l, strict=True)]
        if out != req:
            self.counters["clamped"] += 1
        if self.cfg.enabled:
            out = self._rate_limit(out)
        out = self._speed_limit(out)  # the robot's declared limits are never switched off with `enabled`
        if self.workspace_active:
            out = self._workspace(out, obs.arrays["proprio"])
        self._v = out[:3]
        self._gripper = out[-1]
        self.counters["actions"] += 1
        return np.array(out, dtype=np.float32), False

    def _rate_limit(self, a: list[float]) -> list[float]:
        """libfranka's limitRate order in per-step units: clamp jerk, then acceleration, then velocity."""
        J, A = self.cfg.max_action_jerk, self.cfg.max_action_step
        out = list(a)
        dv_new = [0.0, 0.0, 0.0]
        for i in range(3):
            jerk = min(max((a[i] - self._v[i]) - self._dv[i], -J), J)  # requested change of the per-step change
            dv = min(max(self._dv[i] + jerk, -A), A)
            out[i] = min(max(self._v[i] + dv, self._low_l[i]), self._high_l[i])
            dv_new[i] = out[i] - self._v[i]
        self._dv = dv_new
        if self.cfg.rate_limit_gripper:
            out[-1] = min(max(a[-1], self._gripper - A), self._gripper + A)
        if any(abs(x - y) > 1e-6 for x, y in zip(out, a, strict=True)):
            self.counters["rate_limited"] += 1
        return out

    def _speed_limit(self, a: list[float]) -> list[float]:
        """Scale the xyz command down to the robot's declared end-effector speed."""
        norm = math.sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2])
        if norm <= self._max_step_norm:
            return a
        k = self._max_step_norm / norm
        self.counters["speed_limited"] += 1
        out = [a[0] * k, a[1] * k, a[2] * k, *a[3:]]
        self._dv = [out[i] - self._v[i] for i in range(3)]
        return out

    def _workspace(self, a: list[float], proprio: np.ndarray) -> list[float]:
        """Clamp the ee target into the box; an ee already outside may only move back inward."""
        assert self._ee_idx is not None
        ee = proprio[self._ee_idx].tolist()
        d = self.spec.max_ee_delta_m
        out = list(a)
        for i in range(3):
            lo = min(self._ws_low[i], ee[i])  # outside below: may not go lower than where it is
            hi = max(self._ws_high[i], ee[i])  # outside above: may not go higher
            target = min(max(ee[i] + a[i] * d, lo), hi)
            out[i] = (target - ee[i]) / d
        if any(abs(x - y) > 1e-6 for x, y in zip(out[:3], a[:3], strict=True)):
            self.counters["workspace_clamped"] += 1
            self._dv = [out[i] - self._v[i] for i in range(3)]  # keep the limiter consistent with what was sent
            return out
        return a
