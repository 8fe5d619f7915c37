"""Data-dependent pieces of a PPO run: demo minibatches for the bc_nll regularizer, the reward model for shaping."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from robo_hybrid.evaluation import policy_act_fn, run_episodes
from robo_hybrid.policy import HISTORY_MASK_KEY, MultimodalPolicy
from robo_hybrid.spec import IOSpec

from .config import PPOConfig
from .reward_model import RewardModel, Trajectory, load_reward_model, save_reward_model, train_reward_model

log = logging.getLogger(__name__)
NEGATIVE_SEED_OFFSET = 900_000  # rollouts of the initial policy for reward-model negatives (not eval seeds)


def _load_demos(path: str, spec: IOSpec):
    from robo_hybrid.envs.demos import load_demos  # noqa: PLC0415

    if not path:
        raise ValueError("this PPO setting needs demonstrations: pass data=<demo file> (robo-hybrid collect ...)")
    demos = load_demos(path, only_success=True)
    demos.spec.require_compatible(spec, what="env")
    if not demos.episodes:
        raise ValueError(f"{path} holds no successful demos")
    return demos


def demo_batches(path: str, policy: MultimodalPolicy, batch_size: int,
                 seed: int) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """Endless (policy obs, action) minibatches of successful demos, for algo.bc_reg=bc_nll."""
    from robo_hybrid.training.data import DemoDataset  # noqa: PLC0415

    demos = _load_demos(path, policy.spec)
    keys = tuple(policy.spec.policy_keys)
    data = DemoDataset(demos.episodes, keys, policy.cfg.history)
    rng = np.random.default_rng(seed)
    device = next(policy.parameters()).device

    def gen() -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        while True:
            batch = data.get_batch(rng.integers(0, len(data), batch_size))
            obs = {k: batch[k].to(device) for k in (*keys, HISTORY_MASK_KEY) if k in batch}
            yield obs, batch["action"].to(device)

    return gen()


def collect_negatives(policy: MultimodalPolicy, envs: gym.vector.VectorEnv, episodes: int, keys: tuple[str, ...],
                      seed: int) -> list[Trajectory]:
    """Stochastic rollouts of the initial policy, recorded with the reward model's keys."""
    seeds = [seed + NEGATIVE_SEED_OFFSET + i for i in range(episodes)]
    recs = run_episodes(envs, policy_act_fn(policy, deterministic=False), seeds, policy.cfg.history,
                        tuple(policy.spec.policy_keys), record_keys=keys)
    return [Trajectory(r.obs, r.success) for r in recs]


def build_reward_model(cfg: PPOConfig, spec: IOSpec, policy: MultimodalPolicy, envs: gym.vector.VectorEnv,
                       demos_path: str, run_dir: Path, seed: int,
                       saved: Path | None = None) -> tuple[RewardModel, Path]:
    """Load the reward model (resume / algo.reward_model.checkpoint) or train it on demos + failed rollouts."""
    path = saved or (Path(cfg.reward_model.checkpoint) if cfg.reward_model.checkpoint else None)
    if path is not None:
        log.info("reward model from %s", path)
        return load_reward_model(path, expect_spec=spec), path
    rm_cfg = cfg.reward_model
    model = RewardModel(rm_cfg, spec)
    demos = _load_demos(demos_path, spec)
    trajs = [Trajectory({k: ep.obs[k] for k in model.input_keys}, True)
             for ep in demos.episodes[: rm_cfg.max_demo_episodes]]
    rollouts = collect_negatives(policy, envs, rm_cfg.negatives, model.input_keys, seed) if rm_cfg.negatives else []
    # failed rollouts are negatives; successful ones are further positive examples of progress
    trajs += rollouts
    n_fail = sum(not t.success for t in rollouts)
    losses = train_reward_model(model, trajs, seed=seed, progress=cfg.progress, device=cfg.device)
    log.info("reward model: %d demos + %d rollouts (%d failed), loss %.4f -> %.4f", len(trajs) - len(rollouts),
             len(rollouts), n_fail, losses[0] if losses else float("nan"), losses[-1] if losses else float("nan"))
    out = Path(run_dir) / "reward_model.safetensors"
    save_reward_model(out, model)
    return model, out
