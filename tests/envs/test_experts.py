"""envs/experts.py: every task's scripted expert solves it; rh6 experts are functions of the state alone."""

from __future__ import annotations

import numpy as np
import pytest

from robo_hybrid.envs import TASK_IDS, make_env, make_expert
from robo_hybrid.envs.experts import FetchExpert, PushExpert, evaluate_expert

OWN = ["reach", "push", "pickplace", "stack"]
FETCH = ["fetch_reach", "fetch_push", "fetch_pickplace"]


@pytest.mark.parametrize("task", OWN)
def test_expert_solves_a_few_seeds(task):
    env = make_env(task, render=False)
    expert = make_expert(env)
    wins = 0
    for seed in range(5):
        obs, _ = env.reset(seed=1000 + seed)
        expert.reset()
        done = False
        while not done:
            obs, _, term, trunc, info = env.step(expert.act(obs, env))
            done = term or trunc
        wins += info["is_success"]
    assert wins >= 5 - (task != "reach")


@pytest.mark.parametrize("task", ["push", "pickplace", "stack"])
def test_experts_are_functions_of_the_state_alone(task):
    """BC imitates a map state -> action: the expert must give the same action in the same state whatever happened
    before (a phase machine with hysteresis would not), here along a noisy trajectory."""
    env = make_env(task, render=False)
    seasoned = make_expert(env)
    obs, _ = env.reset(seed=11)
    rng = np.random.default_rng(0)
    for t in range(40):
        a = seasoned.act(obs, env)
        fresh = make_expert(env)  # a new instance each step: no memory at all
        assert np.array_equal(a, fresh.act(obs, env)), f"step {t}: the action depends on the expert's history"
        obs, *_ = env.step(np.clip(a + rng.normal(0, 0.5, 4) * [1, 1, 1, 0], -1, 1).astype(np.float32))


def test_push_expert_pushes_along_the_object_goal_line():
    env = make_env("push", render=False)
    seasoned = PushExpert()
    # in the pushing corridor the push keeps its heading: the xy action is parallel to object -> goal
    e = env.unwrapped
    obs, _ = env.reset(seed=12)
    obj, goal = e.privileged_state()[:2].astype(float), e.goal[:2]
    for _ in range(60):
        a = seasoned.act(obs, env)
        obj = e.privileged_state()[:2].astype(float)
        if np.linalg.norm(e.tcp_pos[:2] - obj) < 0.05 and e.tcp_pos[2] < 0.035:
            break
        obs, *_ = env.step(a)
    u = (goal - obj) / np.linalg.norm(goal - obj)
    cos = a[:2] @ u / (np.linalg.norm(a[:2]) + 1e-9)
    assert cos > 0.95, f"pushing at {np.degrees(np.arccos(min(cos, 1))):.0f} deg off the object->goal line"


@pytest.mark.parametrize("task", FETCH)
def test_fetch_expert_succeeds(task):
    assert evaluate_expert(task, range(5)) == 1.0


@pytest.mark.parametrize("task", FETCH)
def test_make_env_and_make_expert(task):
    env = make_env(task, render=False)
    try:
        assert env.unwrapped.io_spec.task_id == TASK_IDS[task]
        expert = make_expert(env)
        assert isinstance(expert, FetchExpert) and expert.task == task
        obs, _ = env.reset(seed=0)
        action = expert.act(obs, env)
        assert action.shape == (4,) and action.dtype == np.float32 and np.all(np.abs(action) <= 1.0)
    finally:
        env.close()


def test_every_task_has_an_expert_and_unknown_envs_are_refused():
    import gymnasium as gym

    for task in TASK_IDS:
        env = make_env(task, render=False)
        assert hasattr(make_expert(env), "act"), task
        env.close()
    with pytest.raises(ValueError, match="no scripted expert"):
        make_expert(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="fetch_push"):
        FetchExpert("fetch_slide")


def test_evaluate_expert_counts_failures():
    """A horizon too short to reach the goal gives 0 (evaluate_expert is not a constant 1)."""
    from robo_hybrid.envs import EnvConfig

    assert evaluate_expert("push", range(2), EnvConfig(render=False, episode_steps=2)) == 0.0
