"""The evaluator and its report: Wilson interval, held-out seeds, JSON report and video, history policies."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from robo_hybrid.constants import HELD_OUT_SEED_BASE
from robo_hybrid.envs import EnvConfig, make_env
from robo_hybrid.evaluation import EvalReport, Evaluator, held_out_seeds, wilson_interval
from robo_hybrid.policy.model import MultimodalPolicy

ENV = EnvConfig(image_size=32, episode_steps=6)


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(9, 10)
    assert lo == pytest.approx(0.5958, abs=1e-3) and hi == pytest.approx(0.9821, abs=1e-3)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)


def test_report_aggregates_episodes_in_seed_order():
    rep = EvalReport.from_episodes("push", [7, 8, 9, 10], [True, False, True, True], [1.0, 0.0, 2.0, 1.0], [3, 5, 4, 4])
    assert (rep.episodes, rep.successes, rep.success_rate) == (4, 3, 0.75)
    assert rep.episode_return == 1.0 and rep.episode_length == 4.0
    assert (rep.ci95_low, rep.ci95_high) == wilson_interval(3, 4)
    assert set(rep.metrics()) == {"success_rate", "success_ci95_low", "success_ci95_high", "episode_return",
                                  "episode_length"}


def test_held_out_seeds_start_at_the_base():
    assert held_out_seeds(3) == [HELD_OUT_SEED_BASE, HELD_OUT_SEED_BASE + 1, HELD_OUT_SEED_BASE + 2]
    assert held_out_seeds(2, 50) == [50, 51]
    with pytest.raises(ValueError, match="at least one episode"):
        Evaluator("reach", ENV, 0)


def test_evaluator_writes_report_and_video(tmp_path, tiny_policy_cfg):
    spec = make_env("reach", image_size=32, render=False).unwrapped.io_spec
    policy = MultimodalPolicy(tiny_policy_cfg, spec).eval()
    with Evaluator("reach", ENV, 3, num_envs=1) as ev:
        rep = ev(policy, video=tmp_path / "v.mp4", n_video=1, report_path=tmp_path / "r.json")
    assert rep.episodes == 3 and rep.episode_length <= 6
    assert rep.seeds == held_out_seeds(3)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["successes"] == rep.successes and saved["ci95_low"] <= saved["success_rate"] <= saved["ci95_high"]
    assert saved["seeds"] == rep.seeds and saved["video"] == str(tmp_path / "v.mp4")
    assert (tmp_path / "v.mp4").stat().st_size > 1000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_evaluator_runs_a_history_policy_on_two_workers(tiny_policy_cfg):
    spec = make_env("reach", image_size=32, render=False).unwrapped.io_spec
    policy = MultimodalPolicy(replace(tiny_policy_cfg, history=3), spec).eval()
    env = replace(ENV, episode_steps=5)
    with Evaluator("reach", env, 3, num_envs=2) as ev:  # async workers (forkserver)
        first, second = ev(policy), ev(policy)  # the env workers stay up between calls
    assert first.episodes == 3 and first.episode_length == 5
    assert first.episode_return == second.episode_return  # same seeds, deterministic actions
