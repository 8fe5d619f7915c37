"""`robo-hybrid ablate checkpoint=<BC run> data=<demos> algo.time_budget_s=600 ablation.variants=[...]`.

Every PPO variant gets the command line's overrides plus its own (robo_hybrid/rl/ablation.py VARIANTS), runs in
<ablation.out>/<variant>, and its final policy is evaluated on the same held-out seeds (eval.seed_base + i) as
the BC checkpoint. The table, JSON and curve PNG are rewritten after every row.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch  # noqa: F401  (before any GL context of a sync vector env)

from robo_hybrid.config import Config, load_config
from robo_hybrid.rl.ablation import VARIANTS, AblationRow, done_rows, write_outputs

from .common import held_out_evaluator
from .train import train_ppo

log = logging.getLogger(__name__)


def _final_eval(policy, cfg: Config) -> tuple[float, tuple[float, float]]:
    """Held-out success of a policy on ablation.episodes seeds eval.seed_base + i."""
    with held_out_evaluator(cfg, cfg.ablation.episodes) as ev:
        rep = ev(policy)
    return rep.success_rate, (rep.ci95_low, rep.ci95_high)


def run_variant(name: str, base: list[str], out_dir: Path) -> AblationRow:
    """Train (or, for bc_only, just load) one variant and evaluate its final policy."""
    from robo_hybrid.training import checkpoint as ckpt  # noqa: PLC0415

    desc, extra = VARIANTS[name]
    run_dir = out_dir / name
    # a variant killed mid-run continues from its last checkpoint (and the rest of its time budget)
    resume = ["resume=true"] if ckpt.find_checkpoint(run_dir / "checkpoints") is not None else []
    cfg = load_config(["algo=ppo", *base, *extra, f"run_dir={run_dir}", *resume])
    row = AblationRow(name, desc, run_dir=str(run_dir))
    if name == "bc_only":
        if not cfg.checkpoint:
            raise ValueError("the bc_only row needs checkpoint=<BC run>")
        policy = ckpt.load_policy(cfg.checkpoint)[0]
        row.final_success, row.ci95 = _final_eval(policy, cfg)
        row.start_success = row.best_success = row.min_success = row.final_success
        return row
    t0 = time.perf_counter()
    res = train_ppo(cfg)
    row.iterations, row.env_steps, row.wall_s = res.iterations, res.env_steps, res.wall_s
    row.extra["total_wall_s"] = time.perf_counter() - t0  # + worker start-up, evaluations, checkpoints
    row.start_success = res.initial_eval.get("success_rate", float("nan"))
    row.best_success, row.min_success = res.best_eval["success_rate"], res.min_success
    row.final_success, row.ci95 = _final_eval(res.policy, cfg)
    return row


def main(args: list[str]) -> int:
    """Run the variants one after the other; print the table."""
    base = [a for a in args if not a.startswith("algo=")]
    cfg = load_config(["algo=ppo", *base])  # validates every override (and ablation.*) once, up front
    out = Path(cfg.ablation.out)
    out.mkdir(parents=True, exist_ok=True)
    done = done_rows(out)  # rows of an interrupted earlier run are kept, not rerun
    rows: list[AblationRow] = []
    for name in cfg.ablation.variants:
        if name in done:
            log.info("ablation: %s already in %s, skipped", name, out / "ablation.json")
            rows.append(done[name])
            continue
        log.info("ablation: %s", name)
        rows.append(run_variant(name, base, out))
        # every finished row is written at once, with the earlier ones (a later kill loses only the running row)
        write_outputs(rows + [r for k, r in done.items() if k not in cfg.ablation.variants], out,
                      cfg.ablation.episodes, base, cfg.eval.seed_base)
    print((out / "ablation.md").read_text())
    return 0
