"""The one episode runner: one episode per seed over a vector env (in-process, or one worker process per env).

Policy inference is batched in the calling process while the env workers step and render in parallel. Every
evaluation (BC training, `eval`, PPO, the ablation, `bench learn`) and the reward model's rollout recording
go through `run_episodes`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from robo_hybrid.constants import HISTORY_MASK_KEY
from robo_hybrid.envs.vector import HistoryStacker

from .video import video_frame

ActFn = Callable[[dict[str, np.ndarray]], np.ndarray]
"""Batched numpy observations (N, ...) -> actions (N, A)."""


@dataclass
class EpisodeRecord:
    """One finished episode; `obs` holds the recorded keys (T, ...) observed before each action."""

    seed: int
    ret: float
    length: int
    success: bool
    obs: dict[str, np.ndarray] = field(default_factory=dict)
    frames: list[np.ndarray] = field(default_factory=list)


def policy_act_fn(policy, deterministic: bool = True, device: str | torch.device = "cpu",
                  action_noise: float = 0.0, noise_seed: int = 0) -> ActFn:
    """numpy obs (policy keys, stacked when history > 1) -> clipped actions (N, A) of a MultimodalPolicy (or a
    residual one); `action_noise` > 0 adds N(0, action_noise^2) per dim to the mean action in normalized units
    (its own generator, seeded by `noise_seed`: the same episodes get the same noise)."""
    keys = tuple(policy.spec.policy_keys) + ((HISTORY_MASK_KEY,) if policy.cfg.history > 1 else ())
    gen = torch.Generator(device=device).manual_seed(noise_seed) if action_noise > 0 else None

    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        policy.eval()
        with torch.no_grad():
            t = {k: torch.as_tensor(obs[k], device=device) for k in keys}
            if gen is None:
                return policy.act(t, deterministic=deterministic).cpu().numpy().astype(np.float32)
            mean = policy(t).mean
            noisy = mean + action_noise * torch.randn(mean.shape, generator=gen, device=mean.device)
            return policy.clip_action(policy.unnormalize_action(noisy)).cpu().numpy().astype(np.float32)

    return act


def run_episodes(envs: gym.vector.VectorEnv, act: ActFn, seeds: list[int], history: int, policy_keys: tuple[str, ...],
                 record_keys: tuple[str, ...] = (), video_seeds: tuple[int, ...] = (),
                 on_episode: Callable[[EpisodeRecord], None] | None = None) -> list[EpisodeRecord]:
    """One episode per seed on a vector env built with autoreset='disabled'; results in seed order.

    `record_keys` are stored per step in EpisodeRecord.obs; episodes whose seed is in `video_seeds` keep video
    frames (camera image + action bars); `on_episode` is called as each episode finishes (progress bars).
    """
    n, queue = envs.num_envs, list(seeds)
    env_seed: list[int | None] = [queue.pop(0) if queue else None for _ in range(n)]
    obs, _ = envs.reset(seed=env_seed)  # pyright: ignore[reportArgumentType]  (vector envs take a list)
    stacker = HistoryStacker(history, policy_keys)
    stacker.reset(obs)
    active = np.array([s is not None for s in env_seed])
    ret, length, succ = np.zeros(n), np.zeros(n, int), np.zeros(n, bool)
    rec: list[dict[str, list]] = [{k: [] for k in record_keys} for _ in range(n)]
    frames: list[list[np.ndarray]] = [[] for _ in range(n)]
    out: dict[int, EpisodeRecord] = {}
    while active.any():
        for i in np.flatnonzero(active):
            for k in record_keys:
                rec[i][k].append(obs[k][i])
        actions = act(stacker.current())
        for i in np.flatnonzero(active):
            if env_seed[i] in video_seeds:
                frames[i].append(video_frame(obs["image"][i], actions[i]))
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
                                       {k: np.stack(v) for k, v in rec[i].items() if v}, frames[i])
                if on_episode is not None:
                    on_episode(out[s])
            env_seed[i] = queue.pop(0) if queue else None
            next_seeds[i] = env_seed[i]
            active[i] = env_seed[i] is not None
            ret[i], length[i], succ[i], rec[i], frames[i] = 0.0, 0, False, {k: [] for k in record_keys}, []
        # DISABLED autoreset: finished envs must be reset before the next step (idle ones get seed None)
        obs, _ = envs.reset(seed=next_seeds, options={"reset_mask": done})  # pyright: ignore[reportArgumentType]
        stacker.restart(obs, done)
    return [out[s] for s in seeds]
