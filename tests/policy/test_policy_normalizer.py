"""Normalizer: round trip, std floor, clipping, statistics in the state dict."""

from __future__ import annotations

import numpy as np
import torch

from robo_hybrid.policy import Normalizer


def test_round_trip_and_unit_statistics():
    x = np.random.default_rng(0).normal(loc=[1.0, -2.0, 30.0], scale=[0.5, 3.0, 0.1], size=(500, 3))
    n = Normalizer((3,), std_floor=1e-3)
    n.fit(x)
    t = torch.as_tensor(x, dtype=torch.float32)
    y = n.normalize(t)
    np.testing.assert_allclose(y.mean(0).numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.std(0, unbiased=False).numpy(), 1.0, atol=1e-4)
    np.testing.assert_allclose(n.unnormalize(y).numpy(), x, rtol=1e-5, atol=1e-4)
    assert bool(n.fitted)


def test_floor_keeps_constant_features_finite_and_clip_bounds():
    x = np.zeros((10, 2))
    x[:, 1] = 5.0
    n = Normalizer((2,), std_floor=0.1, clip=3.0)
    n.fit(x)
    assert torch.all(n.std == 0.1)
    y = n(torch.tensor([[100.0, 5.0]]))
    assert y[0, 0] == 3.0 and y[0, 1] == 0.0  # clipped, and the constant feature maps to 0


def test_statistics_travel_in_the_state_dict():
    a = Normalizer((4,))
    a.set_stats(np.arange(4.0), np.full(4, 2.0))
    b = Normalizer((4,))
    b.load_state_dict(a.state_dict())
    assert set(a.state_dict()) == {"mean", "std", "fitted"}
    torch.testing.assert_close(b.mean, a.mean)
    torch.testing.assert_close(b.std, a.std)
