"""The ablation runner writes one table row per variant (tiny sizes, 1 iteration each)."""

from __future__ import annotations

import json

from robo_hybrid.commands.ablate import main as ablate


def test_ablation_table(bc_checkpoint, tiny_overrides, tmp_path):
    base = [*tiny_overrides, f"checkpoint={bc_checkpoint}", "algo.iterations=1", "algo.critic_warmup_iters=0",
            "ablation.variants=[bc_only,scratch,no_kl]", "ablation.seeds=[0,3]", "ablation.episodes=2",
            f"ablation.out={tmp_path / 'abl'}"]
    assert ablate(base) == 0
    text = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| BC only (no RL) | - |" in text and "| PPO from scratch | 0, 3 |" in text and "without KL" in text
    rows = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    # variant by variant, every PPO variant once per training seed, BC (nothing trained) once
    assert [(r["variant"], r["seed"]) for r in rows] == [("bc_only", 0), ("scratch", 0), ("scratch", 3),
                                                          ("no_kl", 0), ("no_kl", 3)]
    assert len({r["run_dir"] for r in rows}) == 5 and rows[2]["run_dir"].endswith("scratch_s3")
    assert rows[0]["iterations"] == 0 and rows[1]["iterations"] == 1 and rows[1]["env_steps"] == 16
    assert "seed: 3" in (tmp_path / "abl" / "scratch_s3" / "config.yaml").read_text()
    # each run's final evaluation ran its 2 episodes: the interval is the Wilson interval of that many
    from robo_hybrid.evaluation import wilson_interval

    assert all(tuple(r["ci95"]) in {wilson_interval(k, 2) for k in range(3)} for r in rows)
    assert rows[0]["final_success"] in (0.0, 0.5, 1.0) and all(r["episodes"] == 2 for r in rows)
    # a variant's line pools its seeds: the mean of the runs, the interval of their 4 episodes together
    wins = round(2 * rows[1]["final_success"]) + round(2 * rows[2]["final_success"])
    lo, hi = wilson_interval(wins, 4)
    line = next(x for x in text.splitlines() if x.startswith("| PPO from scratch"))
    mean = (rows[1]["final_success"] + rows[2]["final_success"]) / 2
    assert f"[{lo:.1%}, {hi:.1%}]" in line and f"| {mean:.1%}" in line
    # the curves of the trained variants: their periodic evaluations (start and end here) against wall-clock
    from robo_hybrid.rl.ablation import eval_curve, mean_curve

    curve = eval_curve(rows[1]["run_dir"])
    assert len(curve) == 2 and curve[0][0] < curve[1][0] and all(0.0 <= s <= 1.0 for _, s in curve)
    assert eval_curve(tmp_path / "missing") == []
    assert mean_curve([[(0.0, 0.5), (10.0, 1.0)], [(2.0, 0.0), (12.0, 0.5), (20.0, 1.0)]]) == [(1.0, 0.25),
                                                                                             (11.0, 0.75)]
    assert (tmp_path / "abl" / "ablation_curves.png").stat().st_size > 0


def test_ablation_resumes_where_it_stopped(bc_checkpoint, tiny_overrides, tmp_path, monkeypatch):
    import robo_hybrid.commands.ablate as ablate_mod

    out = tmp_path / "abl"
    base = [*tiny_overrides, f"checkpoint={bc_checkpoint}", "algo.iterations=1", "algo.critic_warmup_iters=0",
            "ablation.episodes=2", f"ablation.out={out}"]
    assert ablate([*base, "ablation.variants=[bc_only,residual]", "ablation.seeds=[0]"]) == 0
    first = json.loads((out / "ablation.json").read_text())
    ran: list[tuple[str, int]] = []
    real = ablate_mod.run_variant
    monkeypatch.setattr(ablate_mod, "run_variant",
                        lambda name, seed, *a: ran.append((name, seed)) or real(name, seed, *a))
    assert ablate([*base, "ablation.variants=[bc_only,residual,mlp_critic]", "ablation.seeds=[0,1]"]) == 0
    # the finished runs were read back, not rerun; every variant ran under seed 0 before any under seed 1
    assert ran == [("mlp_critic", 0), ("residual", 1), ("mlp_critic", 1)]
    rows = json.loads((out / "ablation.json").read_text())
    assert [(r["variant"], r["seed"]) for r in rows] == [("bc_only", 0), ("residual", 0), ("residual", 1),
                                                          ("mlp_critic", 0), ("mlp_critic", 1)]
    assert rows[:2] == first and rows[3]["iterations"] == 1
    assert "MLP critic" in (out / "ablation.md").read_text()


def test_learned_shaping_variants_share_one_pretrained_reward_model(bc_checkpoint, push_demos_32, tiny_overrides,
                                                                      tmp_path, monkeypatch):
    import robo_hybrid.commands.ablate as ablate_mod

    out = tmp_path / "abl"
    built: list[str] = []
    real = ablate_mod.ppo_trainer
    monkeypatch.setattr(ablate_mod, "ppo_trainer", lambda cfg: built.append(cfg.run_dir) or real(cfg))
    base = [*tiny_overrides, f"checkpoint={bc_checkpoint}", f"data={push_demos_32}", "algo.iterations=1",
            "algo.critic_warmup_iters=0", "ablation.episodes=2", f"ablation.out={out}",
            "ablation.variants=[learned]", "ablation.seeds=[0,1]"]
    assert ablate(base) == 0
    assert len(built) == 1  # pre-trained once, before the first learned run
    cache = out / "reward_model.safetensors"
    assert cache.stat().st_size > 0 and json.loads((out / "reward_model.json").read_text())["pretrain_s"] > 0
    for seed in (0, 1):  # both runs shaped by that model
        assert f"checkpoint: {cache}" in (out / f"learned_s{seed}" / "config.yaml").read_text()
    assert ablate(base) == 0 and len(built) == 1  # a rerun finds the runs done and the model cached


def test_every_variant_composes_into_a_valid_config():
    """Each variant's overrides name real keys with valid values (a typo would only surface after hours of rows)."""
    from robo_hybrid.config import load_config
    from robo_hybrid.rl.ablation import VARIANTS

    for name, (_, extra) in VARIANTS.items():
        cfg = load_config(["algo=ppo", "task=pickplace", *extra])
        if name == "low_std":
            assert (cfg.algo.bc_reg, cfg.algo.residual.init_std, cfg.algo.std_min) == ("kl_mean", 0.03, 0.02)
