"""Training-side commands of the CLI: train, eval, export, deploy and the main job `run`."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch  # noqa: F401  (before any MuJoCo GL context exists in this process: triton vs Mesa)

import robo_hybrid.policy  # noqa: F401  (same reason: the policy package loads more of torch)
from robo_hybrid.cli import load_config
from robo_hybrid.config import Config


def _eval_fn(cfg: Config, episodes: int):
    """Evaluation hook for training: success rate on held-out seeds."""
    from robo_hybrid.evaluate import evaluate  # noqa: PLC0415

    def run(policy, step: int) -> dict[str, float]:
        r = evaluate(policy, cfg.task.name, asdict(cfg.task.env), episodes=episodes, workers=cfg.workers,
                     seed_base=cfg.eval.seed_base, progress=False)
        return {"success_rate": r.success_rate, "mean_return": r.mean_return, "mean_length": r.mean_length}

    return run


def final_eval(policy, cfg: Config, out_dir: Path, env_cfg: dict | None = None):
    """Held-out evaluation with video and JSON report in out_dir; prints one line."""
    from robo_hybrid.evaluate import evaluate  # noqa: PLC0415

    rep = evaluate(policy, cfg.task.name, env_cfg if env_cfg is not None else asdict(cfg.task.env),
                   episodes=cfg.eval.episodes, workers=cfg.workers, seed_base=cfg.eval.seed_base,
                   video=str(out_dir / "eval.mp4") if cfg.eval.videos else None, n_video=cfg.eval.videos,
                   report_path=str(out_dir / "eval.json"))
    print(f"[eval] {rep.line()}  ({rep.wall_s:.0f} s; report {out_dir / 'eval.json'})")
    return rep


def train(cfg: Config):
    """Run the configured algorithm; returns (policy, run_dir)."""
    if cfg.algo.name == "bc":
        from robo_hybrid.training.bc import train_bc  # noqa: PLC0415

        if not Path(cfg.data).exists():
            raise FileNotFoundError(f"demo file {cfg.data} does not exist; run `robo-hybrid collect task="
                                    f"{cfg.task.name} out={cfg.data}` first (or pass data=<file>)")
        hook = _eval_fn(cfg, cfg.algo.eval_episodes) if cfg.algo.eval_every > 0 else None
        res = train_bc(cfg, eval_fn=hook)
        print(f"[train] bc: {res.step} steps, final loss {res.train.get('loss', float('nan')):.4f}; "
              f"{res.summary['params']:,} params, {res.summary['mflops_per_step']} MFLOP/step; run dir {res.run_dir}")
        return res.policy, Path(res.run_dir)
    if cfg.algo.name == "ppo":
        from robo_hybrid.rl.train import train_ppo  # noqa: PLC0415

        res = train_ppo(cfg)
        return res.policy, Path(res.run_dir)
    raise ValueError(f"algo={cfg.algo.name!r}: choose bc or ppo")


def cmd_train(args: list[str]) -> int:
    """`robo-hybrid train algo=bc task=push data=...`: train, then evaluate on held-out seeds."""
    from robo_hybrid.training.distributed import launched_rank  # noqa: PLC0415

    cfg = load_config(args)
    policy, run_dir = train(cfg)
    if launched_rank() == 0:  # under torchrun the other ranks only train
        final_eval(policy, cfg, run_dir)
    return 0


def _load(cfg: Config):
    """Policy of cfg.checkpoint, checked against the env its own training config describes."""
    from robo_hybrid.envs import make_env, task_name  # noqa: PLC0415
    from robo_hybrid.training.checkpoint import load_policy  # noqa: PLC0415

    if not cfg.checkpoint:
        raise ValueError("checkpoint=<run dir, checkpoint dir or .safetensors file> is required")
    policy, spec, run_cfg = load_policy(cfg.checkpoint)
    task = task_name(spec.task_id)
    env_cfg: dict = asdict(cfg.task.env)
    if run_cfg is not None and "task" in run_cfg:  # the env the policy was trained on
        from omegaconf import OmegaConf  # noqa: PLC0415

        env_cfg = dict(OmegaConf.to_container(run_cfg.task.env, resolve=True))  # type: ignore[arg-type]
    env = make_env(task, render=False, **{k: v for k, v in env_cfg.items() if k != "render"})
    try:
        policy.spec.require_compatible(env.unwrapped.io_spec, what="env")
    finally:
        env.close()
    cfg.task.name = task
    return policy, env_cfg


def cmd_eval(args: list[str]) -> int:
    """`robo-hybrid eval checkpoint=...`: success with a 95% Wilson interval, mp4 and JSON report."""
    cfg = load_config(args)
    policy, env_cfg = _load(cfg)
    out = Path(cfg.out or Path(cfg.checkpoint if Path(cfg.checkpoint).is_dir() else Path(cfg.checkpoint).parent))
    out.mkdir(parents=True, exist_ok=True)
    final_eval(policy, cfg, out, env_cfg)
    return 0


def parity_observations(cfg: Config, policy, n: int = 64) -> dict:
    """Recorded observations for the parity check: from the demo file when it matches, else expert rollouts."""
    from robo_hybrid.envs.demos import Demos, load_demos, rollout_expert  # noqa: PLC0415
    from robo_hybrid.export import recorded_obs  # noqa: PLC0415

    keys, k = policy.spec.policy_keys, policy.cfg.history
    if Path(cfg.data).exists():
        demos = load_demos(cfg.data)
        if not demos.spec.mismatches(policy.spec):
            return recorded_obs(demos, keys, n, k)
    from robo_hybrid.envs import make_env, make_expert, task_name  # noqa: PLC0415

    env = make_env(task_name(policy.spec.task_id), image_size=policy.image_size)
    try:
        eps = [rollout_expert(env, make_expert(env), seed) for seed in range(2)]
    finally:
        env.close()
    return recorded_obs(Demos(policy.spec, {}, "", eps), keys, n, k)


def export(cfg: Config, policy, out: Path) -> dict:
    """Export + parity (+ int8); returns a dict of what was written and measured."""
    from robo_hybrid.export import export_onnx, ort_latency_ms, ort_session, quantize_int8  # noqa: PLC0415

    obs = parity_observations(cfg, policy)
    rep = export_onnx(policy, out, parity_obs=obs, train_config=asdict(cfg))
    print(f"[export] {rep.path}: inputs {rep.inputs} -> {rep.outputs}, opset {rep.opset}, "
          f"{rep.size_bytes / 1e3:.0f} kB; parity max |torch - onnxruntime| = {rep.parity_max_abs_diff:.2e} "
          f"on {rep.parity_samples} recorded obs")
    result = asdict(rep)
    if cfg.export.int8:
        q = quantize_int8(out, out.with_name(out.stem + ".int8.onnx"))
        import numpy as np  # noqa: PLC0415

        a = np.asarray(ort_session(out).run(None, obs)[0])
        b = np.asarray(ort_session(q).run(None, obs)[0])
        one = {k: v[:1] for k, v in obs.items()}
        fp32, int8 = ort_latency_ms(out, one), ort_latency_ms(q, one)
        result["int8"] = {"path": q, "max_abs_diff_vs_fp32": float(np.max(np.abs(a - b))),
                          "p50_ms_fp32": fp32[0], "p50_ms_int8": int8[0], "speedup_p50": fp32[0] / int8[0]}
        print(f"[export] int8 {q}: max |fp32 - int8| = {result['int8']['max_abs_diff_vs_fp32']:.3f}, "
              f"p50 {fp32[0]:.3f} -> {int8[0]:.3f} ms ({fp32[0] / int8[0]:.2f}x)")
    return result


def cmd_export(args: list[str]) -> int:
    """`robo-hybrid export checkpoint=... out=policy.onnx [export.int8=true]`."""
    cfg = load_config(args)
    policy, _ = _load(cfg)
    export(cfg, policy, Path(cfg.out or "policy.onnx"))
    return 0


def deploy(cfg: Config, model: str, seed: int | None = None) -> dict:
    """Run the torch-free controller loop (robo_hybrid.deploy) on cfg.robot."""
    from robo_hybrid.deploy import run_deploy  # noqa: PLC0415

    d = cfg.deploy
    return run_deploy(model, robot=cfg.robot, episodes=d.episodes, rate_hz=d.rate_hz, seed=seed if seed is not None
                      else d.seed, log_dir=d.log_dir or None, max_steps=d.max_steps, safety=d.safety,
                      estop_file=d.estop_file or None, temporal_ensemble_m=d.temporal_ensemble_m)


def cmd_deploy(args: list[str]) -> int:
    """`robo-hybrid deploy model=policy.onnx robot=sim|sim_server|mock`."""
    cfg = load_config(args)
    if not cfg.model:
        raise ValueError("model=<policy.onnx> is required (make one with `robo-hybrid export`)")
    deploy(cfg, cfg.model)
    return 0


def cmd_run(args: list[str]) -> int:
    """Main job: collect demos -> BC -> held-out eval -> ONNX export -> controller loop on the sim robot server."""
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
    dep = deploy(cfg, str(onnx_path), seed=cfg.eval.seed_base)
    summary = {"torch_eval": asdict(ev), "deploy": {k: v for k, v in dep.items() if k != "episodes"},
               "wall_s": time.perf_counter() - t0}
    Path(run_dir / "run_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"[run] success: torch eval {ev.success_rate:.1%} (n={ev.episodes}), controller loop on {cfg.robot} "
          f"{dep.get('success_rate', float('nan')):.1%} (n={dep.get('n_episodes', cfg.deploy.episodes)}); "
          f"total {summary['wall_s'] / 60:.1f} min; summary {run_dir / 'run_summary.json'}")
    return 0
