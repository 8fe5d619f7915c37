"""Failure replay: training resets that return to the initial states a policy failed from.

A strong policy fails from a few percent of initial states, and fresh seeds rarely bring those states back, so
the few situations left to learn are seen once. Prioritized level replay (Jiang et al., "Prioritized Level
Replay", ICML 2021) revisits the levels with the most to learn; here a level is a reset seed and the score is
plain failure: each env remembers the seeds its episodes failed from and, with probability `prob`, starts the
next episode from one of them instead of a fresh seed. A seed leaves the buffer when an episode from it
succeeds or after `max_tries` replays (an initial state the policy cannot solve must not take over the batch).

Runs inside each vector-env worker (no messages between learner and workers): gymnasium's autoreset calls
`reset()` without a seed, and the wrapper picks one. Every episode therefore starts from a known seed, reported
in the reset info as `episode_seed`, with `replayed` saying where it came from. Torch-free.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from robo_hybrid.constants import HELD_OUT_SEED_BASE

FRESH_SEED_LOW = 2 * HELD_OUT_SEED_BASE
"""Fresh training seeds are drawn from [FRESH_SEED_LOW, 2**31): above the demo (0..N-1) and held-out
(HELD_OUT_SEED_BASE + i) seeds, so training never resets onto an evaluation episode."""


class FailureReplay(gym.Wrapper):
    """Reset onto a failed episode's seed with probability `prob` (else a fresh seed); see the module docstring."""

    def __init__(self, env: gym.Env, prob: float, capacity: int = 32, max_tries: int = 4) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"failure replay prob={prob}: a probability in [0, 1] (0 turns replay off)")
        if capacity < 1 or max_tries < 1:
            raise ValueError(f"failure replay capacity={capacity} / max_tries={max_tries}: both must be >= 1")
        super().__init__(env)
        self.prob, self.capacity, self.max_tries = prob, capacity, max_tries
        self.failed: dict[int, int] = {}
        """Failed seed -> times replayed since it failed (insertion order = age: the oldest is dropped first)."""
        self._rng = np.random.default_rng(0)
        self._seed: int | None = None
        self._succeeded = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """An explicit seed is used as given (and seeds the choice of later ones); None picks replay or fresh."""
        replayed = False
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        elif self.failed and self._rng.random() < self.prob:
            seeds = list(self.failed)
            seed = seeds[int(self._rng.integers(len(seeds)))]
            self.failed[seed] += 1
            replayed = True
        else:
            seed = int(self._rng.integers(FRESH_SEED_LOW, 2**31))
        obs, info = self.env.reset(seed=seed, options=options)
        self._seed, self._succeeded = int(seed), False
        return obs, {**info, "episode_seed": self._seed, "replayed": replayed}

    def step(self, action):
        """Step; at the episode's end its seed joins the buffer (failure) or leaves it (success / tries used)."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._succeeded |= bool(info.get("is_success", False))
        if (terminated or truncated) and self._seed is not None:
            self._record(self._seed, self._succeeded)
        return obs, reward, terminated, truncated, info

    def _record(self, seed: int, succeeded: bool) -> None:
        tries = self.failed.pop(seed, 0)
        if succeeded or tries >= self.max_tries:
            return
        self.failed[seed] = tries  # re-inserted: now the youngest
        while len(self.failed) > self.capacity:
            del self.failed[next(iter(self.failed))]
