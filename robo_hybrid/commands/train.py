"""`robo-hybrid train algo=bc data=... | algo=ppo checkpoint=...`: train, then evaluate on held-out seeds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from omegaconf import DictConfig

from robo_hybrid.config import BCConfig, Config, ConfigError, load_config, to_dataclass, to_yaml
from robo_hybrid.rl.config import PPOConfig

from .common import checkpoint_task, final_eval, held_out_evaluator


def bc_eval_hook(cfg: Config):
    """Evaluation hook of BC training: algo.eval_episodes held-out episodes (seeds eval.seed_base + i) per call.

    Returns (hook, evaluator); the caller closes the evaluator (its env workers live across calls).
    """
    evaluator = held_out_evaluator(cfg, cfg.algo.eval_episodes)
    return (lambda policy, step: evaluator(policy).metrics()), evaluator


def train_bc(cfg: Config | DictConfig, eval_fn=None, demos=None):
    """Behaviour cloning from the root config: the one place it becomes BCTrainer's own arguments."""
    from robo_hybrid.training.bc import BCTrainer  # noqa: PLC0415

    cfg = to_dataclass(cfg)
    if not isinstance(cfg.algo, BCConfig):
        raise ConfigError("train_bc needs algo=bc")
    if demos is None and not Path(cfg.data).exists():
        raise ConfigError(f"demo file {cfg.data} does not exist; run `robo-hybrid collect task={cfg.task.name} "
                          f"out={cfg.data}` first (or pass data=<file>)")
    trainer = BCTrainer(cfg.algo, cfg.policy, cfg.task.name, cfg.task.env, cfg.run_dir, data=cfg.data, demos=demos,
                        seed=cfg.seed, resume=cfg.resume, device=cfg.device, eval_fn=eval_fn,
                        config_yaml=lambda policy_cfg: to_yaml(replace(cfg, policy=policy_cfg)))
    try:
        return trainer.run()
    finally:
        trainer.close()


def ppo_trainer(cfg: Config | DictConfig):
    """PPOTrainer from the root config (algo=ppo): the one place it becomes the trainer's own arguments."""
    from robo_hybrid.rl.train import PPOTrainer  # noqa: PLC0415

    cfg = to_dataclass(cfg)
    if not isinstance(cfg.algo, PPOConfig):
        raise ConfigError("train_ppo needs algo=ppo")
    algo = cfg.algo if cfg.algo.device != "cpu" or cfg.device == "cpu" else replace(cfg.algo, device=cfg.device)
    return PPOTrainer(algo, cfg.task.name, cfg.task.env, cfg.run_dir, policy_cfg=cfg.policy,
                      init_checkpoint=cfg.checkpoint, demos_path=cfg.data, seed=cfg.seed, resume=cfg.resume,
                      config_yaml=to_yaml(cfg), eval_seed_base=cfg.eval.seed_base)


def train_ppo(cfg: Config | DictConfig):
    """PPO from the root config (algo=ppo): build the trainer, train to the budget."""
    return ppo_trainer(cfg).run()


def train(cfg: Config):
    """Run the configured algorithm; returns (policy, run_dir)."""
    if isinstance(cfg.algo, BCConfig):
        hook, evaluator = bc_eval_hook(cfg) if cfg.algo.eval_every > 0 else (None, None)
        try:
            res = train_bc(cfg, eval_fn=hook)
        finally:
            if evaluator is not None:
                evaluator.close()
        print(f"[train] bc: {res.step} steps, final loss {res.train.get('loss', float('nan')):.4f}; "
              f"{res.summary['params']:,} params, {res.summary['mflops_per_step']} MFLOP/step; run dir {res.run_dir}")
        return res.policy, Path(res.run_dir)
    res = train_ppo(cfg)
    if res.final_eval:  # rank 0 (under torchrun the others only train)
        print(f"[train] ppo: {res.iterations} iterations, {res.env_steps} env steps, {res.wall_s:.0f} s: held-out "
              f"success {res.initial_eval.get('success_rate', float('nan')):.1%} -> "
              f"{res.final_eval.get('success_rate', float('nan')):.1%} (best {res.best_eval['success_rate']:.1%}, "
              f"min {res.min_success:.1%}); checkpoint {res.checkpoint_dir}")
    return res.policy, Path(res.run_dir)


def main(args: list[str]) -> int:
    """Train, then evaluate on cfg.eval.episodes held-out seeds (rank 0 only under torchrun)."""
    from robo_hybrid.training.distributed import launched_rank  # noqa: PLC0415

    cfg = load_config(args)
    if isinstance(cfg.algo, PPOConfig) and cfg.checkpoint:
        checkpoint_task(cfg)  # PPO trains cfg.task: it must be the checkpoint's
    policy, run_dir = train(cfg)
    if launched_rank() == 0:
        final_eval(policy, cfg, run_dir)
    return 0
