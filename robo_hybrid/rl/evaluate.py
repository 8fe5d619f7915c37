"""Episodes on fixed seeds: held-out evaluation of a policy and recording of rollouts (reward-model negatives)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from robo_hybrid.evaluate import wilson_interval
from robo_hybrid.policy import MultimodalPolicy

from .rollout import HistoryStacker

ActFn = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass
class EpisodeRecord:
    """One finished episode; `obs` holds the recorded keys (T, ...) observed before each action."""

    seed: int
    ret: float
    length: int
    success: bool
    obs: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class EvalResult:
    """Held-out evaluation figures."""

    success_rate: float
    ci95_low: float
    ci95_high: float
    mean_return: float
    mean_length: float
    episodes: int
    first_seed: int

    def as_dict(self) -> dict[str, float]:
        """Scalars for logging."""
        return {"success_rate": self.success_rate, "success_ci95_low": self.ci95_low,
                "success_ci95_high": self.ci95_high, "episode_return": self.mean_return,
                "episode_length": self.mean_length}


def policy_act_fn(policy: MultimodalPolicy, deterministic: bool = True,
                  device: str | torch.device = "cpu") -> ActFn:
    """numpy obs (policy keys, stacked when history > 1) -> clipped actions (N, A) from the policy."""
    keys = tuple(policy.spec.policy_keys) + (("history_mask",) if policy.cfg.history > 1 else ())

    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        policy.eval()
        t = {k: torch.as_tensor(obs[k], device=device) for k in keys}
        return policy.act(t, deterministic=deterministic).cpu().numpy().astype(np.float32)

    return act


def run_episodes(envs: gym.vector.VectorEnv, act: ActFn, seeds: list[int], history: int, policy_keys: tuple[str, ...],
                 record_keys: tuple[str, ...] = ()) -> list[EpisodeRecord]:
    """One episode per seed on a vector env built with autoreset='disabled'; results in seed order."""
    n, queue = envs.num_envs, list(seeds)
    env_seed: list[int | None] = [queue.pop(0) if queue else None for _ in range(n)]
    obs, _ = envs.reset(seed=env_seed)  # pyright: ignore[reportArgumentType]  (vector envs take a list)
    stacker = HistoryStacker(history, policy_keys)
    stacker.reset(obs)
    active = np.array([s is not None for s in env_seed])
    ret, length, succ = np.zeros(n), np.zeros(n, int), np.zeros(n, bool)
    rec: list[dict[str, list]] = [{k: [] for k in record_keys} for _ in range(n)]
    out: dict[int, EpisodeRecord] = {}
    while active.any():
        for i in np.flatnonzero(active):
            for k in record_keys:
                rec[i][k].append(obs[k][i])
        actions = act(stacker.current())
        obs, reward, terminated, truncated, info = envs.step(actions)
        done = np.logical_or(terminated, truncated)
        stacker.push(obs, np.zeros(n, bool))
        ret += np.where(active, reward, 0.0)
        length += active
        succ |= np.asarray(info["is_success"], bool)
        if not done.any():
            continue
        next_seeds: list[int | None] = [None] * n
        for i in np.flatnonzero(done):
            if active[i]:
                s = env_seed[i]
                assert s is not None
                out[s] = EpisodeRecord(s, float(ret[i]), int(length[i]), bool(succ[i]),
                                       {k: np.stack(v) for k, v in rec[i].items() if v})
            env_seed[i] = queue.pop(0) if queue else None
            next_seeds[i] = env_seed[i]
            active[i] = env_seed[i] is not None
            ret[i], length[i], succ[i], rec[i] = 0.0, 0, False, {k: [] for k in record_keys}
        # DISABLED autoreset: finished envs must be reset before the next step (idle ones get seed None)
        obs, _ = envs.reset(seed=next_seeds, options={"reset_mask": done})  # pyright: ignore[reportArgumentType]
        stacker.restart(obs, done)
    return [out[s] for s in seeds]


def evaluate_policy(policy: MultimodalPolicy, envs: gym.vector.VectorEnv, episodes: int,
                    seed_offset: int = 1_000_000, device: str | torch.device = "cpu") -> EvalResult:
    """Deterministic (mean-action) success rate with a 95% Wilson interval on seeds seed_offset + i."""
    seeds = [seed_offset + i for i in range(episodes)]
    act = policy_act_fn(policy, deterministic=True, device=device)
    recs = run_episodes(envs, act, seeds, policy.cfg.history, tuple(policy.spec.policy_keys))
    wins = sum(r.success for r in recs)
    low, high = wilson_interval(wins, len(recs))
    return EvalResult(wins / len(recs), low, high, float(np.mean([r.ret for r in recs])),
                      float(np.mean([r.length for r in recs])), len(recs), seeds[0])
