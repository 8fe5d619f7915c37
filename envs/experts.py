"""Scripted experts of every task (rh6 arm and Fetch adapters): closed-loop controllers that may read privileged
state (allowed for experts, never for the policy). `make_expert(env)` picks the one for an env.
"""

from __future__ import annotations

import numpy as np

from .arm import MAX_EE_DELTA_M, ArmEnv
from .fetch import FETCH_JOINT_NAMES, FETCH_MAX_EE_DELTA_M, FETCH_TASKS

GRIP_OPEN, GRIP_CLOSE = 1.0, -1.0


def move_toward(tcp: np.ndarray, target: np.ndarray, gain: float = 1.0, max_delta_m: float = MAX_EE_DELTA_M
                ) -> np.ndarray:
    """xyz action (in [-1, 1]) that moves the tool centre point toward target at up to full speed."""
    return np.clip(gain * (target - tcp) / max_delta_m, -1.0, 1.0)


def head_toward(tcp: np.ndarray, target: np.ndarray, gain: float = 1.0, max_delta_m: float = MAX_EE_DELTA_M
                ) -> np.ndarray:
    """Like move_toward, but scaled down as a whole instead of clipped per axis: the tool keeps its heading."""
    v = gain * (np.asarray(target) - tcp) / max_delta_m
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


class StackExpert:
    """A stateless controller for stack (the action is a function of the current state alone): object resting centred
    on the base cube -> open the fingers, then rise; object between closed fingers -> carry it over the base cube,
    high while off the base's centre and coming down onto it as it lines up; otherwise pick it up as PickPlaceExpert
    does (open, line up over the object, come down, close). A dropped or badly placed object is picked up again."""

    def __init__(self, hover_m: float = 0.05, align_m: float = 0.003, place_tol_m: float = 0.005):
        self.hover_m, self.align_m, self.place_tol_m = hover_m, align_m, place_tol_m
        self._pick = PickPlaceExpert()

    def reset(self) -> None:
        """No episode state."""

    def act(self, obs: dict, env: ArmEnv) -> np.ndarray:
        """Action for the current state."""
        e = env.unwrapped
        tcp, obj, goal = e.tcp_pos, e.privileged_state()[:3].astype(np.float64), e.goal
        width, opening = 2 * e.object_half_size_m, e.gripper_opening_m
        off = goal - obj
        dxy = float(np.linalg.norm(off[:2]))
        if dxy < self.place_tol_m and abs(off[2]) < 0.006:  # resting on the base, centred: release, then back off
            if opening < width + 0.012:
                return np.array([0.0, 0.0, 0.0, GRIP_OPEN], np.float32)
            return np.array([0.0, 0.0, *move_toward(tcp[2:], goal[2:] + 0.06), GRIP_OPEN], np.float32)
        d = obj - tcp
        between = np.linalg.norm(d[:2]) < 0.012 and abs(d[2]) < 0.012
        if not (between and width - 0.008 < opening < width + 0.006):  # not held: pick it up
            return self._pick.act(obs, env)
        # carry: the object's target is over the base cube, hover_m above its resting point while off centre,
        # coming down (pressing lightly) as it lines up; rise before moving sideways while it is low
        z = goal[2] - 0.003 + self.hover_m * float(np.clip((dxy - self.align_m) / 0.02, 0.0, 1.0))
        target = np.array([goal[0], goal[1], z]) - d
        if dxy > 0.03 and obj[2] < goal[2] + self.hover_m - 0.03:
            target[:2] = tcp[:2]
        return np.array([*head_toward(tcp, target, gain=0.8), GRIP_CLOSE], np.float32)


# ----- Fetch adapters: read the object from obs["privileged"] and the gripper from obs["proprio"] -----
# proprio = 7 joint pos, 7 joint vel, ee xyz, gripper opening (robo_hybrid.spec.proprio_layout)
_N_JOINTS = len(FETCH_JOINT_NAMES)
FETCH_EE_SLICE = slice(2 * _N_JOINTS, 2 * _N_JOINTS + 3)
FETCH_GRIPPER_INDEX = 2 * _N_JOINTS + 3

BLOCK_HALF_SIZE_M = 0.025


