"""The episode runner: each seed gives the same episode whatever the number of envs, as a plain env loop does."""

from __future__ import annotations

import numpy as np
import torch

from robo_hybrid.envs import EnvConfig, make_env
from robo_hybrid.envs.vector import make_vector_env
from robo_hybrid.evaluation import Evaluator, policy_act_fn, run_episodes
from robo_hybrid.policy import MultimodalPolicy

ENV = EnvConfig(image_size=32, episode_steps=7, reward="dense")
SEEDS = [1_000_000, 1_000_001, 1_000_002]


def test_episodes_are_reproducible_per_seed(tiny_policy_cfg):
    torch.manual_seed(0)
    env = make_env("push", ENV)
    policy = MultimodalPolicy(tiny_policy_cfg, env.unwrapped.io_spec).eval()
    act = policy_act_fn(policy)
    reference = []
    for s in SEEDS:  # the plain single-env loop
        obs, _ = env.reset(seed=s)
        ret, done, n = 0.0, False, 0
        while not done:
            obs, r, term, trunc, _ = env.step(act({k: obs[k][None] for k in policy.spec.policy_keys})[0])
            ret, done, n = ret + r, term or trunc, n + 1
        reference.append((ret, n))
    env.close()
    for num_envs in (1, 2):
        envs = make_vector_env("push", ENV, num_envs, "sync", autoreset="disabled")
        try:
            recs = run_episodes(envs, act, SEEDS, 1, tuple(policy.spec.policy_keys), record_keys=("privileged",))
        finally:
            envs.close()
        with Evaluator("push", ENV, 3, seed_base=SEEDS[0], num_envs=num_envs, vector_env="sync") as ev:
            res = ev(policy)
        assert [r.seed for r in recs] == SEEDS
        np.testing.assert_allclose([r.ret for r in recs], [r for r, _ in reference], rtol=1e-5)
        assert [r.length for r in recs] == [n for _, n in reference]
        assert recs[0].obs["privileged"].shape == (reference[0][1], 13)
        assert res.seeds == SEEDS
        assert np.isclose(res.episode_return, np.mean([r for r, _ in reference]), rtol=1e-5)
        assert res.episode_length == np.mean([n for _, n in reference])


def test_action_noise_perturbs_the_mean_action_by_its_std_and_repeats(tiny_policy_cfg, tmp_path):
    """eval.action_noise: mean + N(0, sigma^2) in normalized units, the same noise for the same call sequence."""
    import json

    torch.manual_seed(0)
    env = make_env("push", ENV)
    policy = MultimodalPolicy(tiny_policy_cfg, env.unwrapped.io_spec).eval()
    obs, _ = env.reset(seed=SEEDS[0])
    env.close()
    batch = {k: np.repeat(obs[k][None], 4000, axis=0) for k in policy.spec.policy_keys}
    mean = policy_act_fn(policy)(batch)
    noisy, again = policy_act_fn(policy, action_noise=0.05)(batch), policy_act_fn(policy, action_noise=0.05)(batch)
    np.testing.assert_array_equal(noisy, again)
    scale = policy.unnormalize_action(torch.ones(1, policy.action_dim)) - policy.unnormalize_action(
        torch.zeros(1, policy.action_dim))  # actuator units per normalized unit
    lo, hi = policy.action_low.numpy(), policy.action_high.numpy()
    inside = np.all((noisy > lo + 1e-6) & (noisy < hi - 1e-6), axis=0)  # dims the clip leaves alone
    z = (noisy - mean) / scale.numpy()
    assert inside.any()
    np.testing.assert_allclose(z.std(0)[inside], 0.05, rtol=0.1)
    np.testing.assert_allclose(z.mean(0)[inside], 0.0, atol=0.005)
    with Evaluator("push", ENV, 3, seed_base=SEEDS[0], num_envs=1, vector_env="sync") as ev:
        clean = ev(policy)
        rep = ev(policy, action_noise=0.5, report_path=tmp_path / "eval.json")
    assert clean.action_noise == 0.0 and rep.action_noise == 0.5 and "action noise 0.5" in rep.line()
    assert rep.episode_return != clean.episode_return  # dense return: noisy actions take another path
    assert json.loads((tmp_path / "eval.json").read_text())["action_noise"] == 0.5
