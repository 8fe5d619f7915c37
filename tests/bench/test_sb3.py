"""The stable-baselines3 side of the benchmarks: the observation wrapper, SB3's ONNX export recipe, the missing-
extra message. stable-baselines3 comes with the [dev] extra, so these run in CI."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch

import robo_hybrid.policy  # noqa: F401  (torch before any MuJoCo GL context)
from robo_hybrid.bench.sb3 import PolicyObsWrapper, SB3MissingError, require_sb3
from robo_hybrid.cli import main
from robo_hybrid.envs import make_env

PX = 48  # SB3's NatureCNN needs >= 36 px


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
    from stable_baselines3.common.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SB3's checker only warns: a warning here is a wrapper that SB3 would misread
        check_env(wrapped_env, warn=True)


def test_missing_sb3_gives_the_install_command(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # import raises ImportError
    with pytest.raises(SB3MissingError, match=r'pip install -e "\.\[bench\]"'):
        require_sb3()
    assert main(["bench", "learn", "bench.learn.systems=[bc,sb3_ppo]", "bench.learn.budget_s=1"]) == 2
    assert 'pip install -e ".[bench]"' in capsys.readouterr().err


def test_sb3_onnx_export_matches_sb3_torch(wrapped_env, tmp_path):
    import onnxruntime as ort

    from robo_hybrid.bench.sb3 import OnnxableSB3Policy, build_sb3_model, export_sb3_onnx

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
