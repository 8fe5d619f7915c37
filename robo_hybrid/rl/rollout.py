"""Vectorized rollouts: env construction (workers render), observation history, step-info parsing, episodes.

Training envs use gymnasium's SAME_STEP autoreset: when step t ends an episode the returned observation already
belongs to the next episode, and the last observation of the finished one is in `info["final_obs"]` (needed to
bootstrap truncated episodes). Evaluation envs use DISABLED autoreset and are reset one by one onto fixed seeds.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from robo_hybrid.envs import EnvConfig, make_env

HISTORY_MASK_KEY = "history_mask"  # same name as robo_hybrid.policy.HISTORY_MASK_KEY (kept torch-free here)


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


def stack_final_obs(info: dict, done: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Indices of the envs whose episode ended and their final observations stacked (M, ...)."""
    idx = np.flatnonzero(done)
    if len(idx) == 0:
        return idx, {}
    finals = info["final_obs"]
    return idx, {k: np.stack([finals[i][k] for i in idx]) for k in finals[idx[0]]}


def step_outcome(info: dict, done: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-env success flag and named reward terms of the step just taken (from final_info where it ended)."""
    n = len(done)
    success = np.asarray(info.get("is_success", np.zeros(n, bool)), bool).copy()
    terms = {k: np.asarray(v, np.float64).copy() for k, v in info.get("reward_terms", {}).items()
             if not k.startswith("_")}
    final = info.get("final_info")
    if final is not None and np.any(done):
        success[done] = np.asarray(final["is_success"], bool)[done]
        for k, v in final.get("reward_terms", {}).items():
            if k.startswith("_"):
                continue
            terms.setdefault(k, np.zeros(n))[done] = np.asarray(v, np.float64)[done]
    return success, terms


@dataclass
class EpisodeTracker:
    """Running return / length per env and the finished episodes' statistics since the last `pop`."""

    num_envs: int
    returns: np.ndarray = field(init=False)
    lengths: np.ndarray = field(init=False)
    succeeded: np.ndarray = field(init=False)
    finished: list[tuple[float, int, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.returns = np.zeros(self.num_envs)
        self.lengths = np.zeros(self.num_envs, int)
        self.succeeded = np.zeros(self.num_envs, bool)

    def step(self, rewards: np.ndarray, done: np.ndarray, success: np.ndarray) -> None:
        """Accumulate one step; record the episodes that ended (successful if any step was)."""
        self.returns += rewards
        self.lengths += 1
        self.succeeded |= np.asarray(success, bool)
        for i in np.flatnonzero(done):
            self.finished.append((float(self.returns[i]), int(self.lengths[i]), bool(self.succeeded[i])))
            self.returns[i], self.lengths[i], self.succeeded[i] = 0.0, 0, False

    def pop(self) -> dict[str, float]:
        """Mean return, length and success of the finished episodes (empty dict if none), then forget them."""
        if not self.finished:
            return {}
        r, n, s = (np.asarray(x, float) for x in zip(*self.finished, strict=True))
        self.finished = []
        return {"episode_return": r.mean(), "episode_length": n.mean(), "success_rate": s.mean(),
                "episodes": float(len(r))}

