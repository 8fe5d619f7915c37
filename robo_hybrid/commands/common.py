"""What several training-side commands share: the checkpoint to act on, the held-out evaluator, the final eval."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch  # noqa: F401  (before any MuJoCo GL context exists in this process: triton vs Mesa)

from robo_hybrid.config import Config, ConfigError
from robo_hybrid.envs.common import EnvConfig
from robo_hybrid.evaluation import EvalReport, Evaluator


def task_given(args: list[str]) -> str | None:
    """The task named on the command line (task=<name>), if any."""
    return next((a.split("=", 1)[1] for a in args if a.startswith("task=")), None)


def held_out_evaluator(cfg: Config, episodes: int, env_cfg: EnvConfig | dict | None = None) -> Evaluator:
    """The evaluator of every training-side command: cfg.eval.seed_base + i, cfg.workers env workers."""
    return Evaluator(cfg.task.name, env_cfg if env_cfg is not None else cfg.task.env, episodes, cfg.eval.seed_base,
                     num_envs=cfg.workers, device=cfg.device)


def final_eval(policy, cfg: Config, out_dir: Path, env_cfg: EnvConfig | dict | None = None) -> EvalReport:
    """Held-out evaluation on cfg.eval.episodes seeds with video and JSON report in out_dir; prints one line."""
    with held_out_evaluator(cfg, cfg.eval.episodes, env_cfg) as ev:
        rep = ev(policy, video=out_dir / "eval.mp4" if cfg.eval.videos else None, n_video=cfg.eval.videos,
                 report_path=out_dir / "eval.json", progress=True, action_noise=cfg.eval.action_noise)
    print(f"[eval] {rep.line()}  ({rep.wall_s:.0f} s; report {out_dir / 'eval.json'})")
    return rep


def checkpoint_task(cfg: Config) -> str:
    """The task of cfg.checkpoint; an error naming both when cfg.task is another one."""
    from robo_hybrid.envs import task_name  # noqa: PLC0415
    from robo_hybrid.training.checkpoint import load_policy  # noqa: PLC0415

    task = task_name(load_policy(cfg.checkpoint)[1].task_id)
    if task != cfg.task.name:
        raise ConfigError(f"{cfg.checkpoint} holds a '{task}' policy but task={cfg.task.name}; pass task={task} "
                          "(or a checkpoint of that task)")
    return task


def load_checkpoint(cfg: Config, args: list[str]):
    """(policy, env config) of cfg.checkpoint, checked against the env its own training config describes.

    A residual PPO run's checkpoint is its frozen base with the residual head (what it was evaluated as); a task= on
    the command line that differs from the checkpoint's task is an error, never silently ignored.
    """
    from omegaconf import OmegaConf  # noqa: PLC0415

    from robo_hybrid.envs import make_env, task_name  # noqa: PLC0415
    from robo_hybrid.training.checkpoint import load_policy  # noqa: PLC0415

    if not cfg.checkpoint:
        raise ConfigError("checkpoint=<run dir, checkpoint dir or .safetensors file> is required")
    policy, spec, run_cfg = load_policy(cfg.checkpoint)
    task = task_name(spec.task_id)
    given = task_given(args)
    if given is not None and task_name(given) != task:
        raise ConfigError(f"task={given} but {cfg.checkpoint} holds a '{task}' policy; drop task= or pass a "
                          f"checkpoint of {given}")
    env_cfg = cfg.task.env
    if run_cfg is not None and "task" in run_cfg:  # the env the policy was trained on
        env_cfg = EnvConfig(**OmegaConf.to_container(run_cfg.task.env, resolve=True))  # type: ignore[arg-type]
    env = make_env(task, cfg=EnvConfig(**{**asdict(env_cfg), "render": False}))
    try:
        policy.spec.require_compatible(env.unwrapped.io_spec, what="env")
    finally:
        env.close()
    cfg.task.name = task
    from robo_hybrid.rl.residual import load_residual  # noqa: PLC0415

    return load_residual(cfg.checkpoint, policy), env_cfg
