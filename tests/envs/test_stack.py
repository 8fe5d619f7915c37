"""The stack task (envs/arm.py, base_object): contract, success condition, goal on the base cube, reward, expert."""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from robo_hybrid.envs import TASK_IDS, EnvConfig, make_env, make_expert
from robo_hybrid.envs.arm import FINGER_OPEN_M
from robo_hybrid.envs.experts import StackExpert, evaluate_expert
from robo_hybrid.envs.rewards import RewardWeights, compute_terms
from robo_hybrid.spec import IOSpec

BASE_XY = np.array([0.08, 0.1])


@pytest.fixture
def env():
    env = make_env("stack", render=False)
    env.reset(seed=0)
    yield env.unwrapped
    env.close()


def _pose(e, xy_offset=(0.0, 0.0), dz=0.0, opening_m=2 * FINGER_OPEN_M, speed=0.0) -> bool:
    """Put the base cube at BASE_XY and the object on it (offset by xy_offset, dz), set the fingers and the object's
    speed, and return the success check of that state."""
    q, v = e.data.qpos, e.data.qvel
    q[e._base_qadr : e._base_qadr + 7] = [*BASE_XY, e.base_half_size_m, 1, 0, 0, 0]
    z = 2 * e.base_half_size_m + e.object_half_size_m + dz
    q[e._obj_qadr : e._obj_qadr + 7] = [*(BASE_XY + xy_offset), z, 1, 0, 0, 0]
    q[e._finger_qadr] = opening_m / 2
    v[:] = 0.0
    v[e._obj_dadr] = speed
    mujoco.mj_forward(e.model, e.data)
    e.goal = e._base_goal()
    return e._is_success()


def test_check_env_spec_and_privileged_layout():
    env = gym.make(TASK_IDS["stack"], image_size=32, wrist_camera=True).unwrapped
    try:
        check_env(env, skip_render_check=True)
        obs, info = env.reset(seed=3)
        spec = env.io_spec
        spec.check_obs(obs)
        assert spec.policy_keys == ("image", "image_wrist", "proprio", "goal")
        assert "privileged" not in spec.policy_keys and spec.obs("privileged").shape == (26,)
        assert obs["privileged"].shape == (26,) and info["is_success"] is False
        # cube A's 13 values, then cube B's: the goal is B's centre raised by the two half sizes
        a, b = obs["privileged"][:3], obs["privileged"][13:16]
        np.testing.assert_allclose(obs["goal"], b + [0, 0, 0.04], atol=1e-6)
        assert np.linalg.norm(a[:2] - b[:2]) >= 0.1  # the cubes start apart
        assert obs["image"].std() > 0 and not np.array_equal(obs["image"], obs["image_wrist"])
        for _ in range(5):
            obs, _, _, _, info = env.step(env.action_space.sample())
            assert all(np.all(np.isfinite(v)) for v in obs.values())
        assert IOSpec.from_json(spec.to_json()) == spec
    finally:
        env.close()


def test_reset_is_deterministic_and_varies_the_base_cube():
    env = make_env("stack", render=False)
    a, _ = env.reset(seed=7)
    b, _ = env.reset(seed=7)
    c, _ = env.reset(seed=8)
    np.testing.assert_array_equal(a["privileged"], b["privileged"])
    assert not np.allclose(a["goal"], c["goal"])
    env.close()


@pytest.mark.parametrize(
    "pose, success",
    [
        ({}, True),  # centred, at rest, released
        ({"xy_offset": (0.01, -0.008)}, True),  # 1.3 cm off centre: inside the 1.5 cm tolerance
        ({"xy_offset": (0.015, 0.008)}, False),  # 1.7 cm off centre
        ({"dz": 0.01}, False),  # 1 cm above the base cube: not resting on it
        ({"dz": -0.03}, False),  # beside / sunk into it
        ({"opening_m": 0.04}, False),  # fingers closed on the cube: still held
        ({"speed": 0.2}, False),  # moving through the pose, not at rest
    ],
)
def test_success_condition(env, pose, success):
    assert _pose(env, **pose) is success


