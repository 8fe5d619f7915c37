"""rh6 tasks: gymnasium contract, I/O spec, privileged isolation, experts, randomization."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from robo_hybrid.envs import TASK_IDS, EnvConfig, RandomizationConfig, make_env, make_expert
from robo_hybrid.spec import IOSpec

OWN = ["reach", "push", "pickplace"]


@pytest.mark.parametrize("task", OWN)
def test_check_env_and_spec(task):
    env = gym.make(TASK_IDS[task], image_size=32).unwrapped
    try:
        check_env(env, skip_render_check=True)
        obs, info = env.reset(seed=3)
        spec = env.io_spec
        spec.check_obs(obs)
        assert set(obs) == set(spec.policy_keys) | set(spec.privileged_keys)
        assert obs["image"].shape == (32, 32, 3) and obs["image"].dtype == np.uint8
        assert obs["image"].std() > 0, "camera image is blank"
        assert info["is_success"] is False
        for _ in range(5):
            obs, r, term, trunc, info = env.step(env.action_space.sample())
            assert isinstance(info["is_success"], bool)
            for k, v in obs.items():
                assert np.all(np.isfinite(v)), k
        # the spec survives JSON
        assert IOSpec.from_json(spec.to_json()) == spec
    finally:
        env.close()


def test_policy_inputs_carry_no_privileged_state():
    """Moving the object changes `privileged` but no non-image policy input; no policy key is privileged."""
    env = make_env("push", render=False)
    obs, _ = env.reset(seed=0)
    spec = env.unwrapped.io_spec
    assert "privileged" not in spec.policy_keys
    e = env.unwrapped
    e.data.qpos[e._obj_qadr : e._obj_qadr + 2] += 0.05
    import mujoco

    mujoco.mj_forward(e.model, e.data)
    obs2 = e._obs()
    assert not np.allclose(obs["privileged"], obs2["privileged"])
    for k in ("proprio", "goal"):
        np.testing.assert_array_equal(obs[k], obs2[k])
    obj = obs2["privileged"][:3]
    for k in ("proprio", "goal"):
        for v in obs2[k]:
            assert not np.any(np.isclose(v, obj, atol=1e-6)), f"object coordinate leaks into {k}"


def test_wrist_camera_and_sizes():
    env = make_env("pickplace", image_size=48, wrist_camera=True)
    try:
        obs, _ = env.reset(seed=1)
        assert env.unwrapped.io_spec.policy_keys == ("image", "image_wrist", "proprio", "goal")
        assert obs["image_wrist"].shape == (48, 48, 3)
        assert not np.array_equal(obs["image"], obs["image_wrist"])
    finally:
        env.close()


def test_reset_is_deterministic_per_seed():
    env = make_env("push", render=False)
    a, _ = env.reset(seed=7)
    b, _ = env.reset(seed=7)
    c, _ = env.reset(seed=8)
    np.testing.assert_array_equal(a["privileged"], b["privileged"])
    np.testing.assert_array_equal(a["goal"], b["goal"])
    assert not np.array_equal(a["goal"], c["goal"])


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


def test_cartesian_action_moves_the_tool():
    env = make_env("reach", render=False)
    env.reset(seed=0)
    before = env.unwrapped.tcp_pos
    for _ in range(5):
        env.step(np.array([1, 0, 0, 1], np.float32))
    moved = env.unwrapped.tcp_pos - before
    assert 0.06 < moved[0] < 0.11  # 5 steps x 0.02 m, allowing tracking lag
    assert abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01


def test_workspace_is_enforced():
    env = make_env("reach", render=False)
    env.reset(seed=0)
    for _ in range(60):
        env.step(np.array([0, 0, -1, 1], np.float32))
    assert env.unwrapped.tcp_pos[2] > 0.005  # never driven through the table


def test_dense_reward_terms_are_reported():
    env = make_env("pickplace", render=False, reward="dense")
    env.reset(seed=0)
    _, r, _, _, info = env.step(np.zeros(4, np.float32))
    assert {"success", "tcp_to_object_m", "object_to_goal_m"} <= set(info["reward_terms"])
    assert r < 0  # far from the goal: the distance terms dominate


def test_randomization_changes_the_scene_and_is_off_by_default():
    plain = make_env("push", image_size=32)
    rnd = make_env("push", image_size=32, randomization=RandomizationConfig(enabled=True))
    try:
        a, _ = plain.reset(seed=0)
        b, _ = plain.reset(seed=0)
        np.testing.assert_array_equal(a["image"], b["image"])
        c, _ = rnd.reset(seed=0)
        d, _ = rnd.reset(seed=1)
        m = rnd.unwrapped.model
        assert not np.array_equal(c["image"], a["image"])
        assert m.body_mass[-1] != plain.unwrapped.model.body_mass[-1] or not np.array_equal(c["image"], d["image"])
    finally:
        plain.close()
        rnd.close()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 4}, "image_size"),
        ({"reward": "shaped"}, "reward"),
        ({"camera": "top"}, "camera"),
        ({"randomization": {"enabled": True, "friction_range": (2.0, 1.0)}}, "friction_range"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_env("push", **kwargs)


def test_unknown_task_names_the_choices():
    with pytest.raises(ValueError, match="choose one of"):
        make_env("stack")


def test_env_config_default_matches_spec_rate():
    env = make_env("push", render=False, control_rate_hz=50)
    assert env.unwrapped.io_spec.control_rate_hz == 50
    assert env.unwrapped.n_substeps == 10
    assert EnvConfig().control_rate_hz == 25


@pytest.mark.parametrize("task", ["push", "pickplace"])
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
    from robo_hybrid.envs.experts import PushExpert

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
