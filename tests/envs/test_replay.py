"""FailureReplay: failed seeds come back, solved or exhausted ones leave, fresh seeds avoid evaluation seeds."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from robo_hybrid.constants import HELD_OUT_SEED_BASE
from robo_hybrid.envs.replay import FRESH_SEED_LOW, FailureReplay


class OneStepEnv(gym.Env):
    """Every episode is one step; it succeeds unless its seed is in `failing` (or the action asks to fail)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float64)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def __init__(self, failing: set[int] | None = None) -> None:
        self.failing = failing if failing is not None else set()
        self.seed_now = -1

    def reset(self, *, seed=None, options=None):
        assert seed is not None, "FailureReplay must always reset with a seed"
        super().reset(seed=seed)
        self.seed_now = seed
        return np.array([float(seed)]), {}

    def step(self, action):
        ok = self.seed_now not in self.failing and float(action[0]) > -0.5
        return np.array([float(self.seed_now)]), float(ok), True, False, {"is_success": ok}


def run_episode(env: FailureReplay, fail: bool = False, seed: int | None = None) -> dict:
    _, info = env.reset(seed=seed)
    env.step(np.array([-1.0 if fail else 1.0], np.float32))
    return info


def test_failed_seed_is_replayed_until_solved():
    env = FailureReplay(OneStepEnv(), prob=1.0)
    first = run_episode(env, fail=True, seed=7)
    assert first == {"episode_seed": 7, "replayed": False}
    assert env.failed == {7: 0}
    again = run_episode(env)  # prob 1: the only failed seed comes back
    assert again == {"episode_seed": 7, "replayed": True}
    assert env.failed == {}  # solved this time: it leaves the buffer
    fresh = run_episode(env)
    assert not fresh["replayed"] and fresh["episode_seed"] >= FRESH_SEED_LOW


def test_unsolvable_seed_leaves_after_max_tries():
    env = FailureReplay(OneStepEnv(failing={3}), prob=1.0, max_tries=2)
    run_episode(env, seed=3)
    seeds = [run_episode(env)["episode_seed"] for _ in range(4)]
    assert seeds[:2] == [3, 3]  # replayed twice, failing both times
    assert 3 not in seeds[2:] and env.failed == {}


def test_capacity_drops_the_oldest_failure():
    env = FailureReplay(OneStepEnv(), prob=0.0, capacity=2)
    for s in (1, 2, 3):
        run_episode(env, fail=True, seed=s)
    assert list(env.failed) == [2, 3]


def test_prob_zero_never_replays_and_fresh_seeds_miss_evaluation_seeds():
    env = FailureReplay(OneStepEnv(), prob=0.0)
    run_episode(env, fail=True, seed=11)
    infos = [run_episode(env) for _ in range(200)]
    assert not any(i["replayed"] for i in infos)
    seeds = [i["episode_seed"] for i in infos]
    assert len(set(seeds)) == 200
    assert min(seeds) >= FRESH_SEED_LOW > HELD_OUT_SEED_BASE + 100_000


def test_same_seed_same_choices():
    def seeds(start):
        env = FailureReplay(OneStepEnv(), prob=0.5)
        run_episode(env, seed=start)
        return [run_episode(env, fail=i % 3 == 0)["episode_seed"] for i in range(30)]

    assert seeds(5) == seeds(5)
    assert seeds(5) != seeds(6)


def test_replay_fraction_follows_prob_when_failures_are_available():
    env = FailureReplay(OneStepEnv(), prob=0.3, capacity=10_000, max_tries=10_000)
    run_episode(env, fail=True, seed=0)
    replayed = [run_episode(env, fail=True)["replayed"] for _ in range(2000)]  # every episode fails
    assert abs(np.mean(replayed) - 0.3) < 0.04


def test_autoreset_reports_where_the_next_episode_comes_from():
    """Through a SAME_STEP vector env (as in PPO rollouts) the reset info of the new episode is in the step's info."""
    envs = SyncVectorEnv([lambda: FailureReplay(OneStepEnv(), prob=1.0) for _ in range(2)],
                         autoreset_mode=AutoresetMode.SAME_STEP)
    envs.reset(seed=100)
    _, _, _, _, info = envs.step(np.array([[-1.0], [1.0]], np.float32))  # env 0 fails, env 1 succeeds
    assert info["replayed"].tolist() == [True, False]
    assert info["episode_seed"][0] == 100
    assert info["final_info"]["is_success"].tolist() == [False, True]
    envs.close()


@pytest.mark.parametrize("prob", [-0.1, 1.5])
def test_bad_probability_is_refused(prob):
    with pytest.raises(ValueError, match="probability"):
        FailureReplay(OneStepEnv(), prob=prob)
