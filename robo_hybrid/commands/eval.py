"""`robo-hybrid eval checkpoint=...`: success with a 95% Wilson interval on held-out seeds, mp4 and JSON report."""

from __future__ import annotations

from pathlib import Path

from robo_hybrid.config import load_config

from .common import final_eval, load_checkpoint


def main(args: list[str]) -> int:
    """Evaluate cfg.checkpoint on cfg.eval.episodes seeds eval.seed_base + i; report beside it (or in out=)."""
    cfg = load_config(args)
    policy, env_cfg = load_checkpoint(cfg, args)
    ckpt = Path(cfg.checkpoint)
    out = Path(cfg.out) if cfg.out else (ckpt if ckpt.is_dir() else ckpt.parent)
    out.mkdir(parents=True, exist_ok=True)
    final_eval(policy, cfg, out, env_cfg)
    return 0
