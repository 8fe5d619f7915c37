"""Reward model: trains on a toy dataset and ranks success above failure; potential-based shaping maths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robo_hybrid.envs import EnvConfig, make_env
from robo_hybrid.rl.config import RewardModelConfig
from robo_hybrid.rl.reward_model import (
    RewardModel,
    Trajectory,
    WindowDataset,
    load_reward_model,
    progress_targets,
    save_reward_model,
    train_reward_model,
    trajectory_progress,
)
from robo_hybrid.rl.rollout import HistoryStacker
from robo_hybrid.rl.shaping import PotentialShaper, potential_shaping


@pytest.fixture(scope="module")
def spec():
    env = make_env("push", EnvConfig(image_size=32, render=False))
    s = env.unwrapped.io_spec
    env.close()
    return s


def toy_trajectory(rng: np.random.Generator, success: bool, T: int = 12) -> Trajectory:
    """The object slides from a random start to the goal region (success) or stays near its start (failure)."""
    start, goal = rng.uniform(-0.15, 0.0, 3), np.array([0.1, 0.1, 0.05]) + rng.uniform(-0.02, 0.02, 3)
    frac = np.linspace(0, 1, T)[:, None] if success else rng.uniform(0, 0.1, (T, 1))
    priv = np.zeros((T, 13), np.float32)
    priv[:, :3] = start + frac * (goal - start)
    priv[:, 3] = 1.0
    obs = {"image": np.zeros((T, 32, 32, 3), np.uint8),
           "proprio": rng.normal(0, 0.1, (T, 16)).astype(np.float32),
           "goal": np.repeat(goal[None].astype(np.float32), T, 0),
           "privileged": priv}
    return Trajectory(obs, success)


def test_progress_targets():
    np.testing.assert_allclose(progress_targets(4, True), [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(progress_targets(3, False, 0.1), [0.1, 0.1, 0.1])


def test_windows_pad_with_the_first_frame_and_mask_it(spec):
    rng = np.random.default_rng(0)
    trajs = [toy_trajectory(rng, True, 5), toy_trajectory(rng, False, 4)]
    data = WindowDataset(trajs, ("privileged",), history=3)
    obs, target, weight = data.batch(np.array([0, 2, 5]))
    assert obs["privileged"].shape == (3, 3, 13)
    assert obs["history_mask"].tolist() == [[False, False, True], [True, True, True], [False, False, True]]
    np.testing.assert_allclose(obs["privileged"][2, 0], trajs[1].obs["privileged"][0])  # 2nd episode's first
    np.testing.assert_allclose(target.numpy(), [0.2, 0.6, 0.0])
    assert torch.isclose(weight.mean(), torch.tensor(1.0)) or weight.shape == (3,)


def test_reward_model_orders_success_above_failure(spec):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    train = [toy_trajectory(rng, i % 2 == 0) for i in range(24)]
    cfg = RewardModelConfig(d_model=32, n_layers=1, n_heads=2, history=2, use_images=False, epochs=25,
                            batch_size=32, learning_rate=2e-3)
    model = RewardModel(cfg, spec)
    assert "privileged" in model.input_keys and "image" not in model.input_keys
    losses = train_reward_model(model, train)
    assert losses[-1] < losses[0]
    good, bad = toy_trajectory(rng, True), toy_trajectory(rng, False)  # held out
    p_good, p_bad = trajectory_progress(model, good), trajectory_progress(model, bad)
    assert p_good[-1] > p_bad[-1] + 0.3, (p_good, p_bad)
    assert p_good.sum() > p_bad.sum()
    assert p_good[-1] > p_good[0]  # progress grows along a successful trajectory


def test_image_reward_model_shapes_and_file_round_trip(spec, tmp_path):
    cfg = RewardModelConfig(d_model=16, n_layers=1, n_heads=2, history=2, conv_channels=[8], epochs=1, batch_size=8)
    model = RewardModel(cfg, spec)
    assert model.input_keys == ("image", "proprio", "goal", "privileged")
    rng = np.random.default_rng(1)
    trajs = [toy_trajectory(rng, True, 6), toy_trajectory(rng, False, 6)]
    train_reward_model(model, trajs)
    p = trajectory_progress(model, trajs[0])
    assert p.shape == (6,) and np.all((p >= 0) & (p <= 1))
    save_reward_model(tmp_path / "rm.safetensors", model)
    again = load_reward_model(tmp_path / "rm.safetensors", expect_spec=spec)
    np.testing.assert_allclose(trajectory_progress(again, trajs[0]), p, rtol=1e-5, atol=1e-6)


def test_potential_shaping_telescopes_and_is_zero_at_terminal():
    gamma = 0.9
    phi = torch.tensor([0.1, 0.4, 0.7, 0.9])  # Phi(s_0..s_3); s_3 is terminal
    term = torch.tensor([0.0, 0.0, 1.0])
    F = potential_shaping(phi[:-1], phi[1:], term, gamma)
    torch.testing.assert_close(F, torch.tensor([0.9 * 0.4 - 0.1, 0.9 * 0.7 - 0.4, -0.7]))
    # discounted sum over the episode = -Phi(s_0): the return ordering of policies is unchanged
    disc = (gamma ** torch.arange(3.0) * F).sum()
    torch.testing.assert_close(disc, -phi[0])
    # on truncation the final state keeps its potential
    assert potential_shaping(torch.tensor([0.2]), torch.tensor([0.5]), torch.tensor([0.0]), gamma).item() == \
        pytest.approx(0.9 * 0.5 - 0.2)


class _SumModel(torch.nn.Module):
    """Phi = the newest frame's first privileged element; records the windows it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg = RewardModelConfig(history=2)
        self.input_keys = ("privileged",)

    def potential(self, obs):
        return obs["privileged"][:, -1, 0].float()


