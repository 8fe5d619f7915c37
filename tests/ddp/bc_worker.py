"""Run a few BC steps (under torchrun or alone) and dump the per-step global loss and final weights of rank 0.

usage: python bc_worker.py <demo file> <out dir> <global batch> <steps>
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

import robo_hybrid.policy  # noqa: F401  (torch side first)
from robo_hybrid.config import compose_config, to_dataclass, to_yaml
from robo_hybrid.training.bc import BCTrainer


def main() -> None:
    data, out, batch, steps = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(1)
    cfg = to_dataclass(compose_config([
        f"data={data}", f"run_dir={out / 'run'}", "task.env.image_size=32", "policy=tiny", "policy.augment=false",
        f"algo.batch_size={batch}", f"algo.steps={steps}", "algo.log_every=1", "algo.val_fraction=0",
        "algo.progress=false", "algo.warmup_steps=0", "algo.checkpoint_every=1000",
    ]))
    trainer = BCTrainer(cfg.algo, cfg.policy, cfg.task.name, cfg.task.env, cfg.run_dir, data=cfg.data, seed=cfg.seed,
                        device=cfg.device, config_yaml=to_yaml(cfg))
    losses = [trainer.train_step()["loss"] for _ in range(steps)]
    h = hashlib.sha256()
    for k, v in sorted(trainer.policy.state_dict().items()):
        h.update(k.encode() + v.detach().cpu().numpy().tobytes())
    rank = trainer.dist.rank
    (out / f"rank{rank}.json").write_text(json.dumps({"losses": losses, "weights": h.hexdigest(),
                                                      "world": trainer.dist.world_size}))
    trainer.close()


if __name__ == "__main__":
    main()
