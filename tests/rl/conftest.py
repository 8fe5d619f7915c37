"""Fixtures for the RL tests: a tiny 'BC' checkpoint on Push at 32 px and a Hydra compose helper for algo=ppo."""

from __future__ import annotations

import pytest

# The policy package imports torch.utils.flop_counter, which loads triton (LLVM): that must happen before the
# first MuJoCo GL context (session fixtures render demos), or Mesa's llvmpipe and triton's LLVM clash (segfault).
import robo_hybrid.policy  # noqa: F401
from robo_hybrid.rl.config import register

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
