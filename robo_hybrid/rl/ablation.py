"""Ablation variants and their table (the runner is `robo-hybrid ablate`, robo_hybrid/commands/ablate.py).

    robo-hybrid ablate task=pickplace checkpoint=runs/pickplace_bc_default_s0 data=data/pickplace_demos.hdf5 \
        algo.time_budget_s=600 ablation.seeds=[0,1]

Every PPO variant gets the base overrides plus its own, runs once per training seed in <out>/<variant>_s<seed>,
and its final policy is evaluated on the same held-out seeds (eval.seed_base + i) as the BC checkpoint. The
table pools a variant's seeds into one line. Torch-free.
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
# 2048-step batches (8 envs x 256 steps), no KL, a low exploration std: the setting the Stack runs build on
BIG_BATCH = ["algo.num_steps=256", "algo.bc_reg=none", "algo.residual.init_std=0.03", "algo.std_min=0.02"]
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
    "replay": ("BC + residual PPO, failure replay 0.5", ["algo.failure_replay=0.5"]),
    "low_std": ("BC + residual PPO, exploration std 0.03, KL mean term only",
                ["algo.bc_reg=kl_mean", "algo.residual.init_std=0.03", "algo.std_min=0.02"]),
    "big_batch": ("BC + residual PPO, 2048-step batches, std 0.03, no KL", BIG_BATCH),
    "big_batch_state": ("BC + residual PPO, 2048-step batches, std 0.03, no KL, proprio + goal into the residual",
                        [*BIG_BATCH, "algo.residual.state_inputs=true"]),
    "time_critic": ("BC + residual PPO, 2048-step batches, std 0.03, no KL, state inputs, critic reads the time",
                    [*BIG_BATCH, "algo.residual.state_inputs=true", "algo.critic.time_input=true"]),
    "replay_no_kl": ("BC + residual PPO, failure replay 0.5, no KL", ["algo.failure_replay=0.5", "algo.bc_reg=none"]),
    "no_kl": ("BC + full PPO without KL regularizer", [*FULL[:1], "algo.bc_reg=none", "algo.critic.use_images=true"]),
    "no_warmup": ("BC + residual PPO without critic warm-up", ["algo.critic_warmup_iters=0"]),
    "no_kl_no_warmup": ("BC + full PPO without KL reg and warm-up",
                        [*FULL[:1], "algo.bc_reg=none", "algo.critic.use_images=true", "algo.critic_warmup_iters=0"]),
    "bc_nll": ("BC + full PPO, BC-NLL regularizer on demos", [*FULL[:1], "algo.bc_reg=bc_nll"]),
}


@dataclass
class AblationRow:
    """One training run of the table: a variant under one training seed."""

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
    seed: int = 0
    episodes: int = 0
    """Held-out episodes of the final evaluation (0: a row of a table written before this field)."""


def row_key(variant: str, seed: int) -> str:
    """Key of one run in ablation.json's rows: a variant under one training seed."""
    return f"{variant}@s{seed}"


def _pct(x: float) -> str:
    return "-" if x != x else f"{x:.0%}"


def markdown_table(rows: list[AblationRow], episodes: int, base: list[str], seed_base: int) -> str:
    """The README table: one line per variant, its training seeds pooled.

    'final' is the mean over seeds of each run's held-out success (every run on the same seeds seed_base + i), the
    per-seed figures in parentheses after it, and the Wilson interval of all the runs' episodes together;
    iterations, env steps and wall-clock are means; 'min' is the lowest periodic evaluation of any seed.
    """
    from robo_hybrid.stats import wilson_interval  # noqa: PLC0415

    lines = [
        f"Held-out success on {episodes} seeds ({seed_base} + i) per run, deterministic actions; base overrides: "
        f"`{' '.join(base)}`. 'start' / 'best' / 'min' come from the periodic evaluations during the runs.",
        "",
        "| variant | seeds | iterations | env steps | train wall (s) | start | final: mean (per seed) "
        "| 95% CI (pooled) | best | min |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_variant: dict[str, list[AblationRow]] = {}
    for r in rows:
        by_variant.setdefault(r.variant, []).append(r)
    for runs in by_variant.values():
        n = [r.episodes or episodes for r in runs]
        wins = sum(round(r.final_success * k) for r, k in zip(runs, n, strict=True))
        lo, hi = wilson_interval(wins, sum(n))
        mean = sum(r.final_success for r in runs) / len(runs)
        per_seed = " (" + " / ".join(f"{r.final_success:.1%}" for r in runs) + ")" if len(runs) > 1 else ""
        seeds = "-" if runs[0].iterations == 0 else ", ".join(str(r.seed) for r in runs)

        def avg(attr: str, rs: list[AblationRow] = runs) -> float:
            return sum(getattr(r, attr) for r in rs) / len(rs)

        lines.append(f"| {runs[0].description} | {seeds} | {avg('iterations'):.0f} | {avg('env_steps'):.0f} | "
                     f"{avg('wall_s'):.0f} | {_pct(avg('start_success'))} | {mean:.1%}{per_seed} | "
                     f"[{lo:.1%}, {hi:.1%}] | {_pct(max(r.best_success for r in runs))} | "
                     f"{_pct(min(r.min_success for r in runs))} |")
    return "\n".join(lines) + "\n"


def eval_curve(run_dir: str | Path) -> list[tuple[float, float]]:
    """(training wall-clock s, held-out success) of the periodic evaluations in a run's metrics.jsonl."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(float(r.get("wall_s", 0.0)), float(r["success_rate"])) for r in recs
            if r.get("kind") == "eval" and "success_rate" in r]


def mean_curve(curves: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """Seeds' curves averaged point by point (their evaluations fall on the same iterations), as long as the
    shortest."""
    curves = [c for c in curves if c]
    if not curves:
        return []
    n = min(len(c) for c in curves)
    return [(sum(c[i][0] for c in curves) / len(curves), sum(c[i][1] for c in curves) / len(curves))
            for i in range(n)]


def done_rows(out: Path) -> dict[str, AblationRow]:
    """Runs an earlier (interrupted) run of the ablation already finished, by row_key(variant, seed)."""
    path = out / "ablation.json"
    if not path.is_file():
        return {}
    rows = {}
    for r in json.loads(path.read_text()):
        r["ci95"] = tuple(r["ci95"])
        row = AblationRow(**r)
        rows[row_key(row.variant, row.seed)] = row
    return rows


def write_outputs(rows: list[AblationRow], out: Path, episodes: int, base: list[str], seed_base: int) -> None:
    """ablation.md, ablation.json and ablation_curves.png (success against wall-clock of every trained variant,
    averaged over its seeds)."""
    from .plots import plot_ablation  # noqa: PLC0415

    atomic_write_text(out / "ablation.md", markdown_table(rows, episodes, base, seed_base))
    atomic_write_json(out / "ablation.json", [r.__dict__ for r in rows])
    by_desc: dict[str, list[list[tuple[float, float]]]] = {}
    for r in rows:
        if r.iterations > 0:
            by_desc.setdefault(r.description, []).append(eval_curve(r.run_dir))
    curves = {f"{d} ({len(c)} seed{'s' if len(c) > 1 else ''})": mean_curve(c) for d, c in by_desc.items()}
    if curves:
        plot_ablation(curves, out / "ablation_curves.png",
                      title="PPO ablation: held-out success (periodic evals, mean over seeds)")
