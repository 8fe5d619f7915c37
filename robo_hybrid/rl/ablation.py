"""Ablation variants and their table (the runner is `robo-hybrid ablate`, robo_hybrid/commands/ablate.py).

    robo-hybrid ablate task=pickplace checkpoint=runs/pickplace_bc_default_s0 data=data/pickplace_demos.hdf5 \
        algo.time_budget_s=1800 ablation.variants=[bc_only,scratch,bc_ppo,dense,learned,no_kl,no_warmup]

Every PPO variant gets the base overrides plus its own, runs in <out>/<variant>, and its final policy is
evaluated on the same held-out seeds (eval.seed_base + i) as the BC checkpoint. Torch-free.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from robo_hybrid.fileio import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

# variant -> (description, extra Hydra overrides); 'bc_only' trains nothing. The default PPO configuration is
# residual fine-tuning (frozen BC base + bounded residual), sparse reward, KL to the base, critic on state (no images).
FULL = ["algo.finetune=full", "algo.bc_reg=kl", "algo.critic.use_images=true"]  # fine-tuning as it was before
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "bc_only": ("BC only (no RL)", []),
    "scratch": ("PPO from scratch", ["checkpoint=", "algo.bc_reg=none", "algo.critic_warmup_iters=0"]),
    "residual": ("BC + residual PPO (default: frozen base, state critic)", []),
    "full": ("BC + full PPO (KL reg, image critic)", FULL),
    "bc_ppo": ("BC + full PPO (KL reg, image critic)", FULL),  # the earlier name of 'full'
    "partial": ("BC + partial PPO (last block + heads, KL reg)", ["algo.finetune=partial", "algo.bc_reg=kl"]),
    "image_critic": ("BC + residual PPO, critic on images too", ["algo.critic.use_images=true"]),
    "mlp_critic": ("BC + residual PPO, MLP critic", ["algo.critic.arch=mlp"]),
    "dense": ("BC + residual PPO, dense reward terms", ["algo.reward=dense"]),
    "learned": ("BC + residual PPO, learned shaping", ["algo.reward=learned"]),
    "residual_no_kl": ("BC + residual PPO without the KL to BC", ["algo.bc_reg=none"]),
    "rnd": ("BC + residual PPO + RND bonus", ["algo.rnd.coef=0.1"]),
    "no_kl": ("BC + full PPO without KL regularizer", [*FULL[:1], "algo.bc_reg=none", "algo.critic.use_images=true"]),
    "no_warmup": ("BC + residual PPO without critic warm-up", ["algo.critic_warmup_iters=0"]),
    "no_kl_no_warmup": ("BC + full PPO without KL reg and warm-up",
                        [*FULL[:1], "algo.bc_reg=none", "algo.critic.use_images=true", "algo.critic_warmup_iters=0"]),
    "bc_nll": ("BC + full PPO, BC-NLL regularizer on demos", [*FULL[:1], "algo.bc_reg=bc_nll"]),
}
DEFAULT_VARIANTS = ("bc_only", "scratch", "bc_ppo", "dense", "learned", "no_kl", "no_warmup")


@dataclass
class AblationRow:
    """One line of the table."""

    variant: str
    description: str
    iterations: int = 0
    env_steps: int = 0
    wall_s: float = 0.0
    start_success: float = float("nan")
    final_success: float = float("nan")
    ci95: tuple[float, float] = (float("nan"), float("nan"))
    best_success: float = float("nan")
    min_success: float = float("nan")
    run_dir: str = ""
    extra: dict = field(default_factory=dict)


def markdown_table(rows: list[AblationRow], episodes: int, base: list[str], seed_base: int) -> str:
    """The README table: one row per variant."""
    lines = [
        f"Held-out success on {episodes} seeds ({seed_base} + i), deterministic actions; base overrides: "
        f"`{' '.join(base)}`. 'start' / 'best' / 'min' come from the periodic evaluations during the run.",
        "",
        "| variant | iterations | env steps | train wall (s) | start | final [95% CI] | best | min |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ci = f"[{r.ci95[0]:.0%}, {r.ci95[1]:.0%}]"
        lines.append(f"| {r.description} | {r.iterations} | {r.env_steps} | {r.wall_s:.0f} | {r.start_success:.0%} | "
                     f"{r.final_success:.0%} {ci} | {r.best_success:.0%} | {r.min_success:.0%} |")
    return "\n".join(lines) + "\n"


def eval_curve(run_dir: str | Path) -> list[tuple[float, float]]:
    """(training wall-clock s, held-out success) of the periodic evaluations in a run's metrics.jsonl."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(float(r.get("wall_s", 0.0)), float(r["success_rate"])) for r in recs
            if r.get("kind") == "eval" and "success_rate" in r]


def done_rows(out: Path) -> dict[str, AblationRow]:
    """Rows an earlier (interrupted) run of the ablation already finished, by variant (ablation.json)."""
    path = out / "ablation.json"
    if not path.is_file():
        return {}
    rows = {}
    for r in json.loads(path.read_text()):
        r["ci95"] = tuple(r["ci95"])
        rows[r["variant"]] = AblationRow(**r)
    return rows


def write_outputs(rows: list[AblationRow], out: Path, episodes: int, base: list[str], seed_base: int) -> None:
    """ablation.md, ablation.json and ablation_curves.png (success against wall-clock of every trained variant)."""
    from .plots import plot_ablation  # noqa: PLC0415

    atomic_write_text(out / "ablation.md", markdown_table(rows, episodes, base, seed_base))
    atomic_write_json(out / "ablation.json", [r.__dict__ for r in rows])
    curves = {r.description: eval_curve(r.run_dir) for r in rows if r.iterations > 0}
    if curves:
        plot_ablation(curves, out / "ablation_curves.png", title="PPO ablation: held-out success (20-episode evals)")
