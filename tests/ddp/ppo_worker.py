"""Run a tiny PPO job (under torchrun or alone) and dump each rank's weights hash and counters.

usage: python ppo_worker.py <demo file> <out dir> <iterations> [extra Hydra overrides...]
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch

import robo_hybrid.policy  # noqa: F401  (torch side first)
from robo_hybrid.commands.train import train_ppo
from robo_hybrid.config import compose_config
from robo_hybrid.rl.config import register

TINY = [
    "policy=tiny", "task=push", "task.env.image_size=32", "task.env.episode_steps=6", "task.env.render=true",
    "algo.num_envs=2", "algo.num_steps=8", "algo.num_minibatches=2", "algo.num_epochs=2", "algo.vector_env=sync",
    "algo.eval_episodes=2", "algo.eval_every=0", "algo.progress=false", "algo.critic_warmup_iters=0",
    "algo.critic.d_model=32", "algo.critic.n_heads=2", "algo.critic.n_layers=1", "algo.critic.conv_channels=[8,16]",
]


def digest(*modules: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for m in modules:
        for k, v in sorted(m.state_dict().items()):
            h.update(k.encode() + v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    data, out, iters, extra = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    torch.set_num_threads(1)
    register()
    cfg = compose_config(["algo=ppo", *TINY, f"data={data}", f"run_dir={out / 'run'}", "checkpoint=",
                          f"algo.iterations={iters}", *extra])
    res = train_ppo(cfg)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    (out / f"rank{rank}.json").write_text(json.dumps({
        "actor": digest(res.policy), "iterations": res.iterations, "env_steps": res.env_steps, "world": world,
        "final_eval": res.final_eval}))


if __name__ == "__main__":
    main()
