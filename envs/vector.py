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
from .replay import FailureReplay


def _env_from_dict(task: str, env_cfg: dict, failure_replay: float = 0.0) -> gym.Env:
    """Worker-side constructor (picklable through functools.partial); the worker owns the renderer."""
    env = make_env(task, cfg=EnvConfig(**env_cfg))
    return FailureReplay(env, failure_replay) if failure_replay > 0 else env


def make_vector_env(task: str, env_cfg: EnvConfig, num_envs: int, vector_env: str = "async",
                    start_method: str = "forkserver", autoreset: str = "same_step",
                    failure_replay: float = 0.0) -> gym.vector.VectorEnv:
    """`num_envs` copies of a task; 'async' runs each in a spawn / forkserver worker process (never fork).
    failure_replay > 0 wraps each env in FailureReplay (training resets return to failed seeds)."""
    if start_method not in ("spawn", "forkserver"):
        raise ValueError(f"start_method={start_method!r}: use 'spawn' or 'forkserver' (fork breaks GL contexts)")
    mode = {"same_step": AutoresetMode.SAME_STEP, "disabled": AutoresetMode.DISABLED}[autoreset]
    fns = [functools.partial(_env_from_dict, task, asdict(env_cfg), failure_replay) for _ in range(num_envs)]
    if vector_env == "sync":
        return SyncVectorEnv(fns, autoreset_mode=mode)
    return AsyncVectorEnv(fns, context=start_method, autoreset_mode=mode, shared_memory=True)


def make_grouped_vector_env(task: str, env_cfg: EnvConfig, num_envs: int, groups: int, vector_env: str = "async",
                            start_method: str = "forkserver", failure_replay: float = 0.0) -> gym.vector.VectorEnv:
    """`num_envs` envs in `groups` vector envs whose sizes differ by at most one (one vector env when groups == 1
    or num_envs == 1), so a caller can compute one group's next actions while the other groups' workers step."""
    if groups < 1 or num_envs < 1:
        raise ValueError(f"num_envs={num_envs} and env_groups={groups} must be >= 1")
    groups = min(groups, num_envs)
    if groups == 1:
        return make_vector_env(task, env_cfg, num_envs, vector_env, start_method, failure_replay=failure_replay)
    sizes = [num_envs // groups + (i < num_envs % groups) for i in range(groups)]
    parts: list[gym.vector.VectorEnv] = []
    try:
        for size in sizes:
            parts.append(make_vector_env(task, env_cfg, size, vector_env, start_method, failure_replay=failure_replay))
    except BaseException:
        for part in parts:
            part.close()
        raise
    return GroupedVectorEnv(parts)


class GroupedVectorEnv(gym.vector.VectorEnv):
    """Several vector envs behind one VectorEnv API (observations, rewards and infos concatenated in group
    order; env i of group g is env g * size + i). `send` / `recv` step one group at a time (pipelined stepping);
    `step` runs every group at once, as one vector env would."""

    def __init__(self, groups: list[gym.vector.VectorEnv]) -> None:
        first = groups[0]
        self.groups = groups
        self.sizes = [g.num_envs for g in groups]
        self.num_envs = sum(self.sizes)
        self.single_observation_space = first.single_observation_space
        self.single_action_space = first.single_action_space
        self.observation_space = gym.vector.utils.batch_space(first.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(first.single_action_space, self.num_envs)
        self.metadata = first.metadata
        self.render_mode = first.render_mode
        self.closed = False
        self._pending: dict[int, tuple] = {}

    def slices(self) -> list[slice]:
        """Env index range of each group."""
        starts = np.cumsum([0, *self.sizes])
        return [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:], strict=True)]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Reset every group at once; with a seed, env k of the whole set gets seed + k (as in one vector env)."""
        seeds = [None if seed is None else seed + sl.start for sl in self.slices()]
        if all(hasattr(g, "reset_async") for g in self.groups):
            for g, s in zip(self.groups, seeds, strict=True):
                g.reset_async(seed=s, options=options)  # type: ignore[attr-defined]
            results = [g.reset_wait() for g in self.groups]  # type: ignore[attr-defined]
        else:
            results = [g.reset(seed=s, options=options) for g, s in zip(self.groups, seeds, strict=True)]
        return _concat_obs([r[0] for r in results]), merge_infos([r[1] for r in results], self.sizes)

    def send(self, group: int, actions: np.ndarray) -> None:
        """Start one group's step (async workers step in the background; an in-process group steps now)."""
        g = self.groups[group]
        if hasattr(g, "step_async"):
            g.step_async(actions)  # type: ignore[attr-defined]
        else:
            self._pending[group] = g.step(actions)

    def recv(self, group: int) -> tuple:
        """The step results of one group started by `send`."""
        g = self.groups[group]
        return g.step_wait() if hasattr(g, "step_async") else self._pending.pop(group)  # type: ignore[attr-defined]

    def step(self, actions: np.ndarray):
        """All groups step at once (each group's workers in parallel with the others'); results concatenated."""
        for i, sl in enumerate(self.slices()):
            self.send(i, actions[sl])
        results = [self.recv(i) for i in range(len(self.groups))]
        obs = _concat_obs([r[0] for r in results])
        rew, term, trunc = (np.concatenate([np.asarray(r[i]) for r in results]) for i in (1, 2, 3))
        return obs, rew, term, trunc, merge_infos([r[4] for r in results], self.sizes)

    def close(self, **kwargs) -> None:
        """Close every group (idempotent)."""
        if self.closed:
            return
        for g in self.groups:
            g.close()
        self.closed = True


def _concat_obs(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}


def merge_infos(infos: list[dict], sizes: list[int]) -> dict:
    """Concatenate vector-env info dicts of consecutive env groups; a key one group lacks is filled with zeros
    (None for object arrays) and its `_key` mask with False, as a single vector env would report it."""
    keys = list(dict.fromkeys(k for info in infos for k in info))
    out: dict = {}
    for k in keys:
        present = [info[k] for info in infos if k in info]
        if all(isinstance(v, dict) for v in present):
            out[k] = merge_infos([info.get(k, {}) for info in infos], sizes)
            continue
        like = np.asarray(present[0])
        rows = []
        for info, n in zip(infos, sizes, strict=True):
            if k in info:
                rows.append(np.asarray(info[k]))
            else:
                fill = np.empty((n, *like.shape[1:]), dtype=like.dtype)
                fill[...] = None if like.dtype == object else 0
                rows.append(fill)
        out[k] = np.concatenate(rows)
    return out


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
