"""`robo-hybrid bench learn` end to end with seconds-long budgets: ours (BC, BC + PPO) and SB3 (PPO, SAC)."""

from __future__ import annotations

import json

import robo_hybrid.policy  # noqa: F401  (torch before any MuJoCo GL context)
from robo_hybrid.cli import main

PX = 48  # SB3's NatureCNN needs >= 36 px; our tiny policy is fine with it too
# a run of a few seconds per system: tiny model, 3 demos, 2 evaluation episodes of <= 40 steps
L = "bench.learn."
TINY_LEARN = [
    "policy=tiny", f"task.env.image_size={PX}", "task.env.episode_steps=40", "episodes=3", "eval.episodes=2",
    "workers=1", f"{L}torch_threads=1", f"{L}eval_every_s=1.5", f"{L}ppo.num_envs=2", f"{L}ppo.num_steps=8",
    f"{L}ppo.num_minibatches=2", f"{L}ppo.num_epochs=1", f"{L}ppo.vector_env=sync", f"{L}ppo.critic.d_model=32",
    f"{L}ppo.critic.n_heads=2", f"{L}ppo.critic.n_layers=1", f"{L}ppo.critic.conv_channels=[8,16]",
    f"{L}sb3_vec=dummy", f"+{L}sb3_ppo.n_steps=16", f"+{L}sb3_ppo.batch_size=16", f"+{L}sb3_sac.learning_starts=8",
    f"+{L}sb3_sac.batch_size=8", f"+{L}sb3_sac.buffer_size=500",
]


def _check_learn_outputs(out_dir, systems: tuple[str, ...], budget_s: float) -> dict:
    doc = json.loads((out_dir / "bench_learn.json").read_text())
    assert (out_dir / "bench_learn.png").stat().st_size > 1000
    assert [r["system"] for r in doc["summary"]] == list(systems)
    for system in systems:
        pts = doc["curves"][system]["0"]
        assert len(pts) >= 2, system
        assert [p["t_s"] for p in pts] == sorted(p["t_s"] for p in pts)
        assert pts[-1]["t_s"] >= budget_s  # the last evaluation is at the end of the budget...
        assert pts[-1]["t_s"] < budget_s + 5  # ...and evaluation time did not count
        assert all(p["episodes"] == 2 and 0.0 <= p["success_rate"] <= 1.0 for p in pts)
        assert doc["runs"][system]["0"]["total_wall_s"] > budget_s
    assert doc["eval_seed_base"] == 1_000_000
    return doc


def test_bench_learn_ours_end_to_end(tmp_path, capsys):
    budget = 4.0
    out = tmp_path / "learn"
    assert main(["bench", "learn", "bench.learn.systems=[bc,bc_ppo]", f"bench.learn.budget_s={budget}", f"out={out}",
                 *TINY_LEARN]) == 0
    doc = _check_learn_outputs(out, ("bc", "bc_ppo"), budget)
    phases = [p["phase"] for p in doc["curves"]["bc_ppo"]["0"]]
    assert phases[-1] == "ppo" and set(phases) <= {"bc", "ppo"}
    assert doc["runs"]["bc_ppo"]["0"]["ppo_iterations"] >= 1 and doc["runs"]["bc"]["0"]["bc_steps"] >= 1
    assert 0 < doc["runs"]["bc_ppo"]["0"]["demos_s"] < doc["runs"]["bc_ppo"]["0"]["ppo_start_s"] < budget
    text = capsys.readouterr().out
    assert "time to 50%" in text and "success vs training wall-clock" in text


def test_bench_learn_sb3_end_to_end(tmp_path):
    budget = 3.0
    out = tmp_path / "learn_sb3"
    assert main(["bench", "learn", "bench.learn.systems=[sb3_ppo,sb3_sac]", f"bench.learn.budget_s={budget}",
                 f"out={out}", *TINY_LEARN]) == 0
    doc = _check_learn_outputs(out, ("sb3_ppo", "sb3_sac"), budget)
    assert doc["runs"]["sb3_ppo"]["0"]["env_steps"] > 0 and doc["runs"]["sb3_sac"]["0"]["env_steps"] > 0
    assert 0 < doc["runs"]["sb3_sac"]["0"]["setup_s"] < budget
    assert doc["runs"]["sb3_ppo"]["0"]["hyperparameters"]["n_steps"] == 16  # sb3_ppo.* overrides reached SB3


def test_bench_learn_refuses_algo_ppo(capsys):
    assert main(["bench", "learn", "algo=ppo"]) == 2
    assert "bench.learn.ppo" in capsys.readouterr().err