def _move_action(target_m: np.ndarray, ee_m: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """xyz action that covers `gain` of the way from ee to target in one step (clipped to the unit box)."""
    return move_toward(ee_m, target_m, gain, FETCH_MAX_EE_DELTA_M)


class FetchExpert:
    """Scripted policy for fetch_reach / fetch_push / fetch_pickplace: `reset()` per episode, then `act(obs)`."""

    def __init__(self, task: str, hover_m: float = 0.06, gain: float = 1.0):
        if task not in FETCH_TASKS:
            raise ValueError(f"unknown Fetch task {task!r}; choose one of {tuple(FETCH_TASKS)}")
        self.task = task
        self.hover_m = hover_m
        """Height above the object centre at which the gripper travels before descending."""
        self.gain = gain
        """Fraction of the remaining distance commanded per step (before clipping)."""
        self.reset()

    def reset(self) -> None:
        """Clear per-episode state (call after env.reset)."""
        self._phase = "approach"
        self._close_steps = 0
        self._rest_z_m = float("nan")  # object height at rest on the table, from the first observation

    def act(self, obs: dict, env=None) -> np.ndarray:
        """Action (4,) float32 for this observation; `env` is accepted for interface parity and not needed."""
        ee = np.asarray(obs["proprio"][FETCH_EE_SLICE], dtype=np.float64)
        goal = np.asarray(obs["goal"], dtype=np.float64)
        obj = np.asarray(obs["privileged"][:3], dtype=np.float64)
        if np.isnan(self._rest_z_m):
            self._rest_z_m = float(obj[2])
        if self.task == "fetch_reach":
            action = np.append(_move_action(goal, ee, self.gain), GRIP_OPEN)
        elif self.task == "fetch_push":
            action = self._push(ee, obj, goal)
        else:
            action = self._pick_and_place(ee, obj, goal, float(obs["proprio"][FETCH_GRIPPER_INDEX]))
        return action.astype(np.float32)

    # ----- push: get behind the block on the goal line, lower, push; lift and re-align when off the line -----
    def _push(self, ee: np.ndarray, obj: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Push the block along the object->goal line with the closed (blocked) gripper."""
        to_goal = goal[:2] - obj[:2]
        dist = float(np.linalg.norm(to_goal))
        if dist < 0.02:
            # on the goal (success is < 0.05 m): stop rather than nudge it past
            return np.array([0.0, 0.0, 0.0, GRIP_CLOSE])
        d = to_goal / dist  # unit push direction in the table plane
        rel = ee[:2] - obj[:2]
        along = float(rel @ d)  # < 0: behind the block
        lateral = float(rel @ np.array([-d[1], d[0]]))
        z_push = obj[2] - 0.005  # the grip site at block-centre height (the fingers then clear the table)
        z_high = obj[2] + self.hover_m
        low = ee[2] < obj[2] + 0.03

        if self._phase == "push" and (abs(lateral) > 0.03 or along > -0.015 or along < -0.10 or not low):
            self._phase = "approach"
        if self._phase == "approach" and low and abs(lateral) < 0.012 and -0.09 < along < -0.035:
            self._phase = "push"

        if self._phase == "push":
            # aim the grip where it ends when the block sits on the goal, and pull back onto the line
            end = goal[:2] - d * (BLOCK_HALF_SIZE_M + 0.02)
            target_xy = ee[:2] + np.clip((end - ee[:2]) @ d, 0.0, 0.05) * d - lateral * np.array([-d[1], d[0]])
            return np.append(_move_action(np.append(target_xy, z_push), ee, self.gain), GRIP_CLOSE)

        behind = obj[:2] - d * 0.065
        far = float(np.linalg.norm(ee[:2] - behind)) > 0.015
        near_block = float(np.linalg.norm(rel)) < 0.12  # close to the block: travel above it, not through it
        if far and near_block and ee[2] < z_high - 0.015:
            target = np.array([ee[0], ee[1], z_high])  # rise before moving sideways
        elif far:
            target = np.append(behind, z_high if near_block else max(ee[2], z_push))
        else:
            target = np.append(behind, z_push)
        return np.append(_move_action(target, ee, self.gain), GRIP_CLOSE)

    # ----- pick and place: hover, open, descend, close, lift, carry to the goal (on the table or in the air) -----
    def _pick_and_place(self, ee: np.ndarray, obj: np.ndarray, goal: np.ndarray, opening_m: float) -> np.ndarray:
        """Grasp the block from above and carry it to the goal."""
        rel = obj - ee
        xy_err = float(np.linalg.norm(rel[:2]))
        if self._phase == "carry" and float(np.linalg.norm(rel)) > 0.04:
            self._phase = "approach"  # dropped: start over
            self._close_steps = 0
        if self._phase == "approach":
            if xy_err > 0.012:
                z = obj[2] + self.hover_m if xy_err > 0.03 else ee[2]
                return np.append(_move_action(np.array([obj[0], obj[1], max(z, obj[2])]), ee, self.gain), GRIP_OPEN)
            if opening_m < 0.08 or abs(rel[2]) > 0.01:
                return np.append(_move_action(obj, ee, self.gain), GRIP_OPEN)  # descend with the fingers open
            self._phase = "close"
        if self._phase == "close":
            self._close_steps += 1
            if self._close_steps < 4:
                return np.append(_move_action(obj, ee, self.gain), GRIP_CLOSE)
            self._phase = "carry"
        # carry: bring the block (not the grip site) to the goal, lifted clear of the table while travelling
        target_obj = goal.copy()
        if float(np.linalg.norm(goal[:2] - obj[:2])) > 0.03:
            target_obj[2] = max(goal[2], self._rest_z_m + 0.05)
        return np.append(_move_action(target_obj - rel, ee, self.gain), GRIP_CLOSE)



def make_expert(env):
    """The scripted expert for an env (own rh6 tasks or Fetch adapters)."""
    e = env.unwrapped
    if isinstance(e, ArmEnv):
        return {"reach": ReachExpert, "push": PushExpert, "pickplace": PickPlaceExpert,
                "stack": StackExpert}[e.task.name]()
    name = getattr(e, "task_name", None)
    if name in FETCH_TASKS:
        return FetchExpert(str(name))
    raise ValueError(f"no scripted expert for {type(e).__name__}")


def evaluate_expert(task: str, seeds: range | list[int], cfg=None) -> float:
    """Success rate of the task's scripted expert over one episode per seed (rendering off unless cfg says so)."""
    from . import EnvConfig, make_env  # noqa: PLC0415  (the package imports this module lazily)

    env = make_env(task, cfg=cfg if cfg is not None else EnvConfig(render=False))
    expert = make_expert(env)
    successes = 0
    try:
        for seed in seeds:
            obs, info = env.reset(seed=seed)
            expert.reset()
            success, done = False, False
            while not done:
                obs, _, terminated, truncated, info = env.step(expert.act(obs, env))
                success = success or bool(info["is_success"])
                done = terminated or truncated
            successes += int(success)
    finally:
        env.close()
    return successes / max(len(seeds), 1)
