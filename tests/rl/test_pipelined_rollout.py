"""Pipelined rollouts over env groups (algo.env_groups): the same transitions a single vector env would give."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from robo_hybrid.envs import EnvConfig, make_env
from robo_hybrid.envs.vector import GroupedVectorEnv, make_grouped_vector_env, make_vector_env, merge_infos
from robo_hybrid.policy import MultimodalPolicy
from robo_hybrid.rl.collector import RolloutCollector
from robo_hybrid.rl.config import CriticConfig, PPOConfig, ResidualConfig
from robo_hybrid.rl.critic import TIME_KEY, TransformerCritic, make_critic
from robo_hybrid.rl.ppo import PPO, actor_inputs
from robo_hybrid.rl.residual import ResidualPolicy
from robo_hybrid.rl.storage import RolloutStorage

ENV = EnvConfig(image_size=32, episode_steps=5)  # episodes end inside an 8-step rollout: autoresets are covered
CRITIC = CriticConfig(d_model=32, n_heads=2, n_layers=1, conv_channels=[8, 16])


def test_grouped_env_matches_one_vector_env_under_the_same_actions():
    one = make_vector_env("push", ENV, 3, "sync")
    grouped = make_grouped_vector_env("push", ENV, 3, 2, "sync")
    try:
        assert isinstance(grouped, GroupedVectorEnv) and grouped.sizes == [2, 1]
        a_obs, _ = one.reset(seed=11)
        b_obs, _ = grouped.reset(seed=11)  # env k gets seed 11 + k in both
        rng = np.random.default_rng(0)
        for _ in range(7):  # past the 5-step time limit: both autoreset the same way
            for k in a_obs:
                np.testing.assert_array_equal(a_obs[k], b_obs[k])
            actions = rng.uniform(-1, 1, (3, *one.single_action_space.shape)).astype(np.float32)
            a_obs, a_rew, a_term, a_trunc, a_info = one.step(actions)
            b_obs, b_rew, b_term, b_trunc, b_info = grouped.step(actions)
            np.testing.assert_array_equal(a_rew, b_rew)
            np.testing.assert_array_equal(a_term | a_trunc, b_term | b_trunc)
            if "final_obs" in a_info:
                ended = np.flatnonzero(a_info["_final_obs"])
                np.testing.assert_array_equal(ended, np.flatnonzero(b_info["_final_obs"]))
                for i in ended:
                    np.testing.assert_array_equal(a_info["final_obs"][i]["proprio"], b_info["final_obs"][i]["proprio"])
    finally:
        one.close()
        grouped.close()


def test_merge_infos_fills_what_a_group_lacks():
    a = {"is_success": np.array([True, False]), "final_info": {"x": np.array([1.0, 2.0])},
         "final_obs": np.array([{"p": 1}, None], dtype=object)}
    b = {"is_success": np.array([False])}
    out = merge_infos([a, b], [2, 1])
    np.testing.assert_array_equal(out["is_success"], [True, False, False])
    np.testing.assert_array_equal(out["final_info"]["x"], [1.0, 2.0, 0.0])
    assert out["final_obs"].dtype == object and out["final_obs"][2] is None and out["final_obs"][0] == {"p": 1}


def _collector(tiny_policy_cfg, envs, residual: bool):
    spec = make_env("push", EnvConfig(image_size=32, render=False)).unwrapped.io_spec
    base = MultimodalPolicy(tiny_policy_cfg, spec).eval()
    actor = ResidualPolicy(base, ResidualConfig(hidden=16, n_layers=1)) if residual else base
    cfg = PPOConfig(num_envs=envs.num_envs, num_steps=8, num_minibatches=2, num_epochs=1, vector_env="sync",
                    critic=CRITIC, finetune="residual" if residual else "full", critic_warmup_iters=0)
    ppo = PPO(actor, TransformerCritic(CRITIC, spec), cfg)
    collector = RolloutCollector(envs, ppo, seed=5)
    storage = RolloutStorage(8, envs.num_envs, collector.example_obs(), base.action_dim)
    return ppo, collector, storage


@pytest.mark.parametrize(("vector_env", "residual"), [("sync", True), ("sync", False), ("async", True)])
def test_every_stored_row_is_its_own_envs_trajectory(tiny_policy_cfg, vector_env, residual):
    """Replay each env alone from its seed with the actions the rollout stored: the stored observations,
    rewards and episode ends must be that env's own (a lane writing the wrong rows or steps would fail)."""
    torch.manual_seed(0)
    envs = make_grouped_vector_env("push", ENV, 3, 2, vector_env, "forkserver")
    try:
        ppo, collector, storage = _collector(tiny_policy_cfg, envs, residual)
        assert [lane.rows for lane in collector.lanes] == [slice(0, 2), slice(2, 3)]
        collector.collect(storage)
        assert storage.step == 8 and np.isfinite(storage.returns.numpy()).all()
    finally:
        envs.close()
    actions = ppo.actor.clip_action(storage.actions).numpy()
    ended_any = False
    for i in range(3):
        env = make_env("push", ENV)
        try:
            obs, _ = env.reset(seed=5 + i)
            for t in range(8):
                for k in ("proprio", "privileged", "image"):
                    np.testing.assert_array_equal(storage.obs[k][t, i].numpy(), obs[k], err_msg=f"env {i} step {t} {k}")
                obs, reward, terminated, truncated, _ = env.step(actions[t, i])
                assert storage.rewards[t, i] == pytest.approx(float(reward))
                assert bool(storage.terminated[t, i]) == terminated and bool(storage.truncated[t, i]) == truncated
                if terminated or truncated:
                    ended_any = True
                    obs, _ = env.reset()  # SAME_STEP autoreset: the next stored step is the new episode's first
        finally:
            env.close()
    assert ended_any


