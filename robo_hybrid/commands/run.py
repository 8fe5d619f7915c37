"""`robo-hybrid run`: the main job. Collect demos -> BC -> held-out eval -> ONNX export -> the torch-free controller
loop on the simulated robot server, on the same held-out seeds as the torch evaluation. Rerun it and it resumes."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

from robo_hybrid.config import Config, load_config
from robo_hybrid.fileio import atomic_write_json

from .common import final_eval
from .export import export
from .train import train


def deploy_on_robot(cfg: Config, model: str, seed: int) -> dict:
    """The controller loop of robo_hybrid.deploy on cfg.robot, episodes from `seed` (the held-out seed base)."""
    from robo_hybrid.deploy import run_deploy  # noqa: PLC0415

    # the env the torch evaluation used (image size, cameras, episode length...), on the same held-out seeds
    return run_deploy(model, robot=cfg.robot, cfg=replace(cfg.deploy, seed=seed), task=cfg.task.name,
                      env_cfg=asdict(cfg.task.env))


def main(args: list[str]) -> int:
    """The whole path on the embedded default (task push); everything lands in run_dir."""
    from robo_hybrid.envs.demos import DemoFileError, collect, load_demos  # noqa: PLC0415

    cfg = load_config(["robot=sim_server", *args])
    t0 = time.perf_counter()
    try:
        demos = load_demos(cfg.data)
        print(f"[run] using {cfg.data}: {len(demos.episodes)} demos, expert success {demos.success_rate:.1%}")
    except DemoFileError:
        r = collect(cfg.task.name, cfg.task.env, cfg.episodes, cfg.data, seed=cfg.seed, workers=cfg.workers,
                    action_noise=cfg.task.demo_action_noise)
        print(f"[run] collected {r.episodes} demos of {cfg.task.name}: expert success {r.success_rate:.1%}, "
              f"{r.steps_per_s:.0f} env steps/s ({r.wall_s:.0f} s)")
    cfg.resume = True  # continue an interrupted run instead of refusing its run dir
    policy, run_dir = train(cfg)
    ev = final_eval(policy, cfg, run_dir)
    onnx_path = run_dir / "policy.onnx"
    export(cfg, policy, onnx_path)
    cfg.deploy.episodes = min(cfg.deploy.episodes, cfg.eval.episodes)
    dep = deploy_on_robot(cfg, str(onnx_path), seed=cfg.eval.seed_base)  # the first of the torch eval's seeds
    summary = {"torch_eval": asdict(ev), "deploy": {k: v for k, v in dep.items() if k != "episodes"},
               "wall_s": time.perf_counter() - t0}
    atomic_write_json(Path(run_dir) / "run_summary.json", summary)
    print(f"[run] success: torch eval {ev.success_rate:.1%} (n={ev.episodes}), controller loop on {cfg.robot} "
          f"{dep.get('success_rate', float('nan')):.1%} (n={dep.get('n_episodes', cfg.deploy.episodes)}); "
          f"total {summary['wall_s'] / 60:.1f} min; summary {run_dir / 'run_summary.json'}")
    return 0
