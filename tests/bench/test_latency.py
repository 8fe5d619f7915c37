"""`robo-hybrid bench latency` on a tiny exported policy: every row, ratios and targets, the SB3 row."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import robo_hybrid.policy  # noqa: F401  (torch before any MuJoCo GL context)
from robo_hybrid.bench.latency import RAW_ROW, run_latency
from robo_hybrid.cli import main
from robo_hybrid.envs import make_env

PX = 48


@pytest.fixture(scope="module")
def tiny_exported(tmp_path_factory, tiny_policy_cfg):
    """A tiny push policy at 48 px: (onnx path, safetensors checkpoint path)."""
    from robo_hybrid.export import export_onnx
    from robo_hybrid.policy import MultimodalPolicy
    from robo_hybrid.training.checkpoint import save_policy

    env = make_env("push", image_size=PX, render=False)
    spec = env.unwrapped.io_spec
    env.close()
    torch.manual_seed(0)
    policy = MultimodalPolicy(tiny_policy_cfg, spec)
    n = spec.obs("proprio").shape[0]
    policy.fit_normalizers({"proprio": (np.zeros(n), np.ones(n)), "goal": (np.zeros(3), np.ones(3)),
                            "action": (np.zeros(4), np.ones(4))})
    d = tmp_path_factory.mktemp("bench_latency")
    save_policy(d / "policy.safetensors", policy.eval())
    export_onnx(policy, d / "policy.onnx")
    return d / "policy.onnx", d / "policy.safetensors"


def test_latency_bench_returns_every_row(tiny_exported, tmp_path, capsys):
    model, checkpoint = tiny_exported
    out = tmp_path / "latency.json"
    assert main(["bench", "latency", f"model={model}", f"checkpoint={checkpoint}", "bench.latency.iters=20",
                 "bench.latency.cycles=20", "bench.latency.sb3=false", f"bench.latency.json={out}"]) == 0
    res = json.loads(out.read_text())
    for row in ("onnxruntime", "torch_eager", "onnxruntime_int8", RAW_ROW):
        assert res[row]["p99"] >= res[row]["p50"] > 0, row
    assert res["cycle"]["cycles"] == 20 and res["cycle"]["nominal_period_ms"] == pytest.approx(10.0)
    assert res["ratios"]["fp32_vs_eager_p50"] == pytest.approx(res["torch_eager"]["p50"] / res["onnxruntime"]["p50"])
    assert res["targets"]["frame_px"] == PX and isinstance(res["targets"]["fp32_p99_le_1.5ms"], bool)
    assert not any(k.startswith("sb3_") and isinstance(v, dict) and "p50" in v for k, v in res.items())
    text = capsys.readouterr().out
    assert "onnxruntime fp32 vs torch eager" in text and "p99 <= 1.5 ms" in text


def test_latency_bench_sb3_row(tiny_exported):
    model, _ = tiny_exported
    res = run_latency(str(model), iters=20, cycles=0, verbose=False)
    assert res["sb3_ppo_onnxruntime"]["p50"] > 0 and res["sb3_ppo_torch_eager"]["p50"] > 0
    assert res["sb3"]["policy_class"] == "MultiInputActorCriticPolicy" and not res["sb3"]["trained"]
    assert "ours_session_vs_sb3_ppo_onnxruntime_p50" in res["ratios"]
    assert any("torch eager: skipped" in n for n in res["notes"])  # no checkpoint given


def test_latency_bench_needs_a_model(capsys):
    assert main(["bench", "latency", "bench.latency.iters=5"]) == 2
    assert "model=<policy.onnx> is required" in capsys.readouterr().err
