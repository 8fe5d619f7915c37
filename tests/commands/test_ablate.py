"""The ablation runner writes one table row per variant (tiny sizes, 1 iteration each)."""

from __future__ import annotations

import json

from robo_hybrid.commands.ablate import main as ablate


def test_ablation_table(bc_checkpoint, tiny_overrides, tmp_path):
    base = [*tiny_overrides, f"checkpoint={bc_checkpoint}", "algo.iterations=1", "algo.critic_warmup_iters=0",
            "ablation.variants=[bc_only,scratch,no_kl]", "ablation.episodes=2", f"ablation.out={tmp_path / 'abl'}"]
    assert ablate(base) == 0
    text = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| BC only (no RL) |" in text and "| PPO from scratch |" in text and "without KL" in text
    rows = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert [r["variant"] for r in rows] == ["bc_only", "scratch", "no_kl"]
    assert rows[0]["iterations"] == 0 and rows[1]["iterations"] == 1 and rows[1]["env_steps"] == 16
    # each row's final evaluation ran its 2 episodes: the interval is the Wilson interval of that many
    from robo_hybrid.evaluation import wilson_interval

    assert all(tuple(r["ci95"]) in {wilson_interval(k, 2) for k in range(3)} for r in rows)
    assert rows[0]["final_success"] in (0.0, 0.5, 1.0)
    # the curves of the trained variants: their periodic evaluations (start and end here) against wall-clock
    from robo_hybrid.rl.ablation import eval_curve

    curve = eval_curve(rows[1]["run_dir"])
    assert len(curve) == 2 and curve[0][0] < curve[1][0] and all(0.0 <= s <= 1.0 for _, s in curve)
    assert eval_curve(tmp_path / "missing") == []
    assert (tmp_path / "abl" / "ablation_curves.png").stat().st_size > 0


def test_ablation_resumes_where_it_stopped(bc_checkpoint, tiny_overrides, tmp_path, monkeypatch):
    import robo_hybrid.commands.ablate as ablate_mod

    out = tmp_path / "abl"
    base = [*tiny_overrides, f"checkpoint={bc_checkpoint}", "algo.iterations=1", "algo.critic_warmup_iters=0",
            "ablation.episodes=2", f"ablation.out={out}"]
    assert ablate([*base, "ablation.variants=[bc_only,residual]"]) == 0
    first = json.loads((out / "ablation.json").read_text())
    ran: list[str] = []
    real = ablate_mod.run_variant
    monkeypatch.setattr(ablate_mod, "run_variant", lambda name, *a: ran.append(name) or real(name, *a))
    assert ablate([*base, "ablation.variants=[bc_only,residual,mlp_critic]"]) == 0
    assert ran == ["mlp_critic"]  # the finished rows were read back, not rerun
    rows = json.loads((out / "ablation.json").read_text())
    assert [r["variant"] for r in rows] == ["bc_only", "residual", "mlp_critic"]
    assert rows[:2] == first and rows[2]["iterations"] == 1
    assert "MLP critic" in (out / "ablation.md").read_text()
