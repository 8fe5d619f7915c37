"""`robo-hybrid ablate checkpoint=<BC run> data=<demos> algo.time_budget_s=600 ablation.seeds=[0,1]`.

Every PPO variant gets the command line's overrides plus its own (robo_hybrid/rl/ablation.py VARIANTS), runs once
per training seed in <ablation.out>/<variant>_s<seed>, and its final policy is evaluated on the same held-out seeds
(eval.seed_base + i) as the BC checkpoint. The table, JSON and curve PNG are rewritten after every run; a killed
ablation resumes where it stopped (finished runs are read back, the running one continues from its checkpoint).
Variants with learned shaping share one reward model, pre-trained before the first of them and cached in
<ablation.out>/reward_model.safetensors: its pre-training is not part of any run's budget.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import torch  # noqa: F401  (before any GL context of a sync vector env)

from robo_hybrid.config import Config, load_config
from robo_hybrid.fileio import atomic_path, atomic_write_json
from robo_hybrid.rl.ablation import VARIANTS, AblationRow, done_rows, row_key, write_outputs

from .common import held_out_evaluator
from .train import ppo_trainer, train_ppo

REWARD_MODEL_CACHE = "reward_model.safetensors"

log = logging.getLogger(__name__)


def _final_eval(policy, cfg: Config) -> tuple[float, tuple[float, float]]:
    """Held-out success of a policy on ablation.episodes seeds eval.seed_base + i."""
    with held_out_evaluator(cfg, cfg.ablation.episodes) as ev:
        rep = ev(policy)
    return rep.success_rate, (rep.ci95_low, rep.ci95_high)


def cached_reward_model(base: list[str], out: Path) -> list[str]:
    """The override that points a learned-shaping variant at the ablation's one reward model; trains it first when
    <out>/reward_model.safetensors does not exist yet (on the base overrides' checkpoint, demos and seed)."""
    if any(a.startswith("algo.reward_model.checkpoint=") for a in base):
        return []  # the command line names a trained reward model: every variant uses that one
    cache = out / REWARD_MODEL_CACHE
    if not cache.is_file():
        log.info("ablation: pre-training the reward model of the learned-shaping variants (cached in %s)", cache)
        t0 = time.perf_counter()
        # the trainer trains the reward model while it is built; nothing is rolled out or updated
        trainer = ppo_trainer(load_config(["algo=ppo", *base, "algo.reward=learned",
                                           f"run_dir={out / 'reward_model_pretraining'}"]))
        try:
            src = trainer.reward_model_path
        finally:
            trainer.close()
        if src is None:
            raise RuntimeError("the PPO trainer built no reward model for algo.reward=learned")
        with atomic_path(cache) as tmp:
            shutil.copyfile(src, tmp)
        atomic_write_json(out / "reward_model.json", {"pretrain_s": time.perf_counter() - t0, "source": str(src)})
    return [f"algo.reward_model.checkpoint={cache}"]


def run_variant(name: str, seed: int, base: list[str], out_dir: Path) -> AblationRow:
    """Train (or, for bc_only, just load) one variant under one training seed and evaluate its final policy."""
    from robo_hybrid.training import checkpoint as ckpt  # noqa: PLC0415

    desc, extra = VARIANTS[name]
    run_dir = out_dir / f"{name}_s{seed}"
    # a variant killed mid-run continues from its last checkpoint (and the rest of its time budget)
    resume = ["resume=true"] if ckpt.find_checkpoint(run_dir / "checkpoints") is not None else []
    overrides = ["algo=ppo", *base, *extra, f"seed={seed}", f"run_dir={run_dir}", *resume]
    cfg = load_config(overrides)
    row = AblationRow(name, desc, run_dir=str(run_dir), seed=seed, episodes=cfg.ablation.episodes)
    if name == "bc_only":
        if not cfg.checkpoint:
            raise ValueError("the bc_only row needs checkpoint=<BC run>")
        policy = ckpt.load_policy(cfg.checkpoint)[0]
        row.final_success, row.ci95 = _final_eval(policy, cfg)
        row.start_success = row.best_success = row.min_success = row.final_success
        return row
    if cfg.algo.reward == "learned":
        cfg = load_config([*overrides, *cached_reward_model(base, out_dir)])
    t0 = time.perf_counter()
    res = train_ppo(cfg)
    row.iterations, row.env_steps, row.wall_s = res.iterations, res.env_steps, res.wall_s
    row.extra["total_wall_s"] = time.perf_counter() - t0  # + worker start-up, evaluations, checkpoints
    row.start_success = res.initial_eval.get("success_rate", float("nan"))
    row.best_success, row.min_success = res.best_eval["success_rate"], res.min_success
    row.final_success, row.ci95 = _final_eval(res.policy, cfg)
    return row


def main(args: list[str]) -> int:
    """Run every variant under the first seed, then every variant under the next, ...; print the table."""
    base = [a for a in args if not a.startswith("algo=")]
    cfg = load_config(["algo=ppo", *base])  # validates every override (and ablation.*) once, up front
    out = Path(cfg.ablation.out)
    out.mkdir(parents=True, exist_ok=True)
    done = done_rows(out)  # runs of an interrupted earlier ablation are kept, not rerun
    table = _table_order(cfg.ablation.variants, cfg.ablation.seeds)
    order = sorted(table, key=lambda run: cfg.ablation.seeds.index(run[1]))  # seed by seed, variants in table order
    rows: dict[str, AblationRow] = {}

    def write() -> None:  # this command's runs in table order, then the earlier runs of other variants / seeds
        ordered = [rows[row_key(n, s)] for n, s in table if row_key(n, s) in rows]
        write_outputs(ordered + [r for k, r in done.items() if k not in rows], out, cfg.ablation.episodes, base,
                      cfg.eval.seed_base)

    for name, seed in order:
        key = row_key(name, seed)
        if key in done:
            log.info("ablation: %s seed %d already in %s, skipped", name, seed, out / "ablation.json")
            rows[key] = done[key]
            continue
        log.info("ablation: %s, seed %d", name, seed)
        rows[key] = run_variant(name, seed, base, out)
        write()  # every finished run is written at once (a later kill loses only the running one)
    write()
    print((out / "ablation.md").read_text())
    return 0


def _table_order(variants: list[str], seeds: list[int]) -> list[tuple[str, int]]:
    """Runs of the table: variant by variant (seeds together), as ablation.variants lists them; BC is evaluated once
    (no training: nothing depends on the seed)."""
    return [(name, seed) for name in variants for seed in (seeds[:1] if name == "bc_only" else seeds)]
