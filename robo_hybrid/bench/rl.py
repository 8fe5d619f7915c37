"""`robo-hybrid bench rl`: how close end-to-end RL comes to the simulator's own speed, per task, in one run.

For each task (its configured cameras), at one num_envs: the vector env's own steps/s (random actions, no
learning, the trainer's own worker processes), then end-to-end env steps/s of PPO iterations (rollouts + updates,
wall clock; evaluations are not run) for today's full fine-tuning (finetune=full, KL to BC, image critic) and for
the default configuration (bench.rl.ppo: the settings `robo-hybrid train algo=ppo` uses), with their ratio to the
env alone. Critic warm-up is switched off here so every timed iteration includes the actor's update.

Settings: cfg.bench.rl (tasks, checkpoints, iterations, ppo.*); policy.* builds the untrained policy when no
checkpoint is given (throughput does not depend on the weights).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch  # before any MuJoCo GL context in this process

from robo_hybrid.config import Config
from robo_hybrid.fileio import atomic_write_json
from robo_hybrid.rl.config import PPOConfig

MODES = ("full", "default")


def today_full(ppo: PPOConfig) -> PPOConfig:
    """Today's full fine-tuning: every actor weight, KL to the BC policy, a 2-block critic tokenizing the images,
    one vector env and the critic updated in turn (no pipelining)."""
    return replace(ppo, finetune="full", bc_reg="kl", critic=replace(ppo.critic, use_images=True, n_layers=2),
                   env_groups=1, async_critic=False)


def env_alone_steps_per_s(envs, steps: int, seed: int) -> float:
    """Env steps/s of the vector env under uniform random actions (no policy, no learning)."""
    envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    shape = (envs.num_envs, *(envs.single_action_space.shape or ()))
    envs.step(rng.uniform(-1, 1, shape).astype(np.float32))  # first frames out of the timing
    t0 = time.perf_counter()
    for _ in range(steps):
        envs.step(rng.uniform(-1, 1, shape).astype(np.float32))
    return steps * envs.num_envs / (time.perf_counter() - t0)


def untrained_checkpoint(cfg: Config, task: str, root: Path) -> str:
    """A BC-format checkpoint of an untrained policy of cfg.policy (identity normalizers) for `task`."""
    from robo_hybrid.envs import make_env  # noqa: PLC0415
    from robo_hybrid.policy import MultimodalPolicy  # noqa: PLC0415
    from robo_hybrid.training import checkpoint as ckpt  # noqa: PLC0415

    probe = make_env(task, cfg=replace(cfg.task.env, render=False))
    spec = probe.unwrapped.io_spec
    probe.close()
    policy = MultimodalPolicy(cfg.policy, spec)
    stats = {k: (np.zeros(int(np.prod(spec.obs(k).shape))), np.ones(int(np.prod(spec.obs(k).shape))))
             for k in policy.vector_keys}
    stats["action"] = (np.zeros(policy.action_dim), np.ones(policy.action_dim))
    policy.fit_normalizers(stats)
    ckpt.save_checkpoint(root / f"{task}_init" / "checkpoints", 0, policy)
    return str(root / f"{task}_init")


def measure_mode(ppo: PPOConfig, task: str, env_cfg, checkpoint: str, run_dir: Path, rl_cfg) -> dict:
    """Env-alone and end-to-end steps/s of one PPO configuration, on the same worker processes."""
    from robo_hybrid.rl.train import PPOTrainer  # noqa: PLC0415

    ppo = replace(ppo, critic_warmup_iters=0, progress=False, time_budget_s=0.0)
    trainer = PPOTrainer(ppo, task, env_cfg, run_dir, init_checkpoint=checkpoint, seed=0)
    try:
        env_sps = float(np.median([env_alone_steps_per_s(trainer.envs, ppo.num_steps, seed=10 + i)
                                   for i in range(rl_cfg.env_repeats)]))
        trainer.collector.start()  # the rollouts start from fresh episodes
        for _ in range(rl_cfg.warmup_iterations):
            trainer.iteration()
        rollout_s = update_s = 0.0
        for _ in range(rl_cfg.iterations):
            m = trainer.iteration()
            rollout_s, update_s = rollout_s + m["rollout_s"], update_s + m["update_s"]
        t0 = time.perf_counter()
        trainer.join_critic()  # the last batch's background critic update counts too
        update_s += time.perf_counter() - t0
    finally:
        trainer.close()
    steps = rl_cfg.iterations * ppo.batch_size
    e2e = steps / (rollout_s + update_s)
    return {"env_alone_sps": env_sps, "e2e_sps": e2e, "ratio": e2e / env_sps, "rollout_sps": steps / rollout_s,
            "update_s_per_iter": update_s / rl_cfg.iterations, "finetune": ppo.finetune,
            "critic_images": ppo.critic.use_images, "bc_reg": ppo.bc_reg}


def bench_rl(cfg: Config) -> list[dict]:
    """Measure every task and mode side by side; print a table; optional JSON (bench.rl.json)."""
    from robo_hybrid.config import compose_config, to_dataclass  # noqa: PLC0415

    b = cfg.bench.rl
    torch.set_num_threads(b.ppo.num_threads)
    rows = []
    print(f"[bench rl] num_envs={b.ppo.num_envs}, num_steps={b.ppo.num_steps}, {b.iterations} timed iterations "
          f"(+{b.warmup_iterations} warm-up) per mode; env steps/s", flush=True)
    print(f"{'task':<12}{'cameras':<16}{'env alone':>10}{'full (today)':>14}{'ratio':>8}{'default':>10}{'ratio':>8}"
          f"{'speed-up':>10}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_rl_") as tmp:
        root = Path(tmp)
        for i, task in enumerate(b.tasks):
            task_cfg = to_dataclass(compose_config([f"task={task}"])).task if task != cfg.task.name else cfg.task
            tcfg = replace(cfg, task=task_cfg)
            ck = b.checkpoints[i] if b.checkpoints and b.checkpoints[i] else untrained_checkpoint(tcfg, task, root)
            env_cfg = task_cfg.env
            cams = "front" + (" + wrist" if env_cfg.wrist_camera else "")
            res = {mode: measure_mode(today_full(b.ppo) if mode == "full" else b.ppo, task, env_cfg, ck,
                                      root / f"{task}_{mode}", b) for mode in MODES}
            env_sps = float(np.median([res[m]["env_alone_sps"] for m in MODES]))
            row = {"task": task, "cameras": cams, "num_envs": b.ppo.num_envs, "env_alone_sps": env_sps,
                   **{f"{m}_{k}": v for m in MODES for k, v in res[m].items()}}
            for m in MODES:
                row[f"{m}_ratio"] = res[m]["e2e_sps"] / env_sps
            rows.append(row)
            print(f"{task:<12}{cams:<16}{env_sps:>10.0f}{row['full_e2e_sps']:>14.0f}{row['full_ratio']:>8.0%}"
                  f"{row['default_e2e_sps']:>10.0f}{row['default_ratio']:>8.0%}"
                  f"{row['default_e2e_sps'] / row['full_e2e_sps']:>9.1f}x", flush=True)
    print(f"default: finetune={b.ppo.finetune}, critic.use_images={b.ppo.critic.use_images}, bc_reg={b.ppo.bc_reg}; "
          "full (today): finetune=full, critic.use_images=True, bc_reg=kl", flush=True)
    if b.json:
        atomic_write_json(b.json, rows)
    return rows