def test_object_left_on_the_table_is_no_success(env):
    _pose(env)
    env.data.qpos[env._obj_qadr : env._obj_qadr + 3] = [*(BASE_XY + [0.1, 0.0]), env.object_half_size_m]
    mujoco.mj_forward(env.model, env.data)
    assert env._is_success() is False


def test_a_placed_cube_succeeds_through_step_and_the_goal_follows_the_base(env):
    _pose(env)
    _, _, terminated, _, info = env.step(np.array([0, 0, 0, 1], np.float32))  # hold still, fingers open
    assert info["is_success"] and terminated
    env.data.qpos[env._base_qadr : env._base_qadr + 2] += [0.03, 0.0]  # the base cube is pushed away
    mujoco.mj_forward(env.model, env.data)
    obs, _, _, _, info = env.step(np.array([0, 0, 0, 1], np.float32))
    np.testing.assert_allclose(obs["goal"], obs["privileged"][13:16] + [0, 0, 0.04], atol=1e-6)
    assert not info["is_success"]


def test_moving_cube_a_changes_only_privileged_state(env):
    obs = env._obs()
    env.data.qpos[env._obj_qadr : env._obj_qadr + 2] += 0.05
    mujoco.mj_forward(env.model, env.data)
    obs2 = env._obs()
    assert not np.allclose(obs["privileged"][:3], obs2["privileged"][:3])
    for k in ("proprio", "goal"):
        np.testing.assert_array_equal(obs[k], obs2[k])


def test_stack_reward_terms_and_weights():
    tcp, obj, goal = np.array([0.03, 0.04, 0.065]), np.array([0.03, 0.04, 0.06]), np.array([0.0, 0.0, 0.06])
    terms = compute_terms("stack", False, tcp, goal, obj, rest_z_m=0.02)
    assert list(terms) == ["tcp_to_object_m", "object_lift_m", "object_to_goal_m", "object_to_goal_xy_m", "success"]
    assert terms["object_to_goal_xy_m"] == pytest.approx(0.05) and terms["object_lift_m"] == pytest.approx(0.04)
    with pytest.raises(ValueError, match="moving away"):
        RewardWeights(object_to_goal_xy_m=0.5)
    env = make_env("stack", render=False, reward="dense", reward_weights={"object_to_goal_xy_m": -3.0})
    env.reset(seed=1)
    _, r, _, _, info = env.step(np.zeros(4, np.float32))
    raw, weighted = info["reward_metrics"], info["reward_terms"]
    assert set(weighted) == set(terms)
    assert weighted["object_to_goal_xy_m"] == pytest.approx(-3.0 * raw["object_to_goal_xy_m"])
    assert r == pytest.approx(sum(weighted.values()))
    env.close()


def test_expert_stacks_on_a_few_seeds_and_the_cube_stays():
    assert evaluate_expert("stack", range(2000, 2004)) == 1.0
    # without termination the expert lets go and backs off, and the cube stays on the base
    env = make_env("stack", render=False, terminate_on_success=False)
    expert = make_expert(env)
    assert isinstance(expert, StackExpert)
    obs, _ = env.reset(seed=5)
    for _ in range(70):
        obs, _, _, _, info = env.step(expert.act(obs, env))
    assert info["is_success"] and env.unwrapped.tcp_pos[2] > obs["goal"][2] + 0.04
    env.close()


def test_the_expert_horizon_cut_short_fails():
    assert evaluate_expert("stack", range(2), EnvConfig(render=False, episode_steps=10)) == 0.0


def test_expert_is_a_function_of_the_state_alone_through_the_release():
    """As in test_experts, but on to the release and back-off (a fresh expert each step gives the same action)."""
    env = make_env("stack", render=False, terminate_on_success=False)
    seasoned = make_expert(env)
    obs, _ = env.reset(seed=11)
    rng = np.random.default_rng(1)
    released = False
    for t in range(80):
        a = seasoned.act(obs, env)
        assert np.array_equal(a, StackExpert().act(obs, env)), f"step {t}: the action depends on the expert's history"
        released = released or bool(env.unwrapped._is_success())
        obs, *_ = env.step(np.clip(a + rng.normal(0, 0.2, 4) * [1, 1, 1, 0], -1, 1).astype(np.float32))
    env.close()
    assert released, "the noisy rollout never reached the release: that branch was not compared"
