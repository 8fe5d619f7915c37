"""`robo-hybrid bench latency|learn`: argument split, clocks, time-to-X on synthetic curves, the SB3 wrapper and
export, the latency bench on a tiny exported policy, and bench learn end to end with seconds-long budgets.

stable-baselines3 is the `[bench]` extra, not installed in CI: its tests skip through pytest.importorskip.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pytest
import torch

import robo_hybrid.policy  # noqa: F401  (torch before any MuJoCo GL context)
from robo_hybrid import benchmarks as bm
from robo_hybrid.envs import make_env
from robo_hybrid.sb3_bench import PolicyObsWrapper, SB3MissingError, require_sb3

PX = 48  # SB3's NatureCNN needs >= 36 px; our tiny policy is fine with it too
# a bench learn run of a few seconds per system: tiny model, 3 demos, 2 evaluation episodes of <= 40 steps
TINY_LEARN = [
    "policy=tiny", f"task.env.image_size={PX}", "task.env.episode_steps=40", "episodes=3", "eval.episodes=2",
    "workers=1", "torch_threads=1", "eval_every_s=1.5", "ppo.num_envs=2", "ppo.num_steps=8", "ppo.num_minibatches=2",
    "ppo.num_epochs=1", "ppo.vector_env=sync", "ppo.critic.d_model=32", "ppo.critic.n_heads=2", "ppo.critic.n_layers=1",
    "ppo.critic.conv_channels=[8,16]", "sb3_vec=dummy", "sb3_ppo.n_steps=16", "sb3_ppo.batch_size=16",
    "sb3_sac.learning_starts=8", "sb3_sac.batch_size=8", "sb3_sac.buffer_size=500",
]


def _pts(*pairs: tuple[float, float]) -> list[dict]:
    return [{"t_s": t, "success_rate": s} for t, s in pairs]


# ------------------------------------------------------------------------------------------------ pure parts
def test_split_args_separates_bench_keys_from_hydra_overrides():
    own, rest = bm.split_args(["budget_s=60", "task=push", "sb3_ppo.n_steps=64", "algo.lr=1e-3", "seeds=0,1"],
                              bm.LEARN_KEYS, bm.LEARN_PREFIXES)
    assert own == {"budget_s": "60", "sb3_ppo.n_steps": "64", "seeds": "0,1"}
    assert rest == ["task=push", "algo.lr=1e-3"]
    assert bm._literal("3e-4") == 3e-4 and bm._literal("[64, 64]") == [64, 64] and bm._literal("auto") == "auto"


def test_time_to_threshold_on_synthetic_curves():
    curve = _pts((30, 0.0), (60, 0.45), (90, 0.5), (120, 0.85), (150, 0.95))
    assert bm.time_to(curve, 0.5) == 90  # the first checkpoint at or above the threshold, not an interpolation
    assert bm.time_to(curve, 0.9) == 150
    assert bm.time_to(list(reversed(curve)), 0.5) == 90  # order of the points does not matter
    assert bm.time_to(_pts((30, 0.2), (60, 0.4)), 0.5) is None
    assert bm.time_to([], 0.5) is None


def test_summary_table_and_winners_over_seeds():
    curves = {
        "bc": {0: _pts((10, 0.6), (20, 0.9)), 1: _pts((10, 0.4), (20, 0.95))},
        "sb3_ppo": {0: _pts((10, 0.0), (20, 0.55)), 1: _pts((10, 0.1), (20, 0.2))},
    }
    rows = {r["system"]: r for r in bm.summarize(curves)}
    assert rows["bc"]["time_to_50_s"] == pytest.approx(15.0)  # mean of 10 and 20
    assert rows["bc"]["time_to_90_s"] == pytest.approx(20.0)
    assert rows["bc"]["final_success"] == pytest.approx(0.925)
    assert rows["sb3_ppo"]["time_to_50_s"] is None and rows["sb3_ppo"]["reached_50"] == 1  # one seed of two
    assert bm.winners(list(rows.values())) == {"time_to_50_s": "bc", "time_to_90_s": "bc", "final_success": "bc"}
    table = bm.format_learn_table(list(rows.values()), 20)
    assert "not reached (1/2 seeds)" in table and "15 s" in table and "92.5%" in table
    nobody = bm.winners(bm.summarize({"a": {0: _pts((5, 0.0))}, "b": {0: _pts((5, 0.0))}}))
    assert nobody == {"time_to_50_s": None, "time_to_90_s": None, "final_success": None}


def test_wall_clock_excludes_paused_time():
    clock = bm.WallClock(budget_s=10.0)
    assert clock.elapsed() == 0.0
    clock.start()
    with clock.paused():
        time.sleep(0.2)
        with clock.paused():  # re-entrant
            time.sleep(0.05)
    assert clock.elapsed() < 0.1 and not clock.expired()
    time.sleep(0.05)
    assert clock.elapsed() >= 0.05


# ------------------------------------------------------------------------------------------------ SB3 wrapper
@pytest.fixture
def wrapped_env():
    env = PolicyObsWrapper(make_env("push", image_size=PX))
    yield env
    env.close()


def test_wrapper_drops_privileged_state_and_passes_gymnasium_check_env(wrapped_env):
    from gymnasium.utils.env_checker import check_env

    assert set(wrapped_env.observation_space.spaces) == {"image", "proprio", "goal"}
    assert "privileged" in wrapped_env.unwrapped.observation_space.spaces  # the env has it; the wrapper hides it
    obs, _ = wrapped_env.reset(seed=0)
    assert set(obs) == {"image", "proprio", "goal"} and obs["image"].dtype == np.uint8
    assert obs["image"].shape == (PX, PX, 3)
    obs, *_ = wrapped_env.step(wrapped_env.action_space.sample())
    assert "privileged" not in obs
    check_env(wrapped_env.unwrapped)  # the raw env first, then the wrapper
    check_env(wrapped_env, skip_render_check=True)


def test_wrapper_passes_sb3_check_env(wrapped_env):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_checker import check_env

    check_env(wrapped_env, warn=True)


def test_missing_sb3_gives_the_install_command(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # import raises ImportError
    with pytest.raises(SB3MissingError, match=r'pip install -e "\.\[bench\]"'):
        require_sb3()
    assert bm.bench_learn(["systems=bc,sb3_ppo", "budget_s=1"]) == 2
    assert 'pip install -e ".[bench]"' in capsys.readouterr().err


def test_sb3_onnx_export_matches_sb3_torch(wrapped_env, tmp_path):
    pytest.importorskip("stable_baselines3")
    import onnxruntime as ort

    from robo_hybrid.sb3_bench import OnnxableSB3Policy, build_sb3_model, export_sb3_onnx

    for algo in ("ppo", "sac"):
        kw = {"n_steps": 8, "batch_size": 8} if algo == "ppo" else {"buffer_size": 100}
        model = build_sb3_model(algo, wrapped_env, seed=0, **kw)
        space = wrapped_env.observation_space
        names = export_sb3_onnx(model.policy, space, tmp_path / f"{algo}.onnx")
        assert names[0] == "action" and len(names) == (3 if algo == "ppo" else 1)
        rng = np.random.default_rng(0)
        obs = {k: rng.integers(0, 256, (2, *s.shape), dtype=np.uint8) if s.dtype == np.uint8
               else rng.standard_normal((2, *s.shape)).astype(np.float32) for k, s in space.spaces.items()}
        got = ort.InferenceSession(str(tmp_path / f"{algo}.onnx")).run(None, obs)[0]  # batch 2: dynamic axis
        wrapper = OnnxableSB3Policy(model.policy, tuple(space.spaces), ("image",))
        ref = wrapper(*[torch.as_tensor(v) for v in obs.values()])
        ref = ref[0] if isinstance(ref, tuple) else ref
        np.testing.assert_allclose(got, ref.detach().numpy(), atol=1e-4)
        # and it is the action SB3 itself takes (predict also clips to the bounds)
        np.testing.assert_allclose(np.clip(got, -1, 1), model.predict(obs, deterministic=True)[0], atol=1e-4)


# ------------------------------------------------------------------------------------------------ latency
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
    assert bm.bench_latency([f"model={model}", f"checkpoint={checkpoint}", "iters=20", "cycles=20", "sb3=false",
                             f"json={out}"]) == 0
    res = json.loads(out.read_text())
    for row in ("onnxruntime", "torch_eager", "onnxruntime_int8", bm.RAW_ROW):
        assert res[row]["p99"] >= res[row]["p50"] > 0, row
    assert res["cycle"]["cycles"] == 20 and res["cycle"]["nominal_period_ms"] == pytest.approx(10.0)
    assert res["ratios"]["fp32_vs_eager_p50"] == pytest.approx(res["torch_eager"]["p50"] / res["onnxruntime"]["p50"])
    assert res["targets"]["frame_px"] == PX and isinstance(res["targets"]["fp32_p99_le_1.5ms"], bool)
    assert not any(k.startswith("sb3_") and isinstance(v, dict) and "p50" in v for k, v in res.items())
    text = capsys.readouterr().out
    assert "onnxruntime fp32 vs torch eager" in text and "p99 <= 1.5 ms" in text


def test_latency_bench_sb3_row(tiny_exported):
    pytest.importorskip("stable_baselines3")
    model, _ = tiny_exported
    res = bm.run_latency(str(model), iters=20, cycles=0, verbose=False)
    assert res["sb3_ppo_onnxruntime"]["p50"] > 0 and res["sb3_ppo_torch_eager"]["p50"] > 0
    assert res["sb3"]["policy_class"] == "MultiInputActorCriticPolicy" and not res["sb3"]["trained"]
    assert "ours_session_vs_sb3_ppo_onnxruntime_p50" in res["ratios"]
    assert any("torch eager: skipped" in n for n in res["notes"])  # no checkpoint given


def test_bench_learn_rejects_algo_overrides():
    with pytest.raises(ValueError, match="bc.<key>=... for BC and ppo.<key>=... for PPO"):
        bm.bench_learn(["algo.lr=1e-3", "systems=bc"])


def test_latency_bench_needs_a_model():
    with pytest.raises(ValueError, match="model=<policy.onnx> is required"):
        bm.bench_latency(["iters=5"])


# ------------------------------------------------------------------------------------------------ learn
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
    assert bm.bench_learn(["systems=bc,bc_ppo", f"budget_s={budget}", f"out={out}", *TINY_LEARN]) == 0
    doc = _check_learn_outputs(out, ("bc", "bc_ppo"), budget)
    phases = [p["phase"] for p in doc["curves"]["bc_ppo"]["0"]]
    assert phases[-1] == "ppo" and set(phases) <= {"bc", "ppo"}
    assert doc["runs"]["bc_ppo"]["0"]["ppo_iterations"] >= 1 and doc["runs"]["bc"]["0"]["bc_steps"] >= 1
    assert 0 < doc["runs"]["bc_ppo"]["0"]["demos_s"] < doc["runs"]["bc_ppo"]["0"]["ppo_start_s"] < budget
    text = capsys.readouterr().out
    assert "time to 50%" in text and "success vs training wall-clock" in text


def test_bench_learn_sb3_end_to_end(tmp_path):
    pytest.importorskip("stable_baselines3")
    budget = 3.0
    out = tmp_path / "learn_sb3"
    assert bm.bench_learn(["systems=sb3_ppo,sb3_sac", f"budget_s={budget}", f"out={out}", *TINY_LEARN]) == 0
    doc = _check_learn_outputs(out, ("sb3_ppo", "sb3_sac"), budget)
    assert doc["runs"]["sb3_ppo"]["0"]["env_steps"] > 0 and doc["runs"]["sb3_sac"]["0"]["env_steps"] > 0
    assert 0 < doc["runs"]["sb3_sac"]["0"]["setup_s"] < budget
    assert doc["runs"]["sb3_ppo"]["0"]["hyperparameters"]["n_steps"] == 16  # sb3_ppo.* overrides reached SB3