@pytest.mark.parametrize("vector_env", ["sync", "async"])
def test_failure_replay_restarts_failed_episodes_from_their_seed(tiny_policy_cfg, vector_env):
    """algo.failure_replay=1: an untrained policy fails every 5-step episode, so each env's second episode starts
    from its first one's seed: the same observations as at t=0 (in the worker, through SAME_STEP autoreset)."""
    torch.manual_seed(0)
    envs = make_grouped_vector_env("push", ENV, 3, 2, vector_env, "forkserver", failure_replay=1.0)
    try:
        _, collector, storage = _collector(tiny_policy_cfg, envs, residual=True)
        stats = collector.collect(storage)
    finally:
        envs.close()
    assert bool(storage.truncated[4].all()) and stats["success_rate"] == 0.0
    assert stats["replayed_episode_frac"] == 1.0
    for k in ("proprio", "privileged", "image"):
        torch.testing.assert_close(storage.obs[k][5], storage.obs[k][0], rtol=0, atol=0)
        assert not torch.equal(storage.obs[k][0, 0], storage.obs[k][0, 1])  # different seeds per env


def test_without_failure_replay_the_next_episode_is_new(tiny_policy_cfg):
    torch.manual_seed(0)
    envs = make_grouped_vector_env("push", ENV, 2, 1, "sync")
    try:
        _, collector, storage = _collector(tiny_policy_cfg, envs, residual=True)
        stats = collector.collect(storage)
    finally:
        envs.close()
    assert "replayed_episode_frac" not in stats
    assert not torch.equal(storage.obs["privileged"][5], storage.obs["privileged"][0])


def test_two_groups_and_one_give_the_same_first_step(tiny_policy_cfg):
    """With the same seeds, the grouped rollout starts from the same observations and its base cache (residual:
    the frozen base's outputs) matches a single vector env's row for row."""
    results = []
    for groups in (1, 2):
        torch.manual_seed(0)
        envs = make_grouped_vector_env("push", ENV, 2, groups, "sync")
        try:
            _, collector, storage = _collector(tiny_policy_cfg, envs, residual=True)
            collector.collect(storage)
            results.append({k: v[0].clone() for k, v in storage.obs.items()})
        finally:
            envs.close()
    assert results[0].keys() == results[1].keys()
    for k in results[0]:
        torch.testing.assert_close(results[0][k], results[1][k], rtol=0, atol=1e-6)


