"""Demonstration dataset for behaviour cloning: flat (obs, action) samples with optional history and chunks.

Samples are indexed by (episode, t). With history K the observation window is t-K+1 .. t (newest last); steps
before the episode start repeat the first frame and are marked False in `history_mask`. With chunk size H the
targets are actions t .. t+H-1; steps past the episode end repeat the last action and are marked False in
`chunk_mask` (ACT's `is_pad`). Only the spec's policy keys are loaded as observations; `aux_keys` (the
privileged state) may be loaded as a training *target* under AUX_TARGET_KEY, which the policy never reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from robo_hybrid.constants import HISTORY_MASK_KEY
from robo_hybrid.envs.demos import Demos, Episode, load_demos
from robo_hybrid.policy.model import AUX_TARGET_KEY
from robo_hybrid.spec import IOSpec


class EpisodeLike(Protocol):
    """What the dataset needs from an episode (robo_hybrid.envs.demos.Episode satisfies it)."""

    obs: dict[str, np.ndarray]
    actions: np.ndarray
    success: bool


def load_demo_file(path: str | Path, expect_spec: IOSpec | None = None, only_success: bool = False) -> Demos:
    """Read and validate a demo file (robo_hybrid.envs.demos.load_demos; DemoFileError says what is wrong)."""
    return load_demos(path, expect_spec=expect_spec, only_success=only_success)


class DemoDataset(Dataset):
    """All (obs, action) samples of some episodes, stacked; `get_batch` gathers a whole batch in numpy."""

    def __init__(
        self,
        episodes: Sequence[EpisodeLike],
        obs_keys: Sequence[str],
        history: int = 1,
        chunk_size: int = 0,
        aux_keys: Sequence[str] = (),
    ) -> None:
        if not episodes:
            raise ValueError("DemoDataset needs at least one episode")
        self.obs_keys, self.history, self.chunk_size = tuple(obs_keys), int(history), int(chunk_size)
        lengths = np.array([len(ep.actions) for ep in episodes], dtype=np.int64)
        for i, ep in enumerate(episodes):
            for k in (*self.obs_keys, *aux_keys):
                if k not in ep.obs:
                    raise KeyError(f"episode {i} has no observation '{k}' (has {sorted(ep.obs)})")
                if len(ep.obs[k]) != lengths[i]:
                    raise ValueError(f"episode {i}: '{k}' has {len(ep.obs[k])} steps but {lengths[i]} actions")
        self.obs = {k: np.concatenate([ep.obs[k] for ep in episodes]) for k in self.obs_keys}
        self.aux = None  # (N, P) float32 training target, e.g. the privileged object state
        if aux_keys:
            flat = [np.concatenate([ep.obs[k].reshape(len(ep.actions), -1) for ep in episodes]) for k in aux_keys]
            self.aux = np.concatenate(flat, axis=1).astype(np.float32)
        self.actions = np.concatenate([ep.actions for ep in episodes]).astype(np.float32)
        ends = np.cumsum(lengths)
        starts = ends - lengths
        self.episode_index = np.repeat(np.arange(len(episodes)), lengths)
        self.ep_start, self.ep_end = starts[self.episode_index], ends[self.episode_index]
        self.num_episodes = len(episodes)

    def __len__(self) -> int:
        return len(self.actions)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.get_batch(np.array([i])).items()}

    def get_batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        """Samples `idx` (B,) -> obs keys (B, [K,] ...), `action` (B, A) [+ masks, `action_chunk` (B, H, A)]."""
        idx = np.asarray(idx, dtype=np.int64)
        start, end = self.ep_start[idx], self.ep_end[idx]
        batch: dict[str, torch.Tensor] = {}
        if self.history > 1:
            t = idx[:, None] + np.arange(1 - self.history, 1)[None, :]  # (B, K)
            valid = t >= start[:, None]
            t = np.maximum(t, start[:, None])
            batch[HISTORY_MASK_KEY] = torch.from_numpy(valid)
            for k in self.obs_keys:
                batch[k] = torch.from_numpy(self.obs[k][t])  # (B, K, ...)
        else:
            for k in self.obs_keys:
                batch[k] = torch.from_numpy(self.obs[k][idx])  # (B, ...)
        batch["action"] = torch.from_numpy(self.actions[idx])  # (B, A)
        if self.aux is not None:
            batch[AUX_TARGET_KEY] = torch.from_numpy(self.aux[idx])  # (B, P) target at t
        if self.chunk_size > 0:
            t = idx[:, None] + np.arange(self.chunk_size)[None, :]  # (B, H)
            batch["chunk_mask"] = torch.from_numpy(t < end[:, None])
            batch["action_chunk"] = torch.from_numpy(self.actions[np.minimum(t, end[:, None] - 1)])  # (B, H, A)
        return batch

    def stats(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Mean and std of every non-image observation and of the actions, for the policy's normalizers."""
        out = {}
        for k, v in self.obs.items():
            if v.dtype != np.uint8:
                flat = v.reshape(len(v), -1).astype(np.float64)
                out[k] = (flat.mean(0), flat.std(0))
        out["action"] = (self.actions.mean(0).astype(np.float64), self.actions.std(0).astype(np.float64))
        if self.aux is not None:
            out[AUX_TARGET_KEY] = (self.aux.mean(0).astype(np.float64), self.aux.std(0).astype(np.float64))
        return out


