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
