"""GAE against hand-computed numbers, including bootstrapping on truncation and cutting on termination."""

from __future__ import annotations

import torch

from robo_hybrid.rl.storage import RolloutStorage, RunningMeanStd, compute_gae

GAMMA, LAM = 0.9, 0.8


def _gae(rewards, values, last, terminated, truncated, final):
    t = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    return compute_gae(t(rewards), t(values), t(last), t(terminated), t(truncated), t(final), GAMMA, LAM)


def test_gae_without_episode_end():
    # delta_2 = 2 + .9*.2 - .3 = 1.88; delta_1 = 0 + .9*.3 - .4 = -.13; delta_0 = 1 + .9*.4 - .5 = .86
    # A_2 = 1.88; A_1 = -.13 + .72 * 1.88 = 1.2236; A_0 = .86 + .72 * 1.2236 = 1.740992
    adv, ret = _gae([[1.0], [0.0], [2.0]], [[0.5], [0.4], [0.3]], [0.2], [[0], [0], [0]], [[0], [0], [0]],
                    [[0], [0], [0]])
    torch.testing.assert_close(adv[:, 0], torch.tensor([1.740992, 1.2236, 1.88]))
    torch.testing.assert_close(ret[:, 0], torch.tensor([2.240992, 1.6236, 2.18]))


def test_truncation_bootstraps_with_the_final_observation_value():
    # step 1 hits the time limit; V(final obs) = 5 continues the return, the recursion is cut there.
    # delta_2 = 0 + .9*4 - 3 = .6; delta_1 = 1 + .9*5 - 2 = 3.5; delta_0 = 0 + .9*2 - 1 = .8
    # A_2 = .6; A_1 = 3.5 (not + .72 * .6: the next step is a new episode); A_0 = .8 + .72 * 3.5 = 3.32
    adv, ret = _gae([[0.0], [1.0], [0.0]], [[1.0], [2.0], [3.0]], [4.0], [[0], [0], [0]], [[0], [1], [0]],
                    [[0], [5.0], [0]])
    torch.testing.assert_close(adv[:, 0], torch.tensor([3.32, 3.5, 0.6]))
    torch.testing.assert_close(ret[:, 0], torch.tensor([4.32, 5.5, 3.6]))


def test_termination_does_not_bootstrap():
    # same data, but step 1 terminates: delta_1 = 1 - 2 = -1 (the final value is ignored); A_0 = .8 - .72 = .08
    adv, _ = _gae([[0.0], [1.0], [0.0]], [[1.0], [2.0], [3.0]], [4.0], [[0], [1], [0]], [[0], [0], [0]],
                  [[0], [5.0], [0]])
    torch.testing.assert_close(adv[:, 0], torch.tensor([0.08, -1.0, 0.6]))


def test_terminated_and_truncated_on_the_same_step_counts_as_terminal():
    adv, _ = _gae([[1.0]], [[0.5]], [9.0], [[1]], [[1]], [[7.0]])
    torch.testing.assert_close(adv[:, 0], torch.tensor([0.5]))  # r - V(s), no bootstrap at all


def test_envs_are_independent_and_storage_matches_the_function():
    T, N = 4, 2
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.rand(T, N, generator=g), torch.rand(T, N, generator=g)
    term = torch.tensor([[0, 0], [1, 0], [0, 0], [0, 0]], dtype=torch.float32)
    trunc = torch.tensor([[0, 0], [0, 0], [0, 1], [0, 0]], dtype=torch.float32)
    final = torch.rand(T, N, generator=g)
    last = torch.rand(N, generator=g)
    adv, _ = compute_gae(rewards, values, last, term, trunc, final, GAMMA, LAM)
    for n in range(N):  # column by column gives the same numbers
        a1, _ = compute_gae(rewards[:, n:n + 1], values[:, n:n + 1], last[n:n + 1], term[:, n:n + 1],
                            trunc[:, n:n + 1], final[:, n:n + 1], GAMMA, LAM)
        torch.testing.assert_close(adv[:, n], a1[:, 0])
    st = RolloutStorage(T, N, {"proprio": torch.zeros(N, 3).numpy()}, action_dim=2)
    for t in range(T):
        st.add({"proprio": torch.zeros(N, 3)}, torch.zeros(N, 2), torch.zeros(N), values[t], rewards[t], term[t],
               trunc[t], final[t])
    st.compute_returns(last, GAMMA, LAM)
    torch.testing.assert_close(st.advantages, adv)
    batches = list(st.minibatches(num_minibatches=2, num_epochs=1))
    assert len(batches) == 2 and batches[0]["advantages"].shape == (4,)
    assert sorted(torch.cat([b["advantages"] for b in batches]).tolist()) == sorted(adv.flatten().tolist())


def test_running_mean_std_matches_numpy():
    rms = RunningMeanStd(())
    x = torch.randn(1000, dtype=torch.float64) * 3 + 2
    for chunk in x.split(137):
        rms.update(chunk)
    assert abs(float(rms.mean) - float(x.mean())) < 1e-3 and abs(float(rms.std) - float(x.std())) < 1e-2