def test_shaper_uses_final_observations_and_zero_after_termination():
    sh = PotentialShaper(_SumModel(), gamma=0.5)  # type: ignore[arg-type]
    p = lambda *v: {"privileged": np.array([[x] + [0] * 12 for x in v], np.float32)}  # noqa: E731
    sh.reset(p(1.0, 1.0, 1.0))
    # env 0 continues (Phi 1 -> 2), env 1 is truncated (final Phi 4, new episode starts at 9),
    # env 2 terminates (final Phi 6 ignored: Phi(terminal) = 0)
    F = sh.step(p(2.0, 9.0, 9.0), np.array([False, False, True]), np.array([False, True, False]),
                np.array([1, 2]), p(4.0, 6.0))
    np.testing.assert_allclose(F, [0.5 * 2 - 1, 0.5 * 4 - 1, -1.0])
    np.testing.assert_allclose(sh.phi.numpy(), [2.0, 9.0, 9.0])


def test_history_stacker():
    st = HistoryStacker(3, ("x",))
    out = st.reset({"x": np.array([[1.0], [10.0]])})
    assert out["x"].shape == (2, 3, 1) and out["history_mask"].tolist() == [[False, False, True]] * 2
    out = st.push({"x": np.array([[2.0], [20.0]])}, np.array([False, True]))
    assert out["x"][0, :, 0].tolist() == [1.0, 1.0, 2.0] and out["history_mask"][0].tolist() == [False, True, True]
    assert out["x"][1, :, 0].tolist() == [20.0] * 3 and out["history_mask"][1].tolist() == [False, False, True]
    peek = st.peek({"x": np.array([[3.0]])}, np.array([0]))
    assert peek["x"][0, :, 0].tolist() == [1.0, 2.0, 3.0] and peek["history_mask"][0].tolist() == [True] * 3
    assert st.current()["x"][0, :, 0].tolist() == [1.0, 1.0, 2.0]  # peek changed nothing
    st.restart({"x": np.array([[7.0], [0.0]])}, np.array([True, False]))
    assert st.current()["x"][0, :, 0].tolist() == [7.0] * 3 and st.current()["x"][1, -1, 0] == 20.0
    flat = HistoryStacker(1, ("x",))
    assert flat.reset({"x": np.ones((2, 1))})["x"].shape == (2, 1) and "history_mask" not in flat.current()


def test_a_crafted_reward_model_file_asking_for_a_huge_model_is_refused(spec, tmp_path, monkeypatch):
    import json
    from dataclasses import asdict

    from safetensors.torch import save_file

    from robo_hybrid.rl import reward_model as rm

    small = RewardModel(RewardModelConfig(d_model=16, n_layers=1, n_heads=2, use_images=False), spec)
    tensors = {k: v.contiguous() for k, v in small.state_dict().items()}
    monkeypatch.setattr(rm, "RewardModel", lambda *a, **kw: pytest.fail("the model was built"))
    for claim, match in (({"d_model": 65536, "n_layers": 96}, "too large"), ({"d_model": 512}, "does not fit")):
        cfg = asdict(RewardModelConfig(**{**dict(d_model=16, n_layers=1, n_heads=2, use_images=False), **claim}))
        path = tmp_path / "rm.safetensors"
        save_file(tensors, str(path), metadata={"kind": "reward_model", "config": json.dumps(cfg),
                                                "io_spec": spec.to_json()})
        with pytest.raises(ValueError, match=match):
            load_reward_model(path)


def test_reward_model_files_from_before_the_one_tokenizer_still_load(spec, tmp_path):
    import json
    from dataclasses import asdict

    from safetensors.torch import save_file

    model = RewardModel(RewardModelConfig(d_model=16, n_layers=1, n_heads=2, history=2, conv_channels=[8]), spec)
    legacy = {}
    for k, v in model.state_dict().items():  # the state-dict names of the earlier layout
        legacy[k.replace(".0.net.", ".net.").removeprefix("tokenizer.")] = v.contiguous()
    assert "readout" in legacy and "normalizers.proprio.mean" in legacy
    path = tmp_path / "old_rm.safetensors"
    save_file(legacy, str(path), metadata={"kind": "reward_model", "config": json.dumps(asdict(model.cfg)),
                                           "io_spec": spec.to_json()})
    again = load_reward_model(path)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v, rtol=0, atol=0)
