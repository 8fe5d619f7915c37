"""Scripted experts for the rh6 tasks: closed-loop phase machines that read privileged state (allowed for experts)."""

from __future__ import annotations

import numpy as np

from .arm import MAX_EE_DELTA_M, ArmEnv

GRIP_OPEN, GRIP_CLOSE = 1.0, -1.0


def move_toward(tcp: np.ndarray, target: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """xyz action (in [-1, 1]) that moves the tool centre point toward target at up to full speed."""
    return np.clip(gain * (target - tcp) / MAX_EE_DELTA_M, -1.0, 1.0)


class ReachExpert:
    """Straight line to the goal, gripper open."""

    def reset(self) -> None:
        """No episode state."""

    def act(self, obs: dict, env: ArmEnv) -> np.ndarray:
        """Action for the current state."""
        e = env.unwrapped
        return np.array([*move_toward(e.tcp_pos, e.goal), GRIP_OPEN], np.float32)


class PushExpert:
    """Go behind the object on the goal line, lower, push; back off and re-align when it drifts sideways."""

    def __init__(self, standoff_m: float = 0.02, lateral_tol_m: float = 0.012):
        self.standoff_m, self.lateral_tol_m = standoff_m, lateral_tol_m
        self.phase = "approach"

    def reset(self) -> None:
        """Start a new episode."""
        self.phase = "approach"

    def act(self, obs: dict, env: ArmEnv) -> np.ndarray:
        """Action for the current state."""
        e = env.unwrapped
        tcp, obj, goal = e.tcp_pos, e.privileged_state()[:3].astype(np.float64), e.goal
        half = e.object_half_size_m
        to_goal = goal[:2] - obj[:2]
        direction = to_goal / (np.linalg.norm(to_goal) + 1e-9)
        behind = obj[:2] - direction * (half + self.standoff_m + 0.012)
        push_z = half * 0.8
        # lateral offset of the tool from the object->goal line
        rel = tcp[:2] - obj[:2]
        lateral = abs(rel[0] * direction[1] - rel[1] * direction[0])
        along = rel @ direction
        if self.phase == "push" and (lateral > self.lateral_tol_m * 1.6 or along > 0):
            self.phase = "approach"
        if self.phase == "approach":
            if np.linalg.norm(tcp[:2] - behind) > 0.01:
                above = np.array([*behind, max(push_z + 0.06, tcp[2])])  # stay above the object while moving
                return np.array([*move_toward(tcp, above), GRIP_CLOSE], np.float32)
            self.phase = "descend"
        if self.phase == "descend":
            target = np.array([*behind, push_z])
            if abs(tcp[2] - push_z) > 0.008:
                return np.array([*move_toward(tcp, target), GRIP_CLOSE], np.float32)
            self.phase = "push"
        # push: aim the tool at a point just behind where the object must end up, correcting sideways drift
        aim = goal[:2] - direction * (half + 0.008)
        target = np.array([*aim, push_z])
        a = move_toward(tcp, target, gain=0.6)
        return np.array([*a, GRIP_CLOSE], np.float32)


class PickPlaceExpert:
    """Above the object, open, descend, close, lift, carry to the goal; start over if the object is dropped."""

    def __init__(self):
        self.phase, self.close_steps = "above", 0

    def reset(self) -> None:
        """Start a new episode."""
        self.phase, self.close_steps = "above", 0

    def act(self, obs: dict, env: ArmEnv) -> np.ndarray:
        """Action for the current state."""
        e = env.unwrapped
        tcp, obj, goal = e.tcp_pos, e.privileged_state()[:3].astype(np.float64), e.goal
        if self.phase in ("lift", "carry") and np.linalg.norm(obj - tcp) > 0.03:
            self.phase, self.close_steps = "above", 0  # dropped it
        if self.phase == "above":
            target = np.array([obj[0], obj[1], obj[2] + 0.08])
            if np.linalg.norm(tcp[:2] - obj[:2]) > 0.008 or abs(tcp[2] - target[2]) > 0.03:
                return np.array([*move_toward(tcp, target), GRIP_OPEN], np.float32)
            self.phase = "descend"
        if self.phase == "descend":
            target = np.array([obj[0], obj[1], obj[2] - 0.003])
            if abs(tcp[2] - target[2]) > 0.006 or np.linalg.norm(tcp[:2] - obj[:2]) > 0.008:
                return np.array([*move_toward(tcp, target), GRIP_OPEN], np.float32)
            self.phase = "close"
        if self.phase == "close":
            self.close_steps += 1
            if self.close_steps < 6:
                return np.array([0, 0, 0, GRIP_CLOSE], np.float32)
            self.phase = "lift"
        if self.phase == "lift":
            lift_z = min(goal[2] + 0.05, 0.2)  # clear the table before carrying sideways
            if tcp[2] < lift_z - 0.02:
                return np.array([*move_toward(tcp, np.array([tcp[0], tcp[1], lift_z])), GRIP_CLOSE], np.float32)
            self.phase = "carry"
        a = move_toward(tcp, goal + (tcp - obj), gain=0.8)
        return np.array([*a, GRIP_CLOSE], np.float32)


def make_expert(env):
    """The scripted expert for an env (own rh6 tasks or Fetch adapters)."""
    e = env.unwrapped
    name = getattr(getattr(e, "task", None), "name", None) or getattr(e, "task_name", None)
    if isinstance(e, ArmEnv):
        return {"reach": ReachExpert, "push": PushExpert, "pickplace": PickPlaceExpert}[e.task.name]()
    if name is not None and str(name).startswith("fetch"):
        from .fetch_expert import FetchExpert  # noqa: PLC0415

        return FetchExpert(name)
    raise ValueError(f"no scripted expert for {type(e).__name__}")
