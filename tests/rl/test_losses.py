"""PPO loss pieces on tiny tensors: ratio clipping, value clipping, KL estimates, the BC-KL regularizer."""

from __future__ import annotations

import math

import torch
from torch.distributions import Normal, kl_divergence

from robo_hybrid.rl.config import PPOConfig, linear_schedule
from robo_hybrid.rl.ppo import approx_kl, clipped_surrogate_loss, clipped_value_loss, gaussian_kl


def _surrogate(ratio: float, adv: float, clip: float = 0.2):
    logp = torch.tensor([math.log(ratio)], requires_grad=True)
    loss, frac = clipped_surrogate_loss(logp, torch.zeros(1), torch.tensor([adv]), clip)
    loss.backward()
    assert logp.grad is not None
    return loss.item(), frac.item(), logp.grad.item()


def test_ratio_clipping_is_pessimistic():
    # r = 1.5, A = +1: the gain is capped at (1 + eps) A = 1.2 and the gradient vanishes
    loss, frac, grad = _surrogate(1.5, 1.0)
    assert math.isclose(loss, -1.2, rel_tol=1e-6) and frac == 1.0 and grad == 0.0
    # r = 1.5, A = -1: the worse, unclipped term counts (-1.5 < -1.2), gradient flows
    loss, _, grad = _surrogate(1.5, -1.0)
    assert math.isclose(loss, 1.5, rel_tol=1e-6) and grad != 0.0
    # r = 0.5, A = +1: unclipped 0.5 < clipped 0.8 -> 0.5 counts
    loss, _, grad = _surrogate(0.5, 1.0)
    assert math.isclose(loss, -0.5, rel_tol=1e-6) and grad != 0.0
    # r = 0.5, A = -1: clipped at (1 - eps) A = -0.8, no gradient
    loss, _, grad = _surrogate(0.5, -1.0)
    assert math.isclose(loss, 0.8, rel_tol=1e-6) and grad == 0.0
    # inside the trust region nothing is clipped: r = 1.1, A = 2 -> -2.2
    loss, frac, _ = _surrogate(1.1, 2.0)
    assert math.isclose(loss, -2.2, rel_tol=1e-6) and frac == 0.0


def test_value_clipping():
    v = torch.tensor([0.5], requires_grad=True)
    # V_old = 0, R = 1, eps = .2: V_clip = .2 -> max(.25, .64) / 2 = .32, and no gradient through V
    loss = clipped_value_loss(v, torch.zeros(1), torch.ones(1), 0.2)
    loss.backward()
    assert math.isclose(loss.item(), 0.32, rel_tol=1e-6) and v.grad is not None and v.grad.item() == 0.0
    # when the unclipped error is the larger one, it counts: V = -.5 -> max(2.25, .64) / 2
    assert math.isclose(clipped_value_loss(torch.tensor([-0.5]), torch.zeros(1), torch.ones(1), 0.2).item(), 1.125)
    # eps = 0 switches clipping off: plain 0.5 * MSE
    assert math.isclose(clipped_value_loss(torch.tensor([0.5]), torch.zeros(1), torch.ones(1), 0.0).item(), 0.125)


def test_approx_kl_estimates_the_true_kl():
    assert approx_kl(torch.zeros(5), torch.zeros(5)).item() == 0.0
    old, new = Normal(0.0, 1.0), Normal(0.1, 1.0)
    torch.manual_seed(0)
    a = old.sample(torch.Size([200_000]))
    est = approx_kl(new.log_prob(a), old.log_prob(a)).item()
    true = kl_divergence(old, new).item()  # 0.005
    assert abs(est - true) < 1e-3 and est >= 0


def test_gaussian_kl_matches_torch():
    g = torch.Generator().manual_seed(0)
    mp, mq = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    lp, lq = torch.randn(3, 4, generator=g) * 0.3, torch.randn(3, 4, generator=g) * 0.3
    ref = kl_divergence(Normal(mp, lp.exp()), Normal(mq, lq.exp())).sum(-1)
    torch.testing.assert_close(gaussian_kl(mp, lp, mq, lq), ref)
    assert torch.all(gaussian_kl(mp, lp, mp, lp).abs() < 1e-6)


def test_schedules_and_config_validation():
    assert linear_schedule(1.0, 0.0, 10, 0) == 1.0 and linear_schedule(1.0, 0.0, 10, 5) == 0.5
    assert linear_schedule(1.0, 0.0, 10, 50) == 0.0 and linear_schedule(1.0, 0.2, 0, 0) == 0.2
    for bad in ({"reward": "shaped"}, {"std_min": 2.0}, {"start_method": "fork"}, {"num_minibatches": 10_000}):
        try:
            PPOConfig(**bad)
        except ValueError as e:
            assert "algo." in str(e)
        else:
            raise AssertionError(f"PPOConfig accepted {bad}")
