"""envs/fetch.py: the Fetch adapters' env checker, I/O spec, privileged isolation, rewards, determinism."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402

from robo_hybrid.envs.common import ACTION_MEANING, PRIVILEGED_DIM, EnvConfig, RandomizationConfig  # noqa: E402
from robo_hybrid.envs.experts import FetchExpert  # noqa: E402
from robo_hybrid.envs.fetch import FETCH_TASKS, FetchAdapter, fetch_task_names, make_fetch  # noqa: E402

TASKS = fetch_task_names()
SMALL = 32


def _cfg(**kw) -> EnvConfig:
    """Fast config: no rendering unless asked."""
    return EnvConfig(**{"camera": "external", "render": False, "image_size": SMALL, **kw})


@pytest.fixture
def make():
    """Create adapters that are closed (renderer included) after the test."""
    envs: list[FetchAdapter] = []

    def _make(task: str, **kw) -> FetchAdapter:
        envs.append(make_fetch(task, _cfg(**kw)))
        return envs[-1]

    yield _make
    for env in envs:
        env.close()


def test_task_names():
    assert set(TASKS) == {"fetch_reach", "fetch_push", "fetch_pickplace"}


@pytest.mark.parametrize("task", TASKS)
def test_check_env_with_rendering(make, task):
    env = make(task, render=True)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (SMALL, SMALL, 3) and obs["image"].dtype == np.uint8
    assert obs["image"].std() > 0, "rendered image is blank"


@pytest.mark.parametrize("task", TASKS)
def test_obs_and_spec(make, task):
    env = make(task)
    spec = env.io_spec
    assert spec.task_id == FETCH_TASKS[task].task_id
    assert spec.policy_keys == ("image", "proprio", "goal") and spec.privileged_keys == ("privileged",)
    assert spec.action_meaning == ACTION_MEANING and spec.max_ee_delta_m == pytest.approx(0.05)
    assert spec.control_rate_hz == pytest.approx(25.0) and spec.episode_steps == 50
    assert len(spec.joint_names) == 7 and len(spec.proprio_layout) == 18
    obs, _ = env.reset(seed=1)
    for _ in range(3):
        spec.check_obs(obs)
        assert env.observation_space.contains(obs)
        assert obs["privileged"].shape == (PRIVILEGED_DIM,) and obs["privileged"].dtype == np.float32
        assert not np.any(obs["image"]), "render=False must give zero images"
        assert all(np.all(np.isfinite(obs[k])) for k in ("proprio", "goal", "privileged"))
        obs, *_ = env.step(env.action_space.sample())
    np.testing.assert_allclose(obs["proprio"][14:17], env.grip_pos_m(), atol=1e-6)
    if FETCH_TASKS[task].has_object:
        assert np.linalg.norm(obs["privileged"][3:7]) == pytest.approx(1.0, abs=1e-4)  # unit quaternion
    else:
        assert not np.any(obs["privileged"])


@pytest.mark.parametrize("task", ["fetch_push", "fetch_pickplace"])
def test_object_position_not_in_policy_inputs(make, task):
    env = make(task, render=False)
    env.reset(seed=3)
    before = env.get_obs()
    adr = env.model.jnt_qposadr[mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_JOINT, "object0:joint")]
    env.data.qpos[adr : adr + 2] += (0.07, -0.05)
    mujoco.mj_forward(env.model, env.data)
    after = env.get_obs()
    np.testing.assert_allclose(after["privileged"][:2] - before["privileged"][:2], (0.07, -0.05), atol=1e-6)
    np.testing.assert_array_equal(after["proprio"], before["proprio"])
    np.testing.assert_array_equal(after["goal"], before["goal"])
    # the arm starts the same on every seed while the object does not
    starts = [env.reset(seed=s)[0] for s in range(4)]
    assert len({tuple(o["privileged"][:2]) for o in starts}) == 4
    for o in starts[1:]:
        np.testing.assert_array_equal(o["proprio"], starts[0]["proprio"])


@pytest.mark.parametrize("task", TASKS)
def test_deterministic_reset(make, task):
    env = make(task)
    obs_a, _ = env.reset(seed=7)
    state_a = env.get_state()
    for _ in range(5):
        env.step(env.action_space.sample())
    obs_b, _ = env.reset(seed=7)
    for k in obs_a:
        np.testing.assert_array_equal(obs_a[k], obs_b[k])
    np.testing.assert_array_equal(state_a, env.get_state())
    assert state_a.dtype == np.float64 and state_a.shape == (env.model.nq + env.model.nv,)
    other, _ = env.reset(seed=8)
    assert not np.array_equal(other["goal"], obs_a["goal"])


def test_set_state_roundtrip(make):
    env = make("fetch_pickplace")
    env.reset(seed=0)
    for _ in range(4):
        env.step(np.array([0.5, -0.2, 0.3, 1.0], dtype=np.float32))
    state, obs = env.get_state(), env.get_obs()
    env.reset(seed=1)
    env.set_state(state)
    np.testing.assert_array_equal(env.get_state(), state)
    np.testing.assert_allclose(env.get_obs()["privileged"], obs["privileged"])


def test_sparse_and_dense_rewards(make):
    """Fetch uses the rh6 terms of envs/rewards.py: sparse = success; dense = the weighted terms, each logged."""
    sparse, dense = make("fetch_push", reward="sparse"), make("fetch_push", reward="dense")
    rng = np.random.default_rng(0)
    sparse.reset(seed=2)
    dense.reset(seed=2)
    for _ in range(4):
        action = rng.uniform(-1, 1, 4).astype(np.float32)
        _, r_s, _, _, info_s = sparse.step(action)
        _, r_d, _, _, info_d = dense.step(action)
        assert r_s == float(info_s["is_success"]) and isinstance(info_s["is_success"], bool)
        terms, raw = info_d["reward_terms"], info_d["reward_metrics"]
        assert set(terms) == set(raw) == {"success", "tcp_to_object_m", "object_to_goal_m"}
        assert r_d == pytest.approx(sum(terms.values()))
        reach_m = np.linalg.norm(dense.grip_pos_m() - dense.object_pos_m())
        assert raw["tcp_to_object_m"] == pytest.approx(reach_m, abs=1e-3)
        assert terms["tcp_to_object_m"] == pytest.approx(-0.5 * reach_m, abs=1e-3)
        assert terms["object_to_goal_m"] < 0


def test_task_definitions_use_the_one_task_list():
    from robo_hybrid.constants import TASK_IDS

    assert set(FETCH_TASKS) == {k for k in TASK_IDS if k.startswith("fetch")}
    for name, task in FETCH_TASKS.items():
        assert task.name == name and task.task_id == TASK_IDS[name]


def test_truncation_and_termination(make):
    env = make("fetch_reach", episode_steps=5)
    assert env.io_spec.episode_steps == 5
    env.reset(seed=0)
    flags = [env.step(np.zeros(4, dtype=np.float32))[3] for _ in range(5)]
    assert flags == [False] * 4 + [True]
    env = make("fetch_reach")
    expert = FetchExpert("fetch_reach")
    obs, _ = env.reset(seed=0)
    for _ in range(50):
        obs, reward, terminated, _, info = env.step(expert.act(obs, env))
        if terminated:
            break
    assert terminated and info["is_success"] and reward == 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"control_rate_hz": 20.0}, "25 Hz"),
        ({"wrist_camera": True}, "no wrist camera"),
        ({"camera": "wrist"}, "external"),
        ({"randomization": RandomizationConfig(enabled=True)}, "not supported on Fetch"),
    ],
)
def test_rejects_unsupported_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FetchAdapter("fetch_push", _cfg(**kwargs))


def test_rejects_unknown_task():
    with pytest.raises(ValueError, match="fetch_push"):
        FetchAdapter("fetch_slide")
