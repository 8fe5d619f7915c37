"""Hand-written dense reward terms: named functions returning a dict, weighted by config, each logged."""

from __future__ import annotations

import numpy as np

# Weight of each named term in the dense reward; the sparse success term always has weight 1.
DENSE_WEIGHTS: dict[str, dict[str, float]] = {
    "reach": {"tcp_to_goal_m": -1.0},
    "push": {"tcp_to_object_m": -0.5, "object_to_goal_m": -1.0},
    "pickplace": {"tcp_to_object_m": -0.5, "object_lift_m": 1.0, "object_to_goal_m": -1.0},
}


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def compute_terms(
    task: str, tcp_pos: np.ndarray, obj_pos: np.ndarray | None, goal: np.ndarray, opening_m: float, success: bool
) -> dict[str, float]:
    """Named reward terms for one step (distances in metres); 'success' is the sparse term."""
    terms = {"success": float(success)}
    if task in ("reach", "fetch_reach") or obj_pos is None:
        terms["tcp_to_goal_m"] = _dist(tcp_pos, goal)
        return terms
    terms["tcp_to_object_m"] = _dist(tcp_pos, obj_pos)
    if task in ("push", "fetch_push"):
        terms["object_to_goal_m"] = _dist(obj_pos[:2], goal[:2])
    else:
        held = terms["tcp_to_object_m"] < 0.05
        terms["object_lift_m"] = float(np.clip(obj_pos[2] - 0.02, 0.0, 0.1)) if held else 0.0
        terms["object_to_goal_m"] = _dist(obj_pos, goal)
    return terms


def dense_total(task: str, terms: dict[str, float]) -> float:
    """Sparse success plus the weighted shaping terms of `task`."""
    weights = DENSE_WEIGHTS[task.removeprefix("fetch_").replace("pickandplace", "pickplace")]
    return float(terms["success"] + sum(w * terms[k] for k, w in weights.items() if k in terms))
