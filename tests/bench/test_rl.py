"""`robo-hybrid bench rl` smoke test at tiny size: every figure is measured and the ratios are consistent."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robo_hybrid.bench.rl import bench_rl, today_full
from robo_hybrid.config import ConfigError, load_config
from robo_hybrid.rl.config import PPOConfig

TINY_RL = ["policy=tiny", "task=push", "task.env.image_size=32", "task.env.episode_steps=6", "bench.rl.tasks=[push]",
           "bench.rl.iterations=1", "bench.rl.warmup_iterations=0", "bench.rl.env_repeats=1",
           "bench.rl.ppo.num_envs=2", "bench.rl.ppo.num_steps=4", "bench.rl.ppo.num_minibatches=1",
           "bench.rl.ppo.num_epochs=1", "bench.rl.ppo.vector_env=sync", "bench.rl.ppo.critic.d_model=32",
           "bench.rl.ppo.critic.n_heads=2", "bench.rl.ppo.critic.n_layers=1",
           "bench.rl.ppo.critic.conv_channels=[8,16]"]


def test_bench_rl_measures_env_full_and_default_side_by_side(tmp_path, capsys):
    out = tmp_path / "rl.json"
    rows = bench_rl(load_config([*TINY_RL, f"bench.rl.json={out}"]))
    assert [r["task"] for r in rows] == ["push"]
    r = rows[0]
    assert r["full_finetune"] == "full" and r["full_critic_images"] is True and r["full_bc_reg"] == "kl"
    default = PPOConfig()
    assert r["default_finetune"] == default.finetune and r["default_critic_images"] is default.critic.use_images
    for m in ("full", "default"):
        assert r[f"{m}_e2e_sps"] > 0 and np.isclose(r[f"{m}_ratio"], r[f"{m}_e2e_sps"] / r["env_alone_sps"])
    assert json.loads(out.read_text())[0]["task"] == "push"
    assert "env alone" in capsys.readouterr().out


def test_today_full_changes_only_the_mode_regularizer_and_critic_inputs():
    ppo = PPOConfig(num_envs=3)
    full = today_full(ppo)
    assert (full.finetune, full.bc_reg, full.critic.use_images, full.num_envs) == ("full", "kl", True, 3)
    assert ppo.critic.use_images is False  # the default is left as it was


def test_bench_rl_checkpoints_must_match_the_tasks():
    with pytest.raises(ConfigError, match="checkpoints"):
        load_config(["bench.rl.tasks=[push,pickplace]", "bench.rl.checkpoints=[a]"])