def split_episodes(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle episode indices and hold out floor(n * val_fraction) of them (none when n is tiny)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(np.floor(n * val_fraction)) if n >= 2 else 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def make_synthetic_demos(
    n_episodes: int = 2,
    steps: int = 12,
    image_size: int = 32,
    wrist_camera: bool = False,
    seed: int = 0,
    task: str = "push",
) -> Demos:
    """Tiny fake demos for tests: the end effector moves towards the goal; the image shows a square at the ee."""
    from robo_hybrid.envs.common import EnvConfig, build_io_spec

    env_cfg = EnvConfig(image_size=image_size, wrist_camera=wrist_camera, render=False)
    joints = tuple(f"joint{i}" for i in range(7))
    spec = build_io_spec(f"synthetic/{task}", env_cfg, joints, 0.02, (-0.5, -0.5, 0.0), (0.5, 0.5, 0.5), steps)
    rng = np.random.default_rng(seed)
    episodes = []
    for e in range(n_episodes):
        ee, goal = rng.uniform(-0.2, 0.2, 3), rng.uniform(-0.2, 0.2, 3)
        obs: dict[str, list] = {k: [] for k in (*spec.policy_keys, "privileged")}
        actions = []
        for t in range(steps):
            a = np.clip((goal - ee) / 0.05, -1, 1)
            grip = 1.0 if t < steps // 2 else -1.0
            img = np.zeros((image_size, image_size, 3), np.uint8)
            px = np.clip(((ee[:2] + 0.5) * image_size).astype(int), 0, image_size - 4)
            img[px[1] : px[1] + 4, px[0] : px[0] + 4] = (255, 128, 0)
            for k in spec.image_keys:
                obs[k].append(img)
            joint = np.concatenate([np.tile(ee, 3)[:7], np.zeros(7)])
            obs["proprio"].append(np.concatenate([joint, ee, [grip]]).astype(np.float32))
            obs["goal"].append(goal.astype(np.float32))
            obs["privileged"].append(rng.normal(size=13).astype(np.float32))
            actions.append(np.array([*a, grip], np.float32))
            ee = ee + 0.02 * a
        episodes.append(
            Episode(
                obs={k: np.stack(v) for k, v in obs.items()},
                actions=np.stack(actions),
                rewards=np.zeros(steps, np.float32),
                dones=np.arange(steps) == steps - 1,
                states=np.zeros((steps, 4), np.float64),
                seed=e,
                success=True,
            )
        )
    return Demos(spec=spec, env_config=asdict(env_cfg), task=task, episodes=episodes)
