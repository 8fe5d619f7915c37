"""Residual fine-tuning: zero at init (acts as BC), bounded, the frozen base gets no gradient, base outputs cached in
the rollout, the actor reads no privileged input, one ONNX graph with parity, partial mode, a residual PPO run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robo_hybrid.envs import EnvConfig, make_env
from robo_hybrid.policy import MultimodalPolicy
from robo_hybrid.rl.collector import RolloutCollector
from robo_hybrid.rl.config import CriticConfig, PPOConfig, ResidualConfig
from robo_hybrid.rl.critic import TransformerCritic
from robo_hybrid.rl.ppo import PPO
from robo_hybrid.rl.residual import (
    BASE_FEATURES,
    BASE_MEAN,
    BASE_STATE,
    RESIDUAL_FILE,
    OnnxBase,
    ResidualPolicy,
    finetune_actor,
    load_residual,
)
from robo_hybrid.rl.rollout import make_vector_env
from robo_hybrid.rl.storage import RolloutStorage

ENV = EnvConfig(image_size=32, episode_steps=6)
CRITIC = CriticConfig(d_model=32, n_heads=2, n_layers=1, conv_channels=[8, 16])


def _spec():
    return make_env("push", EnvConfig(image_size=32, render=False)).unwrapped.io_spec


def _obs(spec, batch=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randint(0, 256, (batch, 32, 32, 3), dtype=torch.uint8, generator=g),
            "proprio": torch.randn(batch, spec.obs("proprio").shape[0], generator=g),
            "goal": torch.randn(batch, spec.obs("goal").shape[0], generator=g)}


def _policy(tiny_policy_cfg, spec):
    torch.manual_seed(0)
    return MultimodalPolicy(tiny_policy_cfg, spec).eval()


def _perturb(head: torch.nn.Module) -> None:
    """Give the zero-initialised last layer large weights (a trained residual that wants to leave the bound)."""
    with torch.no_grad():
        head.out.weight.normal_(0, 5.0)  # type: ignore[union-attr]
        head.out.bias.normal_(0, 5.0)  # type: ignore[union-attr]


@pytest.mark.parametrize("state_inputs", [False, True])
def test_residual_policy_acts_exactly_as_bc_at_initialisation(tiny_policy_cfg, state_inputs):
    spec = _spec()
    base = _policy(tiny_policy_cfg, spec)
    obs = _obs(spec)
    bc_action = base.act(obs)
    res = ResidualPolicy(base, ResidualConfig(state_inputs=state_inputs))
    np.testing.assert_array_equal(res.act(obs).numpy(), bc_action.numpy())
    # ...and through the cached base outputs the rollout stores
    cached = {**obs, **res.base_cache(obs)}
    np.testing.assert_array_equal(res.act(cached).numpy(), bc_action.numpy())


def test_residual_is_bounded_by_its_scale(tiny_policy_cfg):
    spec = _spec()
    base = _policy(tiny_policy_cfg, spec)
    res = ResidualPolicy(base, ResidualConfig(scale=0.2, scale_init=0.1))
    _perturb(res.head)
    obs = _obs(spec, batch=64)
    out, base_mean = res(obs), base(obs).mean
    delta = (out.mean - base_mean).abs()
    assert float(delta.max()) <= 0.2 + 1e-6 and float(delta.max()) > 0.15  # saturated near, never past, the bound
    res.set_scale(0.05)
    assert float((res(obs).mean - base_mean).abs().max()) <= 0.05 + 1e-6


@pytest.mark.parametrize("state_inputs", [False, True])
def test_frozen_base_receives_no_gradient_and_stays_unchanged(tiny_policy_cfg, state_inputs):
    spec = _spec()
    base = _policy(tiny_policy_cfg, spec)
    res = ResidualPolicy(base, ResidualConfig(state_inputs=state_inputs))
    before = {k: v.clone() for k, v in base.state_dict().items()}
    cfg = PPOConfig(num_envs=2, num_steps=8, num_minibatches=2, num_epochs=2, vector_env="sync", critic=CRITIC,
                    critic_warmup_iters=0, target_kl=0.0, base_runtime="torch")  # torch: its calls are counted
    ppo = PPO(res, TransformerCritic(CRITIC, spec), cfg)
    trainable = {id(p) for p in ppo.trainable()}
    assert trainable == {id(p) for p in res.head.parameters()}
    envs = make_vector_env("push", ENV, 2, "sync")
    seen: list[set[str]] = []
    base.register_forward_pre_hook(lambda m, args: seen.append(set(args[0])))
    try:
        collector = RolloutCollector(envs, ppo, seed=3)
        storage = RolloutStorage(8, 2, collector.example_obs(), res.action_dim)
        calls_before = len(seen)
        collector.collect(storage)
        rollout_calls = len(seen) - calls_before
        ppo.update(storage, it=0)
    finally:
        envs.close()
    assert rollout_calls == 8  # once per env step...
    assert len(seen) == calls_before + 8  # ...and never in the update: it reads the cache in the storage
    assert all(s <= {"image", "proprio", "goal"} for s in seen)  # the base reads no privileged input
    assert BASE_MEAN in storage.obs and BASE_FEATURES in storage.obs and BASE_STATE in storage.obs
    assert all(p.grad is None for p in base.parameters())
    res.train(True)
    assert not base.training and not any(m.training for m in base.modules())  # the base never augments
    for k, v in base.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert float(res.head.out.weight.abs().sum()) > 0  # the head did learn


def test_state_inputs_are_the_bases_normalized_vectors_and_steer_the_residual(tiny_policy_cfg):
    spec = _spec()
    base = _policy(tiny_policy_cfg, spec)
    stats = {k: (np.full(spec.obs(k).shape, 0.5, np.float32), np.full(spec.obs(k).shape, 2.0, np.float32))
             for k in ("proprio", "goal")}
    base.fit_normalizers({**stats, "action": (np.zeros(spec.action.shape, np.float32),
                                              np.ones(spec.action.shape, np.float32))})
    obs = _obs(spec, batch=4)
    want = torch.cat([(obs[k] - 0.5) / 2.0 for k in ("proprio", "goal")], dim=-1)
    cache = ResidualPolicy(base, ResidualConfig()).base_cache(obs)
    torch.testing.assert_close(cache[BASE_STATE], want, rtol=1e-5, atol=1e-5)  # the tokens' normalization
    # the onnxruntime base of the rollouts caches the same state
    torch.testing.assert_close(OnnxBase(base)(obs)[BASE_STATE], want, rtol=1e-4, atol=1e-4)
    # with state_inputs the head reads it: the same features and base action, another state, another residual
    res = ResidualPolicy(base, ResidualConfig(state_inputs=True))
    _perturb(res.head)
    moved = {**cache, BASE_STATE: cache[BASE_STATE] + 1.0}
    assert float((res(cache).mean - res(moved).mean).abs().max()) > 1e-3
    plain = ResidualPolicy(base, ResidualConfig(state_inputs=False))
    _perturb(plain.head)
    torch.testing.assert_close(plain(cache).mean, plain(moved).mean, rtol=0, atol=0)  # off: never read


def test_partial_trains_only_the_last_block_and_heads(tiny_policy_cfg):
    spec = _spec()
    policy = finetune_actor(_policy(tiny_policy_cfg, spec), "partial", ResidualConfig(), partial_blocks=1)
    assert isinstance(policy, MultimodalPolicy)
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    n = len(policy.encoder.blocks)
    assert trainable and all(k.startswith((f"encoder.blocks.{n - 1}.", "encoder.ln_f", "action_head")) for k in
                             trainable)
    assert not any(p.requires_grad for p in policy.tokenizer.parameters())


@pytest.mark.parametrize("state_inputs", [False, True])
def test_residual_exports_as_one_graph_with_parity(tiny_policy_cfg, tmp_path, state_inputs):
    from robo_hybrid.export import check_parity, export_onnx, ort_session

    spec = _spec()
    res = ResidualPolicy(_policy(tiny_policy_cfg, spec), ResidualConfig(scale=0.3, state_inputs=state_inputs))
    _perturb(res.head)
    obs = {k: v.numpy() for k, v in _obs(spec, batch=16, seed=1).items()}
    rep = export_onnx(res, tmp_path / "res.onnx", parity_obs=obs)  # pyright: ignore[reportArgumentType]  (duck-typed)
    assert rep.inputs == ["image", "proprio", "goal"] and rep.outputs == ["action"]
    got = np.asarray(ort_session(tmp_path / "res.onnx").run(None, obs)[0])
    want = res.act({k: torch.as_tensor(v) for k, v in obs.items()}).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    base_only = res.base.act({k: torch.as_tensor(v) for k, v in obs.items()}).numpy()
    assert np.abs(got - base_only).max() > 1e-3  # the graph holds the residual, not just the base
    assert check_parity(res.as_onnx(), tmp_path / "res.onnx", obs) <= 1e-4


def test_residual_ppo_run_saves_base_and_head_and_exports_them(compose_ppo, bc_checkpoint, tmp_path):
    from robo_hybrid.commands.train import train_ppo
    from robo_hybrid.training import checkpoint as ckpt

    run = tmp_path / "ppo"
    res = train_ppo(compose_ppo(run, f"checkpoint={bc_checkpoint}", "algo.iterations=2", "algo.critic_warmup_iters=0",
                                "algo.finetune=residual", "algo.checkpoint_every=1"))
    assert isinstance(res.policy, ResidualPolicy) and res.iterations == 2
    assert np.isfinite(res.min_vs_bc)
    found = ckpt.find_checkpoint(run)
    assert found is not None and (found / RESIDUAL_FILE).is_file()
    base = ckpt.load_policy(run)[0]
    loaded = load_residual(run, base)
    assert isinstance(loaded, ResidualPolicy)
    for k, v in res.policy.head.state_dict().items():
        torch.testing.assert_close(loaded.head.state_dict()[k], v)
    assert load_residual(bc_checkpoint, base) is base  # a BC checkpoint stays the plain policy
    # resume continues the same residual head (restored from the PPO state)
    res2 = train_ppo(compose_ppo(run, f"checkpoint={bc_checkpoint}", "algo.iterations=3", "algo.critic_warmup_iters=0",
                                 "algo.finetune=residual", "resume=true"))
    assert res2.iterations == 3 and isinstance(res2.policy, ResidualPolicy)
    # `eval` and `export` act on what the run trained: the base with its residual head
    from robo_hybrid.commands.common import load_checkpoint
    from robo_hybrid.config import to_dataclass

    cfg = to_dataclass(compose_ppo(tmp_path / "unused", f"checkpoint={run}"))
    assert isinstance(load_checkpoint(cfg, [f"checkpoint={run}"])[0], ResidualPolicy)


@pytest.mark.parametrize("bad", [{"scale": 0.1, "scale_init": 0.2}, {"init_std": 0.0}])
def test_residual_config_refuses_unusable_values(bad):
    with pytest.raises(ValueError, match="residual"):
        ResidualConfig(**bad)
