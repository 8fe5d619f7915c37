"""envs/arm.py: the rh6 tasks' gymnasium contract, I/O spec, privileged isolation, Cartesian control, rates."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from robo_hybrid.envs import TASK_IDS, EnvConfig, make_env
from robo_hybrid.envs.arm import TASKS
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


def test_env_config_default_matches_spec_rate():
    env = make_env("push", render=False, control_rate_hz=50)
    assert env.unwrapped.io_spec.control_rate_hz == 50
    assert env.unwrapped.n_substeps == 10
    assert EnvConfig().control_rate_hz == 25


def test_task_definitions_use_the_one_task_list():
    """arm.TASKS defines scenes for the rh6 names of robo_hybrid.constants.TASK_IDS; ids come from there."""
    assert set(TASKS) == {k for k in TASK_IDS if not k.startswith(("fetch", "fr3"))}
    for name, task in TASKS.items():
        assert task.gym_id == TASK_IDS[name]
        env = make_env(name, render=False)
        assert env.unwrapped.io_spec.task_id == TASK_IDS[name]
        env.close()
