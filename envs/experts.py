"""Scripted experts for the rh6 tasks, reading privileged state (allowed for experts): closed-loop controllers."""

from __future__ import annotations

import numpy as np

from .arm import MAX_EE_DELTA_M, ArmEnv

GRIP_OPEN, GRIP_CLOSE = 1.0, -1.0


def move_toward(tcp: np.ndarray, target: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """xyz action (in [-1, 1]) that moves the tool centre point toward target at up to full speed."""
    return np.clip(gain * (target - tcp) / MAX_EE_DELTA_M, -1.0, 1.0)


def head_toward(tcp: np.ndarray, target: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """Like move_toward, but scaled down as a whole instead of clipped per axis: the tool keeps its heading."""
    v = gain * (target - tcp) / MAX_EE_DELTA_M
    return v / max(1.0, float(np.abs(v).max()))


class ReachExpert:
    """Straight line to the goal, gripper open."""

    def reset(self) -> None:
        """No episode state."""

    def act(self, obs: dict, env: ArmEnv) -> np.ndarray:
        """Action for the current state."""
        e = env.unwrapped
        return np.array([*move_toward(e.tcp_pos, e.goal), GRIP_OPEN], np.float32)


class PushExpert:
    """A stateless vector field (the action is a function of the current state alone, which makes it easy to
    imitate): behind the object on the object->goal line and low, push along that line while steering the tool
    back onto it; anywhere else, travel to the stand-off point behind the object, high while far from it and
    coming down as it closes in, so the tool never sweeps the object off its line."""

    def __init__(self, standoff_m: float = 0.03, corridor_m: float = 0.012, lift_m: float = 0.06):
        self.standoff_m, self.corridor_m, self.lift_m = standoff_m, corridor_m, lift_m

    def reset(self) -> None:
        """No episode state."""

    def act(self, obs: dict, env: ArmEnv) -> np.ndarray:
        """Action for the current state."""
        e = env.unwrapped
        tcp, obj, goal = e.tcp_pos, e.privileged_state()[:3].astype(np.float64), e.goal
        half = e.object_half_size_m
        push_z = half * 0.8
        to_goal = goal[:2] - obj[:2]
        u = to_goal / (np.linalg.norm(to_goal) + 1e-9)  # push direction
        n = np.array([-u[1], u[0]])  # its normal on the table
        rel = tcp[:2] - obj[:2]
        along, lateral = rel @ u, rel @ n
        behind = obj[:2] - u * (half + self.standoff_m)
        # in the pushing corridor: behind the object, near its centre line, low enough to touch it
        in_corridor = (along < -half + 0.002) and abs(lateral) < self.corridor_m and tcp[2] < push_z + 0.015
        if in_corridor:
            # push toward a point just short of the goal (slowing down as the object gets there) and
            # steer back onto the centre line in proportion to the lateral error
            aim = goal[:2] - u * (half + 0.008) - n * lateral
            return np.array([*head_toward(tcp, np.array([*aim, push_z]), gain=0.6), GRIP_CLOSE], np.float32)
        d_behind = np.linalg.norm(tcp[:2] - behind)
        # height: up to lift_m above the push height while far from the stand-off point, down as it closes in
        z = push_z + self.lift_m * float(np.clip((d_behind - 0.01) / 0.03, 0.0, 1.0))
        return np.array([*head_toward(tcp, np.array([*behind, z])), GRIP_CLOSE], np.float32)


class PickPlaceExpert:
    """A stateless controller (the action is a function of the current state alone, which makes it easy to imitate):
    object between the fingers and the fingers closed on it -> carry it to the goal, lifting clear of the table first;
    object between the open fingers -> close; anywhere else -> fingers open, head for the object, high while far
    from it and coming down onto it as the tool lines up. A dropped object is simply picked up again."""

    def __init__(self, hover_m: float = 0.08, align_m: float = 0.006):
        self.hover_m, self.align_m = hover_m, align_m

    def reset(self) -> None:
        """No episode state."""

    def act(self, obs: dict, env: ArmEnv) -> np.ndarray:
        """Action for the current state."""
        e = env.unwrapped
        tcp, obj, goal = e.tcp_pos, e.privileged_state()[:3].astype(np.float64), e.goal
        width, opening = 2 * e.object_half_size_m, e.gripper_opening_m
        d = obj - tcp
        between = np.linalg.norm(d[:2]) < 0.012 and abs(d[2]) < 0.012  # object between the fingers
        if between and width - 0.008 < opening < width + 0.006:  # fingers closed on it: carry
            lift_z = min(goal[2] + 0.05, 0.2)
            target = goal + (tcp - obj)
            if np.linalg.norm(goal[:2] - obj[:2]) > 0.03:  # not there yet: clear the table before moving sideways
                target[2] = max(target[2], lift_z)
                if tcp[2] < lift_z - 0.03:
                    target[:2] = tcp[:2]
            return np.array([*head_toward(tcp, target, gain=0.8), GRIP_CLOSE], np.float32)
        if between and opening >= width + 0.006:  # in place with the fingers open: close
            return np.array([0.0, 0.0, 0.0, GRIP_CLOSE], np.float32)
        # open the fingers and line up over the object, coming down onto it as the tool lines up
        dxy = float(np.linalg.norm(d[:2]))
        z = obj[2] - 0.003 + self.hover_m * float(np.clip((dxy - self.align_m) / 0.02, 0.0, 1.0))
        if opening < width + 0.006 and tcp[2] < obj[2] + 0.03:  # fingers still (nearly) closed next to it: back up
            z = max(z, obj[2] + 0.05)
        return np.array([*head_toward(tcp, np.array([obj[0], obj[1], z])), GRIP_OPEN], np.float32)


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
