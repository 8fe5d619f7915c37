"""`robo-hybrid bench learn`: our BC, our BC + PPO, SB3 PPO and SB3 SAC on the same task, seeds, wall-clock budget
and cores, one after another. Held-out success (the one Evaluator, seeds eval.seed_base + i, deterministic actions)
at wall-clock checkpoints, evaluation time outside the budget; a table (time to 50% / 90%, final success), a PNG
and a JSON, rewritten after every run so an interrupted bench keeps what it measured.

Settings: cfg.bench.learn (budget_s, seeds, systems, ...; bench.learn.ppo.* for the PPO phase), algo.* for BC.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch  # before any MuJoCo GL context in this process

from robo_hybrid.config import Config, to_yaml
from robo_hybrid.evaluation import Evaluator
from robo_hybrid.fileio import atomic_write_json

from .clock import EvalSchedule, WallClock
from .learn_report import format_curves, format_learn_table, plot_curves, summarize, winners


def _bc_phase(cfg: Config, seed: int, tracker: EvalSchedule, phase_end_s: float, run_dir: Path, phase: str):
    """Collect demos and run BC until `phase_end_s` of training time; the cosine schedule ends at the phase end."""
    from robo_hybrid.envs.demos import collect  # noqa: PLC0415
    from robo_hybrid.training.bc import BCTrainer  # noqa: PLC0415
    from robo_hybrid.training.data import load_demo_file  # noqa: PLC0415

    clock, bc = tracker.clock, replace(cfg.algo, progress=False)
    demo_path = run_dir / "demos.hdf5"
    rep = collect(cfg.task.name, cfg.task.env, cfg.episodes, demo_path, seed=seed * cfg.episodes,
                  workers=cfg.workers, progress=False, action_noise=cfg.task.demo_action_noise)
    info = {"demos": rep.episodes, "demos_s": round(clock.elapsed(), 1)}
    print(f"[bench learn] {tracker.label:<14} t={clock.elapsed():7.0f} s  {rep.episodes} demos collected "
          f"(expert success {rep.success_rate:.0%})", flush=True)
    demos = load_demo_file(demo_path, only_success=bc.only_successful)
    if not demos.episodes:
        raise ValueError(f"none of the {rep.episodes} expert demos of {cfg.task.name} succeeded (task.env."
                         "episode_steps too short?); BC needs successful demos (or pass algo.only_successful=false)")
    trainer = BCTrainer(bc, cfg.policy, cfg.task.name, cfg.task.env, run_dir / "bc", demos=demos, seed=seed,
                        device=cfg.device, config_yaml=to_yaml(replace(cfg, seed=seed)),
                        eval_fn=lambda policy, step: tracker.evaluate_policy(policy, phase))
    t0, step0 = clock.elapsed(), trainer.step
    bc.steps = 10**9  # schedule horizon, set from the measured step time below
    while clock.elapsed() < phase_end_s:
        metrics = trainer.train_step()
        n = trainer.step - step0
        if n == 20 or n % 250 == 0:  # re-estimate the steps left in the phase (the machine is shared)
            per_step_s = (clock.elapsed() - t0) / n
            bc.steps = trainer.step + max(0, int((phase_end_s - clock.elapsed()) / per_step_s))
        if n % bc.log_every == 0 and trainer.log is not None:
            trainer.log.add("train", trainer.step, metrics)
        if tracker.due():
            with clock.paused():
                trainer.evaluate()  # the eval hook above: tracker.evaluate_policy (also keeps the best checkpoint)
    return trainer, demo_path, {**info, "bc_steps": trainer.step}


def run_bc(cfg: Config, seed: int, tracker: EvalSchedule, out: Path) -> dict:
    """System 1: scripted demos + behaviour cloning for the whole budget."""
    tracker.clock.start()
    run_dir = out / f"bc_s{seed}"
    trainer, _, info = _bc_phase(cfg, seed, tracker, tracker.clock.budget_s, run_dir, "bc")
    try:
        if tracker.needs_final():
            with tracker.clock.paused():
                trainer.evaluate()
        trainer.save()
    finally:
        trainer.close()
    return {**info, "run_dir": str(run_dir)}


def run_bc_ppo(cfg: Config, seed: int, tracker: EvalSchedule, out: Path) -> dict:
    """System 2: BC for bc_fraction of the budget, then PPO from that policy for the rest."""
    from robo_hybrid.rl.train import PPOTrainer  # noqa: PLC0415
    from robo_hybrid.training import checkpoint as ckpt  # noqa: PLC0415

    clock, lb = tracker.clock, cfg.bench.learn
    clock.start()
    run_dir = out / f"bc_ppo_s{seed}"
    trainer, demo_path, info = _bc_phase(cfg, seed, tracker, lb.bc_fraction * clock.budget_s, run_dir, "bc")
    try:
        bc_file = ckpt.save_policy(run_dir / "bc_policy.safetensors", trainer.policy)
    finally:
        trainer.close()
    # the bench evaluates (and keeps the clock): no evaluations or budget of PPO's own
    pc = replace(copy.deepcopy(lb.ppo), progress=False, eval_every=0, eval_num_envs=1, time_budget_s=0.0)
    ppo_root = replace(cfg, algo=pc, seed=seed, run_dir=str(run_dir / "ppo"), checkpoint=str(bc_file))
    ppo = PPOTrainer(pc, cfg.task.name, cfg.task.env, ppo_root.run_dir, init_checkpoint=str(bc_file),
                     demos_path=str(demo_path), seed=seed, config_yaml=to_yaml(ppo_root),
                     eval_seed_base=cfg.eval.seed_base)
    try:
        info["ppo_start_s"] = round(clock.elapsed(), 1)  # BC phase + PPO set-up (env workers, critic)
        print(f"[bench learn] {tracker.label:<14} t={clock.elapsed():7.0f} s  PPO from the BC policy "
              f"({info['bc_steps']} BC steps)", flush=True)
        while not clock.expired():
            ppo.iteration()
            if tracker.due():
                tracker.evaluate_policy(ppo.policy, "ppo")
        if tracker.needs_final():
            tracker.evaluate_policy(ppo.policy, "ppo")
        ppo.save()
    finally:
        ppo.close()
    return {**info, "ppo_iterations": ppo.it, "ppo_env_steps": ppo.env_steps, "run_dir": str(run_dir)}


def run_sb3(cfg: Config, seed: int, tracker: EvalSchedule, algo: str) -> dict:
    """Systems 3 and 4: stable-baselines3 PPO / SAC with MultiInputPolicy (CNN + MLP)."""
    from .sb3 import learn_sb3  # noqa: PLC0415

    lb = cfg.bench.learn
    env_cfg = {**asdict(cfg.task.env), "reward": lb.sb3_reward}
    return learn_sb3(algo, cfg.task.name, env_cfg, seed, tracker, vec_env=lb.sb3_vec,
                     kwargs=dict(lb.sb3_ppo if algo == "ppo" else lb.sb3_sac))


def learn_evaluator(cfg: Config) -> Evaluator:
    """The one held-out evaluator every system of the bench is measured with (seeds eval.seed_base + i)."""
    return Evaluator(cfg.task.name, cfg.task.env, cfg.eval.episodes, cfg.eval.seed_base, num_envs=cfg.workers)


def bench_learn(cfg: Config) -> int:
    """Run every system on every seed; print the table and write JSON + PNG (see the module docstring)."""
    lb = cfg.bench.learn
    if any(s.startswith("sb3_") for s in lb.systems):
        from .sb3 import require_sb3  # noqa: PLC0415

        require_sb3()
    old_mask = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    old_threads = torch.get_num_threads()
    if old_mask is not None:  # the same cores for every system; worker processes inherit the mask
        os.sched_setaffinity(0, set(sorted(old_mask)[: lb.cores]))
    try:
        return _run_learn(cfg)
    finally:
        torch.set_num_threads(old_threads)
        if old_mask is not None:
            os.sched_setaffinity(0, old_mask)


def _run_learn(cfg: Config) -> int:
    lb = cfg.bench.learn
    out = Path(cfg.out or f"runs/bench_learn_{cfg.task.name}_{time.strftime('%Y%m%d-%H%M%S')}")
    paths = {"json": lb.json or str(out / "bench_learn.json"), "plot": lb.plot or str(out / "bench_learn.png")}
    every_s = lb.eval_every_s or lb.budget_s / 10
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    threads = lb.torch_threads or len(cores)  # learner threads of BC and SB3 (our PPO: bench.learn.ppo.num_threads)
    print(f"[bench learn] task {cfg.task.name}, systems {','.join(lb.systems)}, seeds {lb.seeds}, budget "
          f"{lb.budget_s:.0f} s each, checkpoints every {every_s:.0f} s, {cfg.eval.episodes} held-out "
          f"episodes (seeds {cfg.eval.seed_base}+i), cpus {cores}, {threads} torch thread(s); writing {out}",
          flush=True)
    runners = {"bc": lambda s, t: run_bc(cfg, s, t, out), "bc_ppo": lambda s, t: run_bc_ppo(cfg, s, t, out),
               "sb3_ppo": lambda s, t: run_sb3(cfg, s, t, "ppo"), "sb3_sac": lambda s, t: run_sb3(cfg, s, t, "sac")}
    curves: dict[str, dict[int, list[dict]]] = {s: {} for s in lb.systems}
    infos: dict[str, dict[int, dict]] = {s: {} for s in lb.systems}
    with learn_evaluator(cfg) as evaluator:
        for seed in lb.seeds:
            for system in lb.systems:
                torch.set_num_threads(threads)  # PPOTrainer sets its own; reset for the next system
                torch.manual_seed(seed)
                tracker = EvalSchedule(WallClock(lb.budget_s), evaluator, every_s, f"{system} s{seed}")
                curves[system][seed] = tracker.points
                t0 = time.perf_counter()
                try:
                    infos[system][seed] = runners[system](seed, tracker)
                finally:
                    infos[system].setdefault(seed, {})["total_wall_s"] = round(time.perf_counter() - t0, 1)
                    _write_outputs(cfg, paths, curves, infos, cores)
    print("runs (times in training seconds):")
    for system, by_seed in infos.items():
        for seed, info in by_seed.items():
            print(f"  {system:<8} s{seed}  " + ", ".join(f"{k}={v}" for k, v in info.items()
                                                         if k not in ("run_dir", "hyperparameters")))
    print(format_curves(curves))
    print(format_learn_table(summarize(curves), lb.budget_s))
    print(f"wrote {paths['json']} and {paths['plot']}")
    return 0


def _write_outputs(cfg: Config, paths: dict, curves: dict, infos: dict, cores: list[int]) -> None:
    """JSON + PNG of everything measured so far (rewritten after every run)."""
    lb = cfg.bench.learn
    rows = summarize(curves)
    doc = {"task": cfg.task.name, "budget_s": lb.budget_s, "eval_every_s": lb.eval_every_s or lb.budget_s / 10,
           "eval_episodes": cfg.eval.episodes, "eval_seed_base": cfg.eval.seed_base, "seeds": lb.seeds,
           "cpus": cores, "torch_threads": lb.torch_threads or len(cores), "bc_fraction": lb.bc_fraction,
           "sb3_reward": lb.sb3_reward, "summary": rows, "winners": winners(rows), "curves": curves, "runs": infos,
           "config": to_yaml(cfg)}
    atomic_write_json(paths["json"], doc)
    plot_curves(curves, paths["plot"], f"{cfg.task.name}: held-out success vs wall-clock "
                                       f"({len(cores)} cpus, budget {lb.budget_s:.0f} s)")
