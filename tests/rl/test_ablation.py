"""The ablation runner writes one table row per variant (tiny sizes, 1 iteration each)."""

from __future__ import annotations

import json

from robo_hybrid.rl.ablation import run_ablations


def test_ablation_table(bc_checkpoint, tiny_overrides, tmp_path):
    base = [*tiny_overrides, f"checkpoint={bc_checkpoint}", "algo.iterations=1", "algo.critic_warmup_iters=0"]
    path = run_ablations(base, ["bc_only", "scratch", "no_kl"], tmp_path / "abl", episodes=2)
    text = path.read_text()
    assert "| BC only (no RL) |" in text and "| PPO from scratch |" in text and "without KL" in text
    rows = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert [r["variant"] for r in rows] == ["bc_only", "scratch", "no_kl"]
    assert rows[0]["iterations"] == 0 and rows[1]["iterations"] == 1 and rows[1]["env_steps"] == 16
    assert all(0.0 <= r["final_success"] <= 1.0 for r in rows)
    # the curves of the trained variants: their periodic evaluations (start and end here) against wall-clock
    from robo_hybrid.rl.ablation import eval_curve

    curve = eval_curve(rows[1]["run_dir"])
    assert len(curve) == 2 and curve[0][0] < curve[1][0] and all(0.0 <= s <= 1.0 for _, s in curve)
    assert eval_curve(tmp_path / "missing") == []
    assert (tmp_path / "abl" / "ablation_curves.png").stat().st_size > 0
