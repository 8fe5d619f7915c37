"""`robo-hybrid collect task=push episodes=200 out=data/push.hdf5`: scripted-expert demos (resumable)."""

from __future__ import annotations

from robo_hybrid.config import load_config


def main(args: list[str]) -> int:
    """Collect cfg.episodes demos of cfg.task into cfg.out (default: cfg.data) with cfg.workers processes."""
    from robo_hybrid.envs.demos import collect  # noqa: PLC0415

    cfg = load_config(args)
    out = cfg.out or cfg.data
    r = collect(cfg.task.name, cfg.task.env, cfg.episodes, out, seed=cfg.seed, workers=cfg.workers,
                action_noise=cfg.task.demo_action_noise)
    print(f"wrote {r.path}: {r.episodes} episodes, expert success {r.success_rate:.1%}, "
          f"{r.env_steps} steps in {r.wall_s:.1f} s ({r.steps_per_s:.0f} env steps/s with {cfg.workers} worker(s))")
    return 0
