"""Scripted experts of the FR3 tasks: stateless closed-loop controllers (they may read privileged state; a policy
never does). The action is a function of the current state alone, which makes it easy to imitate.
"""

from __future__ import annotations

import numpy as np

from .experts import GRIP_CLOSE, GRIP_OPEN
from .experts import head_toward as _head_toward
from .fr3 import MAX_EE_DELTA_M, FR3Env
from .fr3_scene import CUBE_HALF_M


def head_toward(tcp: np.ndarray, target: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """experts.head_toward in the FR3's action units."""
    return _head_toward(tcp, target, gain, MAX_EE_DELTA_M)


class FR3ReachExpert:
    """Straight line to the goal, gripper open (reached is judged on the reported tcp, as the env judges it)."""

    def reset(self) -> None:
        """No episode state."""

    def act(self, obs: dict, env: FR3Env) -> np.ndarray:
        """Action for the current state."""
        e = env.unwrapped
        return np.array([*head_toward(e.tcp_pos, e.goal), GRIP_OPEN], np.float32)


class FR3PickPlaceExpert:
    """Cube between the fingers and the fingers closed on it -> carry it to the goal, clear of the table first;
    cube between the open fingers -> grasp; anywhere else -> fingers open, head for the cube, high while far from
    it and coming down onto it as the tool lines up. A dropped cube is simply picked up again."""

    def __init__(self, hover_m: float = 0.1, align_m: float = 0.006):
        self.hover_m, self.align_m = hover_m, align_m

    def reset(self) -> None:
        """No episode state."""

    def act(self, obs: dict, env: FR3Env) -> np.ndarray:
        """Action for the current state."""
        e = env.unwrapped
        # the hand's place among the cube and the goal is judged from the simulated joints (franky-sim's reported tcp
        # is the commanded pose, which leads the hand by the joint PD's lag while moving); targets are sent from the
        # reported tcp, as every action is
        hand, reported = e.tcp_measured_pos, e.tcp_pos
        obj, goal = e.privileged_state()[:3].astype(np.float64), e.goal
        width, opening = 2 * CUBE_HALF_M, e.gripper_opening_m
        d = obj - hand
        between = np.linalg.norm(d[:2]) < 0.012 and abs(d[2]) < 0.015  # cube between the finger pads
        if between and width - 0.01 < opening < width + 0.004:  # fingers closed on it: carry
            lift_z = min(goal[2] + 0.06, 0.25)
            target = goal + (hand - obj)
            if np.linalg.norm(goal[:2] - obj[:2]) > 0.03:  # not there yet: clear the table before moving sideways
                target[2] = max(target[2], lift_z)
                if hand[2] < lift_z - 0.04:
                    target[:2] = hand[:2]
            return np.array([*head_toward(reported, target, gain=0.8), GRIP_CLOSE], np.float32)
        if between and opening >= width + 0.004:  # in place with the fingers open: grasp
            return np.array([0.0, 0.0, 0.0, GRIP_CLOSE], np.float32)
        dxy = float(np.linalg.norm(d[:2]))
        z = obj[2] - 0.004 + self.hover_m * float(np.clip((dxy - self.align_m) / 0.025, 0.0, 1.0))
        if opening < width + 0.004 and hand[2] < obj[2] + 0.04:  # fingers still (nearly) closed next to it: back up
            z = max(z, obj[2] + 0.06)
        return np.array([*head_toward(reported, np.array([obj[0], obj[1], z])), GRIP_OPEN], np.float32)


def make_fr3_expert(env) -> FR3ReachExpert | FR3PickPlaceExpert:
    """The scripted expert of an FR3 env."""
    name = env.unwrapped.task.name
    return {"fr3_reach": FR3ReachExpert, "fr3_pickplace": FR3PickPlaceExpert}[name]()


def run_expert_episode(env: FR3Env, seed: int) -> tuple[bool, int]:
    """(success, steps) of one expert episode."""
    expert = make_fr3_expert(env)
    obs, _ = env.reset(seed=seed)
    steps, success, done = 0, False, False
    while not done:
        obs, _, terminated, truncated, info = env.step(expert.act(obs, env))
        success, steps, done = success or bool(info["is_success"]), steps + 1, terminated or truncated
    return success, steps