def test_rollouts_run_the_frozen_base_on_onnxruntime_with_its_torch_outputs(tiny_policy_cfg):
    """algo.base_runtime=onnx (default): the cached base outputs of a rollout are the torch base's, to 1e-5."""
    envs = make_grouped_vector_env("push", ENV, 2, 2, "sync")
    try:
        ppo, collector, storage = _collector(tiny_policy_cfg, envs, residual=True)
        assert collector.onnx_base is not None and collector.onnx_base.parity < 1e-5
        collector.collect(storage)
    finally:
        envs.close()
    obs = {k: v.reshape(16, *v.shape[2:]) for k, v in storage.obs.items()}
    actor = ppo.actor
    assert isinstance(actor, ResidualPolicy)
    ref = actor.base_cache({k: obs[k] for k in actor.spec.policy_keys})
    for k, v in ref.items():
        torch.testing.assert_close(obs[k], v, rtol=0, atol=1e-5)
    assert float(ref["base_features"].abs().max()) > 0  # a real forward pass, not zeros


def test_the_background_critic_update_is_the_in_turn_update(tiny_policy_cfg):
    """algo.async_critic: the thread's critic epochs give the weights of the in-turn epochs (same minibatch order),
    and the storage can be refilled while it runs (it works on its own copy)."""
    import copy

    envs = make_grouped_vector_env("push", ENV, 2, 2, "sync")
    try:
        ppo, collector, storage = _collector(tiny_policy_cfg, envs, residual=True)
        ppo.cfg = PPOConfig(**{**ppo.cfg.__dict__, "critic_warmup_iters": 5})  # actor frozen: only the critic moves
        collector.collect(storage)
        in_turn, background = copy.deepcopy(ppo), copy.deepcopy(ppo)
        torch.manual_seed(7)  # the in-turn shuffling draws from the global generator...
        in_turn.update(storage, it=0)
        background.update(storage, it=0, critic=False)
        job = background.start_critic_update(storage, seed=7)  # ...the thread from its own, seeded alike
        storage.clear()
        collector.collect(storage)  # the next rollout refills the storage meanwhile
        stats = job.join()
    finally:
        envs.close()
    assert np.isfinite(stats["value_loss"]) and stats["critic_grad_norm"] > 0
    moved = False
    for (name, a), b, c in zip(in_turn.critic.named_parameters(), background.critic.parameters(),
                               ppo.critic.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
        moved |= not torch.equal(a, c)
    assert moved  # the updates did change the critic


def test_the_critics_time_input_counts_each_episodes_steps(tiny_policy_cfg):
    """algo.critic.time_input: every stored step holds its episode's elapsed fraction (5-step episodes in an
    8-step rollout: 0, .2, .4, .6, .8, then the next episode's 0, .2, .4), and the time limit ends an episode like a
    termination: nothing is bootstrapped from its final observation."""
    torch.manual_seed(0)
    critic_cfg = dataclasses.replace(CRITIC, time_input=True)
    cfg = PPOConfig(num_envs=3, num_steps=8, num_minibatches=2, num_epochs=1, vector_env="sync", critic=critic_cfg,
                    critic_warmup_iters=0)
    storages = {}
    for time_input in (True, False):
        envs = make_grouped_vector_env("push", ENV, 3, 2, "sync")
        spec = make_env("push", ENV).unwrapped.io_spec
        base = MultimodalPolicy(tiny_policy_cfg, spec).eval()
        c_cfg = dataclasses.replace(CRITIC, time_input=time_input)
        ppo = PPO(ResidualPolicy(base, ResidualConfig(hidden=16, n_layers=1)), make_critic(c_cfg, spec),
                  dataclasses.replace(cfg, critic=c_cfg))
        collector = RolloutCollector(envs, ppo, seed=5)
        storage = RolloutStorage(8, 3, collector.example_obs(), base.action_dim)
        try:
            collector.collect(storage)
        finally:
            envs.close()
        storages[time_input] = storage
        if time_input:
            assert TIME_KEY not in actor_inputs({k: v[0] for k, v in storage.obs.items()}, ppo.actor)
    timed, plain = storages[True], storages[False]
    expected = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2], dtype=torch.float32)[:, None].expand(8, 3) / 5
    torch.testing.assert_close(timed.obs[TIME_KEY][..., 0], expected)
    assert TIME_KEY not in plain.obs
    # both truncate every env at step 4; only the run without the time input bootstraps that tail
    assert bool(timed.truncated[4].all()) and bool(plain.truncated[4].all())
    assert bool(timed.terminated[4].all()) and not bool(plain.terminated.any())
    assert not bool(timed.final_values.any()) and bool(plain.final_values[4].ne(0).all())
