"""One seed source: BC training's evaluation, PPO's evaluation, `eval`, the ablation and `bench learn` all draw
their held-out seeds from cfg.eval.seed_base (override it and every comparison moves together)."""

from __future__ import annotations

import pytest

from robo_hybrid.bench.learn import learn_evaluator
from robo_hybrid.commands.common import held_out_evaluator
from robo_hybrid.commands.train import bc_eval_hook, train_ppo
from robo_hybrid.config import load_config
from robo_hybrid.evaluation import Evaluator


@pytest.mark.parametrize("seed_base", [1_000_000, 777])
def test_bc_ppo_and_bench_learn_evaluate_on_the_same_seeds(seed_base, tmp_path, tiny_overrides, bc_checkpoint,
                                                           monkeypatch):
    shared = [*tiny_overrides[:4], f"eval.seed_base={seed_base}", "algo.eval_episodes=2", "eval.episodes=2"]
    bc_cfg = load_config(["algo=bc", *shared])
    _, bc_eval = bc_eval_hook(bc_cfg)
    learn = learn_evaluator(load_config(["algo=bc", *shared]))
    final = held_out_evaluator(bc_cfg, bc_cfg.eval.episodes)  # eval, the main job's final eval, the ablation
    # PPO: record the seeds its evaluator really runs, in a real (tiny) training run
    seen: list[list[int]] = []
    real_run = Evaluator.run

    def spy(self, *a, **kw):
        seen.append(list(self.seeds))
        return real_run(self, *a, **kw)

    monkeypatch.setattr(Evaluator, "run", spy)
    train_ppo(load_config(["algo=ppo", *tiny_overrides, *shared[4:], f"checkpoint={bc_checkpoint}",
                           "algo.iterations=1", "algo.critic_warmup_iters=0", f"run_dir={tmp_path / 'ppo'}"]))
    expected = [seed_base, seed_base + 1]
    assert bc_eval.seeds == learn.seeds == final.seeds == expected
    assert seen and all(s == expected for s in seen)
    for ev in (bc_eval, learn, final):
        ev.close()
