"""Vector envs of our tasks (workers render; spawn / forkserver only) and the observation-history window.

Torch-free: used by PPO rollouts, by evaluation and by the reward model's recordings.
"""

from __future__ import annotations

import functools
from dataclasses import asdict

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from robo_hybrid.constants import HISTORY_MASK_KEY

from . import EnvConfig, make_env


def _env_from_dict(task: str, env_cfg: dict) -> gym.Env:
    """Worker-side constructor (picklable through functools.partial); the worker owns the renderer."""
    return make_env(task, cfg=EnvConfig(**env_cfg))


def make_vector_env(task: str, env_cfg: EnvConfig, num_envs: int, vector_env: str = "async",
                    start_method: str = "forkserver", autoreset: str = "same_step") -> gym.vector.VectorEnv:
    """`num_envs` copies of a task; 'async' runs each in a spawn / forkserver worker process (never fork)."""
    if start_method not in ("spawn", "forkserver"):
        raise ValueError(f"start_method={start_method!r}: use 'spawn' or 'forkserver' (fork breaks GL contexts)")
    mode = {"same_step": AutoresetMode.SAME_STEP, "disabled": AutoresetMode.DISABLED}[autoreset]
    fns = [functools.partial(_env_from_dict, task, asdict(env_cfg)) for _ in range(num_envs)]
    if vector_env == "sync":
        return SyncVectorEnv(fns, autoreset_mode=mode)
    return AsyncVectorEnv(fns, context=start_method, autoreset_mode=mode, shared_memory=True)


class HistoryStacker:
    """Keeps the last K observations of each env: (N, K, ...) arrays, newest last, plus a (N, K) validity mask.

    At an episode start the window is filled with copies of the first observation, marked invalid except the
    newest. With K = 1 and `always_stack=False` observations pass through unchanged (no K axis, no mask).
    """

    def __init__(self, history: int, keys: tuple[str, ...], always_stack: bool = False) -> None:
        self.K, self.keys, self.stack = int(history), tuple(keys), bool(always_stack or history > 1)
        self.buf: dict[str, np.ndarray] = {}
        self.mask = np.zeros((0, self.K), bool)

    def reset(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Start every env's window from `obs` (N, ...)."""
        if not self.stack:
            self.buf = {k: np.asarray(obs[k]) for k in self.keys}
            return self.current()
        n = len(obs[self.keys[0]])
        self.buf = {k: np.repeat(np.asarray(obs[k])[:, None], self.K, axis=1) for k in self.keys}  # (N, K, ...)
        self.mask = np.zeros((n, self.K), bool)
        self.mask[:, -1] = True
        return self.current()

    def restart(self, obs: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
        """Restart the windows of the envs in `mask` from `obs` (N, ...); the other envs are left as they are."""
        mask = np.asarray(mask, bool)
        if not self.stack:
            for k in self.keys:
                self.buf[k] = self.buf[k].copy()
                self.buf[k][mask] = np.asarray(obs[k])[mask]
            return self.current()
        for k in self.keys:
            self.buf[k][mask] = np.repeat(np.asarray(obs[k])[mask][:, None], self.K, axis=1)
        self.mask[mask] = False
        self.mask[mask, -1] = True
        return self.current()

    def push(self, obs: dict[str, np.ndarray], new_episode: np.ndarray) -> dict[str, np.ndarray]:
        """Append the next observation of each env; envs with `new_episode` restart their window."""
        if not self.stack:
            return self.reset(obs)
        new_episode = np.asarray(new_episode, bool)
        for k in self.keys:
            x = np.asarray(obs[k])
            b = np.roll(self.buf[k], -1, axis=1)  # (N, K, ...): drop the oldest frame
            b[:, -1] = x
            b[new_episode] = np.repeat(x[new_episode][:, None], self.K, axis=1)
            self.buf[k] = b
        self.mask = np.roll(self.mask, -1, axis=1)
        self.mask[:, -1] = True
        self.mask[new_episode] = False
        self.mask[new_episode, -1] = True
        return self.current()

    def peek(self, obs: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
        """Windows of envs `idx` with `obs` (M, ...) appended, without changing the state (final observations)."""
        if not self.stack:
            return {k: np.asarray(obs[k]) for k in self.keys}
        out = {}
        for k in self.keys:
            b = np.roll(self.buf[k][idx], -1, axis=1)
            b[:, -1] = np.asarray(obs[k])
            out[k] = b
        m = np.roll(self.mask[idx], -1, axis=1)
        m[:, -1] = True
        out[HISTORY_MASK_KEY] = m
        return out

    def current(self) -> dict[str, np.ndarray]:
        """The windows (N, K, ...) plus `history_mask` (N, K), or the plain observations when not stacking."""
        out = dict(self.buf)
        if self.stack:
            out[HISTORY_MASK_KEY] = self.mask.copy()
        return out
