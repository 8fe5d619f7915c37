"""Asymmetric actor-critic: the actor reads only deployable inputs; critic tokens; warm-up; target-KL stop."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from robo_hybrid.envs import EnvConfig, make_env
from robo_hybrid.policy import MultimodalPolicy
from robo_hybrid.rl.collector import RolloutCollector, to_torch
from robo_hybrid.rl.config import CriticConfig, PPOConfig
from robo_hybrid.rl.critic import TIME_KEY, TransformerCritic, make_critic
from robo_hybrid.rl.ppo import PPO
from robo_hybrid.rl.rollout import make_vector_env
from robo_hybrid.rl.storage import RolloutStorage

ENV = EnvConfig(image_size=32, episode_steps=6)
CRITIC = CriticConfig(d_model=32, n_heads=2, n_layers=1, conv_channels=[8, 16])


def _setup(tiny_policy_cfg, **ppo_kw):
    torch.manual_seed(0)
    cfg = PPOConfig(num_envs=2, num_steps=8, num_minibatches=2, num_epochs=2, vector_env="sync", critic=CRITIC,
                    **ppo_kw)
    envs = make_vector_env("push", ENV, 2, "sync")
    spec = make_env("push", EnvConfig(image_size=32, render=False)).unwrapped.io_spec
    policy = MultimodalPolicy(tiny_policy_cfg, spec).eval()
    ppo = PPO(policy, TransformerCritic(CRITIC, spec), cfg)
    collector = RolloutCollector(envs, ppo, seed=3)
    storage = RolloutStorage(8, 2, collector.example_obs(), policy.action_dim)
    return envs, ppo, collector, storage


def _params(m: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in m.parameters()])


def test_actor_receives_only_the_spec_policy_keys(tiny_policy_cfg):
    envs, ppo, collector, storage = _setup(tiny_policy_cfg, critic_warmup_iters=0)
    seen_actor, seen_critic = [], []
    ppo.actor.register_forward_pre_hook(lambda m, args: seen_actor.append(set(args[0])))
    ppo.critic.register_forward_pre_hook(lambda m, args: seen_critic.append(set(args[0])))
    try:
        collector.collect(storage)
        ppo.update(storage, it=0)
    finally:
        envs.close()
    policy_keys = set(ppo.actor.spec.policy_keys)
    assert policy_keys == {"image", "proprio", "goal"}
    assert seen_actor and all(keys == policy_keys for keys in seen_actor)
    assert seen_critic and all("privileged" in keys for keys in seen_critic)  # the critic does read it
    assert "privileged" in storage.obs  # it is in the batch: only the actor's input filter keeps it out


def test_privileged_state_moves_the_critic_but_never_the_actor(tiny_policy_cfg):
    envs, ppo, collector, _ = _setup(tiny_policy_cfg)
    try:
        obs = to_torch(collector.storage_obs(), ppo.device)
    finally:
        envs.close()
    ppo.critic.update_normalizers(obs)
    shaken = dict(obs, privileged=obs["privileged"] + torch.randn_like(obs["privileged"]))
    with torch.no_grad():
        torch.testing.assert_close(ppo.policy_output(obs).mean, ppo.policy_output(shaken).mean)
        assert not torch.allclose(ppo.critic(obs), ppo.critic(shaken))


def test_critic_tokens_cover_cameras_vectors_and_privileged_parts():
    spec = make_env("pickplace", EnvConfig(image_size=32, wrist_camera=True, render=False)).unwrapped.io_spec
    critic = TransformerCritic(CRITIC, spec)
    B = 3
    obs = {t.name: torch.zeros(B, *t.shape, dtype=getattr(torch, t.dtype)) for t in spec.observations + spec.privileged}
    tokens = critic.tokenize(obs)
    grid = critic.grid[0] * critic.grid[1]
    # readout + 2 cameras x grid + proprio + goal + privileged as pos / quat / linvel / angvel
    assert tokens.shape == (B, 1 + 2 * grid + 2 + 4, CRITIC.d_model)
    assert critic(obs).shape == (B,)
    hist = {k: v[:, None].repeat(1, 2, *([1] * (v.dim() - 1))) for k, v in obs.items()}  # (B, K, ...) input
    torch.testing.assert_close(critic(hist), critic(obs))  # the newest frame is used


def test_critic_warmup_freezes_the_actor(tiny_policy_cfg):
    envs, ppo, collector, storage = _setup(tiny_policy_cfg, critic_warmup_iters=1, bc_reg="kl")
    try:
        actor0, critic0 = _params(ppo.actor), _params(ppo.critic)
        rollout = collector.collect(storage)
        # the anchor's std per action dim is logged (clamped to [std_min, std_max] as the KL term sees it)
        bc_std = [rollout[f"policy/bc_std_{i}"] for i in range(4)]
        assert all(0.05 - 1e-6 <= v <= 1.0 + 1e-6 for v in bc_std) and "policy/bc_std_4" not in rollout
        stats = ppo.update(storage, it=0)
        assert stats["actor_frozen"] == 1.0 and "policy_loss" not in stats
        assert torch.equal(_params(ppo.actor), actor0) and not torch.equal(_params(ppo.critic), critic0)
        storage.clear()
        collector.collect(storage)
        stats = ppo.update(storage, it=1)
    finally:
        envs.close()
    assert stats["actor_frozen"] == 0.0 and not torch.equal(_params(ppo.actor), actor0)
    assert stats["bc_reg"] >= 0 and stats["bc_reg"] < 1.0  # KL to the frozen copy starts near 0


def test_target_kl_stops_the_epochs_early(tiny_policy_cfg):
    envs, ppo, collector, storage = _setup(tiny_policy_cfg, critic_warmup_iters=0, target_kl=1e-9,
                                           learning_rate=1e-3)
    seen_critic: list[int] = []
    ppo.critic.register_forward_pre_hook(lambda m, args: seen_critic.append(1))
    try:
        collector.collect(storage)
        # the collector's batched critic outputs are what the update would recompute (its clipping centre)...
        assert storage.value_preds_ready
        torch.testing.assert_close(storage.value_preds, ppo._value_predictions(storage))
        seen_critic.clear()
        stats = ppo.update(storage, it=0)
    finally:
        envs.close()
    # the first minibatch has ratio 1 (KL 0) and is applied; the next one is over 1.5 * target_kl
    assert stats["early_stop"] == 1.0 and stats["actor_updates"] == 1.0
    # ...so the update does not recompute them; the critic keeps fitting: one step per minibatch (2 epochs x 2)
    assert len(seen_critic) == 4


@pytest.mark.parametrize("history", [2])
def test_actor_history_windows(tiny_policy_cfg, history):
    from dataclasses import replace

    envs, ppo, collector, storage = _setup(replace(tiny_policy_cfg, history=history), critic_warmup_iters=0)
    try:
        stats = collector.collect(storage)
        ppo.update(storage, it=0)
    finally:
        envs.close()
    assert storage.obs["image"].shape == (8, 2, history, 32, 32, 3)
    assert storage.obs["history_mask"].shape == (8, 2, history) and storage.obs["privileged"].shape == (8, 2, 13)
    assert np.isfinite(stats["value/mean"])


def test_ppo_moves_the_policy_towards_better_actions(tiny_policy_cfg):
    """One-step bandit on real observations: reward -(a - 0.5)^2 per action dim; the mean must move to 0.5."""
    envs, ppo, collector, storage = _setup(tiny_policy_cfg, critic_warmup_iters=0, learning_rate=3e-3,
                                           target_kl=0.0, bc_reg="none", entropy_coef=0.0)
    try:
        obs = to_torch(collector.storage_obs(), ppo.device)
    finally:
        envs.close()
    target = torch.full((4,), 0.5)

    def mean_error() -> float:
        with torch.no_grad():
            return float((ppo.actor.unnormalize_action(ppo.policy_output(obs).mean) - target).abs().mean())

    before = mean_error()
    for it in range(25):
        storage.clear()
        for _ in range(storage.num_steps):
            out = ppo.act(obs)
            reward = -(out["actions"] - target).pow(2).sum(-1)
            done = torch.ones(2)  # every step is a whole episode (terminated: no bootstrap)
            storage.add(obs, out["actions"], out["log_probs"], out["values"], reward, done, torch.zeros(2),
                        torch.zeros(2))
        storage.compute_returns(torch.zeros(2), ppo.cfg.gamma, ppo.cfg.gae_lambda)
        torch.testing.assert_close(storage.returns, storage.rewards)  # one-step episodes: R = r
        ppo.update(storage, it)
    assert mean_error() < 0.5 * before, (before, mean_error())


@pytest.mark.parametrize("bc_reg", ["kl", "kl_mean"])
def test_kl_mean_anchors_the_mean_and_leaves_the_std_alone(tiny_policy_cfg, bc_reg):
    """kl_mean is the KL's mean term, sum (mu - mu_BC)^2 / (2 sigma_BC^2); only the full KL pulls the std to BC's."""
    from robo_hybrid.policy.model import HeadOutputs

    envs, ppo, _, _ = _setup(tiny_policy_cfg, bc_reg=bc_reg)
    envs.close()
    assert ppo.bc_policy is not None  # full fine-tuning: both build the frozen anchor
    torch.manual_seed(1)
    bc_mean, bc_log_std = torch.randn(5, 4), torch.full((5, 4), np.log(0.3))
    mean = (bc_mean + 0.1 * torch.randn(5, 4)).requires_grad_(True)
    log_std = torch.full((5, 4), np.log(0.03), requires_grad=True)
    reg = ppo._bc_regularizer({"bc_mean": bc_mean, "bc_log_std": bc_log_std},
                              HeadOutputs(mean, log_std, None, torch.zeros(5, 8)))
    reg.backward()
    mean_term = ((mean - bc_mean).pow(2) / (2 * 0.3 ** 2)).sum(-1).mean()
    assert mean.grad is not None and mean.grad.abs().sum() > 0
    if bc_reg == "kl_mean":
        torch.testing.assert_close(reg, mean_term)
        assert log_std.grad is None  # the exploration std is PPO's to set: the term does not depend on it
    else:
        # log(0.3 / 0.03) - 1/2 + ... per dim on top of the mean term
        assert log_std.grad is not None and reg > mean_term + 1.0
        assert torch.all(log_std.grad < 0)  # descending the loss raises the std towards BC's 0.3


def test_without_an_anchor_no_anchor_std_is_logged(tiny_policy_cfg):
    envs, _, collector, storage = _setup(tiny_policy_cfg, bc_reg="none")
    try:
        rollout = collector.collect(storage)
    finally:
        envs.close()
    assert "policy/rollout_std_0" in rollout and not any(k.startswith("policy/bc_std") for k in rollout)


@pytest.mark.parametrize("arch", ["transformer", "mlp"])
def test_the_time_input_moves_the_critic_and_is_off_by_default(arch):
    """algo.critic.time_input: the episode's elapsed fraction is one more critic input (a value at step 0 and at
    the time limit may differ); without it the critic has no such input."""
    spec = make_env("push", ENV).unwrapped.io_spec
    plain = make_critic(CriticConfig(arch=arch, d_model=32, n_heads=2, conv_channels=[8, 16]), spec)
    assert TIME_KEY not in plain.input_keys
    torch.manual_seed(0)
    critic = make_critic(CriticConfig(arch=arch, d_model=32, n_heads=2, conv_channels=[8, 16], time_input=True), spec)
    assert TIME_KEY in critic.input_keys and TIME_KEY in critic.privileged_keys
    B = 4
    obs = {t.name: torch.rand(B, *t.shape) for t in spec.observations + spec.privileged if t.dtype != "uint8"}
    early, late = {**obs, TIME_KEY: torch.zeros(B, 1)}, {**obs, TIME_KEY: torch.ones(B, 1)}
    critic.update_normalizers({k: torch.cat([early[k], late[k]]) for k in early})
    with torch.no_grad():
        assert not torch.allclose(critic(early), critic(late))


def test_the_time_input_needs_an_episode_length():
    spec = dataclasses.replace(make_env("push", ENV).unwrapped.io_spec, episode_steps=0)
    with pytest.raises(ValueError, match="episode_steps=0.*time_input=false"):
        make_critic(CriticConfig(time_input=True), spec)
