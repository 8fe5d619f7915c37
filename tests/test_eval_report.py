"""Evaluation: Wilson interval, held-out seeds, report and video."""

from __future__ import annotations

import json

import pytest

from robo_hybrid.envs import make_env
from robo_hybrid.evaluate import EVAL_SEED_BASE, evaluate, wilson_interval
from robo_hybrid.policy.model import MultimodalPolicy


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(9, 10)
    assert lo == pytest.approx(0.5958, abs=1e-3) and hi == pytest.approx(0.9821, abs=1e-3)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)


def test_evaluate_writes_report_and_video(tmp_path, tiny_policy_cfg):
    spec = make_env("reach", image_size=32, render=False).unwrapped.io_spec
    policy = MultimodalPolicy(tiny_policy_cfg, spec).eval()
    rep = evaluate(policy, "reach", {"image_size": 32, "episode_steps": 6}, episodes=3, workers=1,
                   video=str(tmp_path / "v.mp4"), n_video=1, report_path=str(tmp_path / "r.json"), progress=False)
    assert rep.episodes == 3 and rep.mean_length <= 6
    assert rep.seeds == [EVAL_SEED_BASE, EVAL_SEED_BASE + 1, EVAL_SEED_BASE + 2]
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["successes"] == rep.successes and saved["ci95_low"] <= saved["success_rate"] <= saved["ci95_high"]
    assert (tmp_path / "v.mp4").stat().st_size > 1000


def test_evaluate_a_history_policy(tiny_policy_cfg):
    from dataclasses import replace

    spec = make_env("reach", image_size=32, render=False).unwrapped.io_spec
    policy = MultimodalPolicy(replace(tiny_policy_cfg, history=3), spec).eval()
    rep = evaluate(policy, "reach", {"image_size": 32, "episode_steps": 5}, episodes=2, workers=1, progress=False)
    assert rep.episodes == 2 and rep.mean_length == 5
