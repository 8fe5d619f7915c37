"""Shared fixtures: tiny demo files and tiny policies, built once per session."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402
import torch  # noqa: E402,F401  (torch before any GL context: triton's LLVM clashes with Mesa's)

import robo_hybrid.policy  # noqa: E402,F401  (loads what it needs from torch before any GL context too)
from robo_hybrid.envs import EnvConfig  # noqa: E402
from robo_hybrid.rl.config import register  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def push_demos_32(tmp_path_factory):
    """Three expert demos of Push at 32 x 32 pixels."""
    from robo_hybrid.envs.demos import collect

    path = tmp_path_factory.mktemp("demos") / "push32.hdf5"
    collect("push", EnvConfig(image_size=32), episodes=3, out=path, seed=0, workers=1, progress=False)
    return path


@pytest.fixture(scope="session")
def tiny_policy_cfg():
    """A policy small enough for fast tests."""
    from robo_hybrid.policy.config import PolicyConfig

    return PolicyConfig(d_model=32, n_layers=1, n_heads=2, conv_channels=[8, 16])


# ----------------------------------------------------------------- RL: a tiny BC checkpoint, algo=ppo composition
# The policy package imports torch.utils.flop_counter, which loads triton (LLVM): that must happen before the
# first MuJoCo GL context (session fixtures render demos), or Mesa's llvmpipe and triton's LLVM clash (segfault).

TINY = [
    "policy=tiny", "task=push", "task.env.image_size=32", "task.env.episode_steps=6",
    "algo.num_envs=2", "algo.num_steps=8", "algo.num_minibatches=2", "algo.num_epochs=2", "algo.vector_env=sync",
    "algo.eval_episodes=2", "algo.eval_every=0", "algo.progress=false",
    "algo.critic.d_model=32", "algo.critic.n_heads=2", "algo.critic.n_layers=1", "algo.critic.conv_channels=[8,16]",
    "algo.reward_model.d_model=16", "algo.reward_model.n_heads=2", "algo.reward_model.n_layers=1",
    "algo.reward_model.conv_channels=[8]", "algo.reward_model.history=2", "algo.reward_model.negatives=2",
    "algo.reward_model.epochs=1",
]


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    """Hydra overrides that make a PPO run seconds long (2 envs x 8 steps, 32 px, width-32 models)."""
    return list(TINY)


@pytest.fixture(scope="session")
def compose_ppo():
    """compose_ppo(run_dir, *overrides) -> the root config with algo=ppo and the tiny sizes above."""
    from robo_hybrid.config import compose_config

    register()  # idempotent; robo_hybrid.config.register_configs may register it as well

    def compose(run_dir, *overrides: str):
        return compose_config(["algo=ppo", *TINY, f"run_dir={run_dir}", *overrides])

    return compose


@pytest.fixture(scope="session")
def bc_checkpoint(tmp_path_factory, push_demos_32, tiny_policy_cfg):
    """A checkpoint in the BC format: a tiny policy with normalizers fitted on the Push demos (not trained)."""
    from robo_hybrid.envs.demos import load_demos
    from robo_hybrid.policy import MultimodalPolicy
    from robo_hybrid.training import checkpoint as ckpt
    from robo_hybrid.training.data import DemoDataset

    demos = load_demos(push_demos_32)
    policy = MultimodalPolicy(tiny_policy_cfg, demos.spec)
    policy.fit_normalizers(DemoDataset(demos.episodes, demos.spec.policy_keys).stats())
    root = tmp_path_factory.mktemp("bc_run")
    ckpt.save_checkpoint(root / "checkpoints", 10, policy)
    return root
