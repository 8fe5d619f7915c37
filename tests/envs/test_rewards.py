"""envs/rewards.py: named terms, weights from the task config, each weighted term logged (rh6 and Fetch)."""

from __future__ import annotations

import numpy as np
import pytest

from robo_hybrid.envs import EnvConfig, make_env, make_expert
from robo_hybrid.envs.rewards import RewardWeights, compute_terms, pickplace_terms, push_terms, weigh

EXPECTED_TERMS = {
    "reach": {"success", "tcp_to_goal_m"},
    "push": {"success", "tcp_to_object_m", "object_to_goal_m"},
    "pickplace": {"success", "tcp_to_object_m", "object_lift_m", "object_to_goal_m"},
}
ALL_TASKS = ["reach", "push", "pickplace", "fetch_reach", "fetch_push", "fetch_pickplace"]


def _rollout_infos(task: str, steps: int = 25, **cfg):
    """(reward, info) of `steps` expert steps (the episode does not end on success)."""
    env = make_env(task, render=False, terminate_on_success=False, **cfg)
    expert = make_expert(env)
    obs, _ = env.reset(seed=4)
    out = []
    try:
        for _ in range(steps):
            obs, r, _, _, info = env.step(expert.act(obs, env))
            out.append((r, info))
    finally:
        env.close()
    return out


def test_dense_reward_terms_are_reported():
    env = make_env("pickplace", render=False, reward="dense")
    env.reset(seed=0)
    _, r, _, _, info = env.step(np.zeros(4, np.float32))
    assert {"success", "tcp_to_object_m", "object_to_goal_m"} <= set(info["reward_terms"])
    assert r < 0  # far from the goal: the distance terms dominate


@pytest.mark.parametrize("mode", ["dense", "sparse"])
@pytest.mark.parametrize("task", ALL_TASKS)
def test_each_term_is_logged_and_the_reward_is_their_weighted_sum(task, mode):
    weights = RewardWeights()
    w = {k: getattr(weights, k) for k in EXPECTED_TERMS["pickplace"] | {"tcp_to_goal_m"}}
    successes = 0
    for r, info in _rollout_infos(task, reward=mode):
        weighted, raw = info["reward_terms"], info["reward_metrics"]
        assert set(weighted) == set(raw) == EXPECTED_TERMS[task.removeprefix("fetch_")]
        for k, v in raw.items():
            expected = (w[k] * v) if mode == "dense" else (v if k == "success" else 0.0)
            assert weighted[k] == pytest.approx(expected, abs=1e-12), k
        assert r == pytest.approx(sum(weighted.values()), abs=1e-12)
        assert raw["success"] == float(info["is_success"])
        successes += info["is_success"]
        if mode == "dense" and raw.get("tcp_to_object_m", 0.0) > 0.01:
            assert weighted["tcp_to_object_m"] < 0  # a distance is a penalty
    assert successes > 0, "the expert never succeeded: the success term was not exercised"


@pytest.mark.parametrize("task", ["pickplace", "fetch_push"])
def test_weights_come_from_the_config(task):
    base = _rollout_infos(task, steps=5, reward="dense")
    heavy = _rollout_infos(task, steps=5, reward="dense", reward_weights={"tcp_to_object_m": -2.0})
    for (_, a), (_, b) in zip(base, heavy, strict=True):
        assert b["reward_terms"]["tcp_to_object_m"] == pytest.approx(4 * a["reward_terms"]["tcp_to_object_m"])
        assert b["reward_terms"]["object_to_goal_m"] == pytest.approx(a["reward_terms"]["object_to_goal_m"])


def test_rh6_dense_reward_keeps_its_formula():
    """Pick-and-place: success - 0.5 |tcp - obj| + lift (held, clipped to 0.1 m above z 0.02) - |obj - goal|."""
    env = make_env("pickplace", render=False, reward="dense", terminate_on_success=False)
    expert = make_expert(env)
    obs, _ = env.reset(seed=2)
    e = env.unwrapped
    lifted = False
    for _ in range(60):
        obs, r, _, _, info = env.step(expert.act(obs, env))
        tcp, obj, goal = e.tcp_pos, e.privileged_state()[:3].astype(np.float64), e.goal
        d_obj = np.linalg.norm(tcp - obj)
        lift = float(np.clip(obj[2] - 0.02, 0.0, 0.1)) if d_obj < 0.05 else 0.0
        lifted = lifted or lift > 0.01
        old = float(info["is_success"]) + (-0.5 * d_obj + 1.0 * lift - 1.0 * np.linalg.norm(obj - goal))
        assert r == pytest.approx(old, abs=1e-6)
    assert lifted, "the expert never lifted the block: the lift term was not exercised"


def test_fetch_lift_is_measured_from_the_rest_height():
    """Fetch's table is at z 0.4: the lift term counts from the block's rest height, not from z = 0."""
    env = make_env("fetch_pickplace", render=False, reward="dense", terminate_on_success=False)
    expert = make_expert(env)
    obs, _ = env.reset(seed=1)
    lifts = []
    for _ in range(50):
        obs, _, _, _, info = env.step(expert.act(obs, env))
        lifts.append(info["reward_metrics"]["object_lift_m"])
    env.close()
    assert lifts[0] == 0.0 and 0.01 < max(lifts) <= 0.1


def test_term_functions():
    tcp, obj = np.array([0.0, 0.0, 0.1]), np.array([0.3, 0.4, 0.0])
    assert push_terms(tcp, obj, np.array([0.3, 0.4, 0.5]))["object_to_goal_m"] == 0.0  # table plane only
    assert push_terms(tcp, obj, obj)["tcp_to_object_m"] == pytest.approx(np.sqrt(0.26))
    held = np.array([0.3, 0.4, 0.5])
    assert pickplace_terms(held, held, held, rest_z_m=0.02)["object_lift_m"] == pytest.approx(0.1)  # saturates
    assert pickplace_terms(held + [0, 0, 0.06], held, held, rest_z_m=0.02)["object_lift_m"] == 0.0  # not held
    assert pickplace_terms(held, held, held, rest_z_m=0.45)["object_lift_m"] == pytest.approx(0.05)
    terms = compute_terms("reach", True, tcp, tcp)
    assert list(terms) == ["tcp_to_goal_m", "success"] and terms["success"] == 1.0
    with pytest.raises(ValueError, match="object position"):
        compute_terms("push", False, tcp, tcp)
    with pytest.raises(ValueError, match="choose one of"):
        compute_terms("nosuch", False, tcp, tcp, obj)
    with pytest.raises(ValueError, match="sparse"):
        weigh(terms, RewardWeights(), "shaped")


@pytest.mark.parametrize(
    "weights, match",
    [
        ({"success": 0.0}, "success"),
        ({"tcp_to_object_m": 0.5}, "moving away"),
        ({"object_lift_m": -1.0}, "object_lift_m"),
        ({"object_to_goal_m": float("nan")}, "finite"),
        ({"tcp_to_object": -1.0}, "unknown term"),
    ],
)
def test_bad_weights_are_a_clear_error(weights, match):
    with pytest.raises(ValueError, match=match):
        EnvConfig(reward_weights=weights)
