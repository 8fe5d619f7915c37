"""Scripted experts for the Fetch adapters (demonstrations for behaviour cloning).

Experts may use privileged state: they read the object pose from obs["privileged"] and the gripper from
obs["proprio"], so they need only the observation dict (no simulator handle).
"""

from __future__ import annotations

import numpy as np

from .fetch import FETCH_JOINT_NAMES, FETCH_MAX_EE_DELTA_M, FETCH_TASKS

# proprio = 7 joint pos, 7 joint vel, ee xyz, gripper opening (robo_hybrid.spec.proprio_layout)
_N_JOINTS = len(FETCH_JOINT_NAMES)
EE_SLICE = slice(2 * _N_JOINTS, 2 * _N_JOINTS + 3)
GRIPPER_INDEX = 2 * _N_JOINTS + 3

GRIPPER_OPEN, GRIPPER_CLOSE = 1.0, -1.0
BLOCK_HALF_SIZE_M = 0.025


def _move_action(target_m: np.ndarray, ee_m: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """xyz action that covers `gain` of the way from ee to target in one step (clipped to the unit box)."""
    return np.clip(gain * (target_m - ee_m) / FETCH_MAX_EE_DELTA_M, -1.0, 1.0)


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
        ee = np.asarray(obs["proprio"][EE_SLICE], dtype=np.float64)
        goal = np.asarray(obs["goal"], dtype=np.float64)
        obj = np.asarray(obs["privileged"][:3], dtype=np.float64)
        if np.isnan(self._rest_z_m):
            self._rest_z_m = float(obj[2])
        if self.task == "fetch_reach":
            action = np.append(_move_action(goal, ee, self.gain), GRIPPER_OPEN)
        elif self.task == "fetch_push":
            action = self._push(ee, obj, goal)
        else:
            action = self._pick_and_place(ee, obj, goal, float(obs["proprio"][GRIPPER_INDEX]))
        return action.astype(np.float32)

    # ----- push: get behind the block on the goal line, lower, push; lift and re-align when off the line -----
    def _push(self, ee: np.ndarray, obj: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Push the block along the object->goal line with the closed (blocked) gripper."""
        to_goal = goal[:2] - obj[:2]
        dist = float(np.linalg.norm(to_goal))
        if dist < 0.02:
            # on the goal (success is < 0.05 m): stop rather than nudge it past
            return np.array([0.0, 0.0, 0.0, GRIPPER_CLOSE])
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
            return np.append(_move_action(np.append(target_xy, z_push), ee, self.gain), GRIPPER_CLOSE)

        behind = obj[:2] - d * 0.065
        far = float(np.linalg.norm(ee[:2] - behind)) > 0.015
        near_block = float(np.linalg.norm(rel)) < 0.12  # close to the block: travel above it, not through it
        if far and near_block and ee[2] < z_high - 0.015:
            target = np.array([ee[0], ee[1], z_high])  # rise before moving sideways
        elif far:
            target = np.append(behind, z_high if near_block else max(ee[2], z_push))
        else:
            target = np.append(behind, z_push)
        return np.append(_move_action(target, ee, self.gain), GRIPPER_CLOSE)

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
                return np.append(_move_action(np.array([obj[0], obj[1], max(z, obj[2])]), ee, self.gain), GRIPPER_OPEN)
            if opening_m < 0.08 or abs(rel[2]) > 0.01:
                return np.append(_move_action(obj, ee, self.gain), GRIPPER_OPEN)  # descend with the fingers open
            self._phase = "close"
        if self._phase == "close":
            self._close_steps += 1
            if self._close_steps < 4:
                return np.append(_move_action(obj, ee, self.gain), GRIPPER_CLOSE)
            self._phase = "carry"
        # carry: bring the block (not the grip site) to the goal, lifted clear of the table while travelling
        target_obj = goal.copy()
        if float(np.linalg.norm(goal[:2] - obj[:2])) > 0.03:
            target_obj[2] = max(goal[2], self._rest_z_m + 0.05)
        return np.append(_move_action(target_obj - rel, ee, self.gain), GRIPPER_CLOSE)


def evaluate_expert(task: str, seeds: range | list[int], cfg=None) -> float:
    """Success rate of FetchExpert on `task` over one episode per seed (render off unless cfg says otherwise)."""
    return run_expert(task, seeds, cfg)[0]


def run_expert(task: str, seeds: range | list[int], cfg=None) -> tuple[float, int]:
    """(success rate, env steps taken) of FetchExpert on `task`, one episode per seed."""
    from .common import EnvConfig
    from .fetch import FetchAdapter

    env = FetchAdapter(task, cfg if cfg is not None else EnvConfig(camera="external", render=False))
    expert = FetchExpert(task)
    successes, steps = 0, 0
    try:
        for seed in seeds:
            obs, info = env.reset(seed=seed)
            expert.reset()
            success, done = False, False
            while not done:
                obs, _, terminated, truncated, info = env.step(expert.act(obs, env))
                steps += 1
                success = success or info["is_success"]
                done = terminated or truncated
            successes += int(success)
    finally:
        env.close()
    return successes / max(len(seeds), 1), steps


def main() -> None:
    """Print the experts' success rates and env steps/s: python -m robo_hybrid.envs.fetch_expert [--episodes 100]."""
    import argparse
    import time

    from .common import EnvConfig

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--tasks", nargs="*", default=list(FETCH_TASKS))
    parser.add_argument("--render", type=int, default=0, help="image size to render at (0 = no rendering)")
    args = parser.parse_args()
    cfg = EnvConfig(camera="external", render=args.render > 0, image_size=args.render or 84)
    for task in args.tasks:
        start = time.perf_counter()
        rate, steps = run_expert(task, range(args.episodes), cfg)
        elapsed = time.perf_counter() - start
        print(
            f"{task}: {rate:.1%} success over {args.episodes} seeds, "
            f"{steps} steps at {steps / elapsed:.0f} steps/s (render={args.render or 'off'})"
        )


if __name__ == "__main__":
    main()
