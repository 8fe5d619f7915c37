"""Ablation runner: the same budget for every variant, one markdown table of held-out success.

    python -m robo_hybrid.rl.ablation task=pickplace checkpoint=runs/pickplace_bc_default_s0 \
        data=data/pickplace_demos.hdf5 algo.time_budget_s=1800 \
        ablation.variants=bc_only,scratch,bc_ppo,dense,learned,no_kl,no_warmup ablation.episodes=100

Every PPO variant gets the base overrides plus its own, runs in <out>/<variant>, and its final policy is
evaluated on the same held-out seeds (algo.eval_seed_offset + i) as the BC checkpoint.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from .train import train_ppo  # torch (and triton) before any GL context of a sync vector env

log = logging.getLogger(__name__)

# variant -> (description, extra Hydra overrides); 'bc_only' trains nothing
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "bc_only": ("BC only (no RL)", []),
    "scratch": ("PPO from scratch", ["checkpoint=", "algo.bc_reg=none", "algo.critic_warmup_iters=0"]),
    "bc_ppo": ("BC + PPO (sparse, KL reg, critic warm-up)", []),
    "dense": ("BC + PPO, dense reward terms", ["algo.reward=dense"]),
    "learned": ("BC + PPO, learned shaping", ["algo.reward=learned"]),
    "no_kl": ("BC + PPO without KL regularizer", ["algo.bc_reg=none"]),
    "no_warmup": ("BC + PPO without critic warm-up", ["algo.critic_warmup_iters=0"]),
    "no_kl_no_warmup": ("BC + PPO without KL reg and warm-up", ["algo.bc_reg=none", "algo.critic_warmup_iters=0"]),
    "bc_nll": ("BC + PPO, BC-NLL regularizer on demos", ["algo.bc_reg=bc_nll"]),
    "rnd": ("BC + PPO + RND bonus", ["algo.rnd.coef=0.1"]),
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


def _final_eval(policy, cfg, episodes: int) -> tuple[float, tuple[float, float]]:
    """Held-out success of a policy on `episodes` seeds, with the run's env settings."""
    from dataclasses import replace  # noqa: PLC0415

    from .evaluate import evaluate_policy  # noqa: PLC0415
    from .rollout import make_vector_env  # noqa: PLC0415

    algo = cfg.algo
    env_cfg = replace(cfg.task.env, reward="dense" if algo.reward == "dense" else "sparse")
    envs = make_vector_env(cfg.task.name, env_cfg, algo.eval_num_envs or algo.num_envs, algo.vector_env,
                           algo.start_method, autoreset="disabled")
    try:
        res = evaluate_policy(policy, envs, episodes, algo.eval_seed_offset)
    finally:
        envs.close()
    return res.success_rate, (res.ci95_low, res.ci95_high)


def run_variant(name: str, base: list[str], out_dir: Path, episodes: int) -> AblationRow:
    """Train (or, for bc_only, just load) one variant and evaluate its final policy."""
    from robo_hybrid.config import compose_config, to_dataclass  # noqa: PLC0415
    from robo_hybrid.training import checkpoint as ckpt  # noqa: PLC0415

    from .config import register  # noqa: PLC0415

    desc, extra = VARIANTS[name]
    register()
    run_dir = out_dir / name
    cfg = to_dataclass(compose_config(["algo=ppo", *base, *extra, f"run_dir={run_dir}"]))
    row = AblationRow(name, desc, run_dir=str(run_dir))
    if name == "bc_only":
        if not cfg.checkpoint:
            raise ValueError("the bc_only row needs checkpoint=<BC run>")
        policy = ckpt.load_policy(cfg.checkpoint)[0]
        row.final_success, row.ci95 = _final_eval(policy, cfg, episodes)
        row.start_success = row.best_success = row.min_success = row.final_success
        return row
    t0 = time.perf_counter()
    res = train_ppo(cfg)
    row.iterations, row.env_steps, row.wall_s = res.iterations, res.env_steps, res.wall_s
    row.extra["total_wall_s"] = time.perf_counter() - t0  # + worker start-up, evaluations, checkpoints
    row.start_success = res.initial_eval.get("success_rate", float("nan"))
    row.best_success, row.min_success = res.best_eval["success_rate"], res.min_success
    row.final_success, row.ci95 = _final_eval(res.policy, cfg, episodes)
    return row


def markdown_table(rows: list[AblationRow], episodes: int, base: list[str]) -> str:
    """The README table: one row per variant."""
    lines = [
        f"Held-out success on {episodes} seeds (1_000_000 + i), deterministic actions; base overrides: "
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


def write_outputs(rows: list[AblationRow], out: Path, episodes: int, base: list[str]) -> None:
    """ablation.md, ablation.json and ablation_curves.png (success against wall-clock of every trained variant)."""
    from robo_hybrid.training import checkpoint as ckpt  # noqa: PLC0415

    from .plots import plot_ablation  # noqa: PLC0415

    ckpt.atomic_write_text(out / "ablation.md", markdown_table(rows, episodes, base))
    ckpt.atomic_write_text(out / "ablation.json", json.dumps([r.__dict__ for r in rows], indent=2, default=str))
    curves = {r.description: eval_curve(r.run_dir) for r in rows if r.iterations > 0}
    if curves:
        plot_ablation(curves, out / "ablation_curves.png", title="PPO ablation: held-out success (20-episode evals)")


def run_ablations(base_overrides: list[str], variants: list[str] | tuple[str, ...] = DEFAULT_VARIANTS,
                  out_dir: str | Path = "runs/ablation", episodes: int = 100) -> Path:
    """Run the variants one after the other; write <out_dir>/ablation.md, .json and _curves.png after every row."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown ablation variants {unknown}; choose from {sorted(VARIANTS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[AblationRow] = []
    for name in variants:
        log.info("ablation: %s", name)
        rows.append(run_variant(name, list(base_overrides), out, episodes))
        write_outputs(rows, out, episodes, list(base_overrides))
    return out / "ablation.md"


def main(argv: list[str] | None = None) -> int:
    """CLI: Hydra overrides for every run + ablation.variants=a,b ablation.out=DIR ablation.episodes=N."""
    import sys  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    opts = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if a.startswith("ablation.")}
    base = [a for a in args if not a.startswith("ablation.") and not a.startswith("algo=")]
    variants = opts.get("ablation.variants", ",".join(DEFAULT_VARIANTS)).split(",")
    path = run_ablations(base, variants, opts.get("ablation.out", "runs/ablation"),
                         int(opts.get("ablation.episodes", 100)))
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
