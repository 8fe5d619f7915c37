"""Reward terms of every task (rh6 arm and Fetch adapters): named functions returning dicts, weighted by config.

Each term is a plain physical quantity whose unit is in its name (distances in metres are >= 0); the sign and
size of its contribution is its weight in `RewardWeights` (set per task in configs/task/<task>.yaml under
`env.reward_weights`). The env logs every weighted term in `info["reward_terms"]` (their sum is the reward)
and the unweighted values in `info["reward_metrics"]`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

# Which shaping terms a task kind has; the sparse term `success` belongs to every kind.
KINDS = ("reach", "push", "pickplace", "stack")
HELD_DIST_M = 0.05  # tool centre within this of the object centre: the object counts as held (lift term)
MAX_LIFT_M = 0.1  # the lift term saturates at this height above the object's rest height


@dataclass
class RewardWeights:
    """Weight of each named reward term in the dense reward (`reward: dense`); sparse uses `success` alone."""

    success: float = 1.0
    """Per step on which the task is solved (the sparse term; must be > 0)."""
    tcp_to_goal_m: float = -1.0
    """Per metre from the tool centre point to the goal (reach tasks); <= 0."""
    tcp_to_object_m: float = -0.5
    """Per metre from the tool centre point to the object centre (push, pick-and-place); <= 0."""
    object_to_goal_m: float = -1.0
    """Per metre from the object to the goal (on the table plane for push, 3-D for pick-and-place); <= 0."""
    object_lift_m: float = 1.0
    """Per metre the held object is above its rest height, up to 0.1 m (pick-and-place); >= 0."""
    object_to_goal_xy_m: float = -1.0
    """Per metre from the object to the goal on the table plane (stack: its offset from the base cube's centre,
    on top of the 3-D distance, so the last centimetres of the placement count); <= 0."""

    def __post_init__(self) -> None:
        for name, w in asdict(self).items():
            if not math.isfinite(w):
                raise ValueError(f"reward_weights.{name}={w}: must be a finite number; fix the task config")
        if self.success <= 0:
            raise ValueError(f"reward_weights.success={self.success}: must be > 0, or solving the task is not rewarded")
        for name in ("tcp_to_goal_m", "tcp_to_object_m", "object_to_goal_m", "object_to_goal_xy_m"):
            if getattr(self, name) > 0:
                raise ValueError(f"reward_weights.{name}={getattr(self, name)}: a distance weight must be <= 0 "
                                 "(a positive one rewards moving away); fix the task config")
        if self.object_lift_m < 0:
            raise ValueError(f"reward_weights.object_lift_m={self.object_lift_m}: must be >= 0; fix the task config")


def _dist_m(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


# ----- named terms -----
def success_term(is_success: bool) -> dict[str, float]:
    """The sparse term: 1 on a successful step, else 0 (Fetch's own -1 / 0 convention is not used)."""
    return {"success": float(is_success)}


def reach_terms(tcp_pos_m: np.ndarray, goal_m: np.ndarray) -> dict[str, float]:
    """Distance from the tool centre point to the goal."""
    return {"tcp_to_goal_m": _dist_m(tcp_pos_m, goal_m)}


def push_terms(tcp_pos_m: np.ndarray, object_pos_m: np.ndarray, goal_m: np.ndarray) -> dict[str, float]:
    """Tool to object, and object to goal on the table plane (x, y)."""
    return {
        "tcp_to_object_m": _dist_m(tcp_pos_m, object_pos_m),
        "object_to_goal_m": _dist_m(np.asarray(object_pos_m)[:2], np.asarray(goal_m)[:2]),
    }


def pickplace_terms(
    tcp_pos_m: np.ndarray, object_pos_m: np.ndarray, goal_m: np.ndarray, rest_z_m: float
) -> dict[str, float]:
    """Tool to object, lift of the held object above its rest height `rest_z_m`, and object to goal (3-D)."""
    tcp_to_object = _dist_m(tcp_pos_m, object_pos_m)
    lift = float(np.clip(object_pos_m[2] - rest_z_m, 0.0, MAX_LIFT_M)) if tcp_to_object < HELD_DIST_M else 0.0
    return {"tcp_to_object_m": tcp_to_object, "object_lift_m": lift, "object_to_goal_m": _dist_m(object_pos_m, goal_m)}


def stack_terms(
    tcp_pos_m: np.ndarray, object_pos_m: np.ndarray, goal_m: np.ndarray, rest_z_m: float
) -> dict[str, float]:
    """Pick-and-place's terms toward the point on top of the base cube (the goal), plus the object's xy offset
    from it."""
    terms = pickplace_terms(tcp_pos_m, object_pos_m, goal_m, rest_z_m)
    return {**terms, "object_to_goal_xy_m": _dist_m(np.asarray(object_pos_m)[:2], np.asarray(goal_m)[:2])}


def compute_terms(
    kind: str, is_success: bool, tcp_pos_m: np.ndarray, goal_m: np.ndarray,
    object_pos_m: np.ndarray | None = None, rest_z_m: float = 0.0,
) -> dict[str, float]:
    """Unweighted terms of one step for a task kind ('reach', 'push', 'pickplace', 'stack'); `success` last."""
    if kind == "reach":
        terms = reach_terms(tcp_pos_m, goal_m)
    elif object_pos_m is None:
        raise ValueError(f"reward kind {kind!r} needs the object position")
    elif kind == "push":
        terms = push_terms(tcp_pos_m, object_pos_m, goal_m)
    elif kind == "pickplace":
        terms = pickplace_terms(tcp_pos_m, object_pos_m, goal_m, rest_z_m)
    elif kind == "stack":
        terms = stack_terms(tcp_pos_m, object_pos_m, goal_m, rest_z_m)
    else:
        raise ValueError(f"unknown reward kind {kind!r}; choose one of {KINDS}")
    # success last: sum() of the weighted terms then adds it after the shaping terms, as the reward always has
    return {**terms, **success_term(is_success)}


def weigh(terms: dict[str, float], weights: RewardWeights, mode: str) -> dict[str, float]:
    """Weighted terms: mode 'dense' uses `weights`; 'sparse' keeps `success` at weight 1 and the others at 0."""
    if mode not in ("sparse", "dense"):
        raise ValueError(f"reward={mode!r}: choose 'sparse' or 'dense'")
    if mode == "sparse":
        return {k: (v if k == "success" else 0.0) for k, v in terms.items()}
    w = asdict(weights)
    return {k: w[k] * v for k, v in terms.items()}


def total(weighted: dict[str, float]) -> float:
    """The reward: the sum of the weighted terms."""
    return float(sum(weighted.values()))


def step_reward(
    kind: str, mode: str, weights: RewardWeights, is_success: bool, tcp_pos_m: np.ndarray, goal_m: np.ndarray,
    object_pos_m: np.ndarray | None = None, rest_z_m: float = 0.0,
) -> tuple[float, dict[str, float], dict[str, float]]:
    """(reward, weighted terms, unweighted terms) of one step: what an env returns and logs in its info."""
    terms = compute_terms(kind, is_success, tcp_pos_m, goal_m, object_pos_m, rest_z_m)
    weighted = weigh(terms, weights, mode)
    return total(weighted), weighted, terms
