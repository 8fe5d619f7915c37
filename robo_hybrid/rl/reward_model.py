"""Transformer progress model Phi(s) for contextual, potential-based reward shaping.

It reads a short history of the full simulator context (camera image, proprio, goal and privileged state) and
predicts task progress in [0, 1]: t / T along successful demonstrations, `failure_target` (0) along failed
rollouts. During PPO the shaping term gamma * Phi(s') - Phi(s) is added to the sparse reward (shaping.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from robo_hybrid.constants import HISTORY_MASK_KEY
from robo_hybrid.fileio import atomic_write_bytes
from robo_hybrid.policy.normalizer import Normalizer
from robo_hybrid.policy.tokenizer import ObservationTokenizer, TokenizerConfig
from robo_hybrid.policy.transformer import Encoder, init_weights
from robo_hybrid.spec import IOSpec
from robo_hybrid.training.checkpoint import upgrade_legacy_names

from .config import RewardModelConfig


@dataclass
class Trajectory:
    """Observations (T, ...) of one episode, in order, and whether it succeeded."""

    obs: dict[str, np.ndarray]
    success: bool

    def __len__(self) -> int:
        return len(next(iter(self.obs.values())))


class RewardModel(nn.Module):
    """Tokens per history step: image grid(s) + proprio + goal + privileged; time embedding; readout -> logit."""

    def __init__(self, cfg: RewardModelConfig, spec: IOSpec) -> None:
        super().__init__()
        self.cfg, self.spec, D = cfg, spec, cfg.d_model
        self.image_keys = tuple(spec.image_keys) if cfg.use_images else ()
        self.vector_keys = tuple(k for k in (*spec.policy_keys, *spec.privileged_keys) if k not in spec.image_keys)
        self.input_keys = self.image_keys + self.vector_keys
        # inputs are always windows (B, K, ...) + history_mask, even at K = 1 (the time embedding is added then)
        self.tokenizer = ObservationTokenizer(
            TokenizerConfig(d_model=D, conv_channels=cfg.conv_channels, history=cfg.history, stacked=True),
            spec, self.image_keys, self.vector_keys,
            make_normalizer=lambda d: Normalizer((d,), 1e-2, 10.0),  # fitted on the training trajectories
        )
        self.encoder = Encoder(D, cfg.n_layers, cfg.n_heads, 4, 0.0)
        self.head = nn.Linear(D, 1)
        init_weights(self, cfg.init_std, cfg.n_layers)
        self.tokenizer.init_embeddings(cfg.init_std)

    def fit_normalizers(self, trajectories: list[Trajectory]) -> None:
        """Vector-input statistics from training trajectories."""
        for k, norm in self.tokenizer.normalizers.items():
            norm.fit(np.concatenate([t.obs[k] for t in trajectories]))  # type: ignore[operator]

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """obs[k]: (B, K, ...) windows, newest last, + `history_mask` (B, K) -> progress logit (B,)."""
        tokens, key_mask = self.tokenizer(obs)  # (B, T, D), (B, T) or None
        h = self.encoder(tokens, key_mask)[:, 0]  # (B, D)
        return self.head(h).squeeze(-1)  # (B,)

    @torch.no_grad()
    def progress(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Predicted progress in [0, 1] (B,)."""
        return torch.sigmoid(self(obs))

    @torch.no_grad()
    def potential(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Phi(s) = shaping_scale * progress (B,)."""
        return self.cfg.shaping_scale * self.progress(obs)


# ----------------------------------------------------------------------------------------------- data
def progress_targets(length: int, success: bool, failure_target: float = 0.0) -> np.ndarray:
    """(t + 1) / T along a successful episode, `failure_target` along a failed one."""
    if success:
        return (np.arange(length, dtype=np.float32) + 1.0) / length
    return np.full(length, failure_target, np.float32)


class WindowDataset:
    """All (history window, progress target) pairs of a list of trajectories, as flat arrays + start offsets."""

    def __init__(self, trajectories: list[Trajectory], keys: tuple[str, ...], history: int,
                 failure_target: float = 0.0) -> None:
        if not trajectories:
            raise ValueError("no trajectories to train the reward model on")
        self.keys, self.K = keys, history
        self.data = {k: np.concatenate([t.obs[k] for t in trajectories]) for k in keys}
        lengths = [len(t) for t in trajectories]
        self.starts = np.repeat(np.cumsum([0, *lengths[:-1]]), lengths)  # (N,) episode start of each sample
        self.targets = np.concatenate([progress_targets(len(t), t.success, failure_target) for t in trajectories])
        success = np.repeat([t.success for t in trajectories], lengths)
        # balance successful and failed samples so that a few negatives still count
        n_pos, n_neg = int(success.sum()), int((~success).sum())
        w = np.where(success, 0.5 / max(n_pos, 1), 0.5 / max(n_neg, 1)) if n_pos and n_neg else np.ones(len(success))
        self.weights = (w / w.mean()).astype(np.float32)

    def __len__(self) -> int:
        return len(self.targets)

    def batch(self, idx: np.ndarray) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Windows ending at flat indices `idx`: obs (B, K, ...) + history_mask, targets (B,), weights (B,)."""
        win = idx[:, None] + np.arange(-self.K + 1, 1)[None]  # (B, K)
        start = self.starts[idx][:, None]
        mask = win >= start  # frames before the episode start are padding (copies of its first frame)
        win = np.maximum(win, start)
        obs = {k: torch.from_numpy(self.data[k][win]) for k in self.keys}  # (B, K, ...)
        obs[HISTORY_MASK_KEY] = torch.from_numpy(mask)
        return obs, torch.from_numpy(self.targets[idx]), torch.from_numpy(self.weights[idx])


def train_reward_model(model: RewardModel, trajectories: list[Trajectory], epochs: int | None = None,
                       seed: int = 0, progress: bool = False, device: str | torch.device = "cpu") -> list[float]:
    """Fit normalizers, then BCE on soft progress targets; returns the mean loss of every epoch."""
    from tqdm import tqdm  # noqa: PLC0415

    cfg = model.cfg
    model.fit_normalizers(trajectories)
    model.to(device).train()
    data = WindowDataset(trajectories, model.input_keys, cfg.history, cfg.failure_target)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(seed)
    history: list[float] = []
    n_epochs = cfg.epochs if epochs is None else epochs
    for _ in tqdm(range(n_epochs), desc="reward model", disable=not progress):
        perm, losses = rng.permutation(len(data)), []
        for i in range(0, len(perm), cfg.batch_size):
            obs, target, weight = data.batch(perm[i:i + cfg.batch_size])
            obs = {k: v.to(device) for k, v in obs.items()}
            logits = model(obs)
            # binary cross-entropy against the soft target t/T (a calibrated regression onto [0, 1])
            loss = (F.binary_cross_entropy_with_logits(logits, target.to(device), reduction="none")
                    * weight.to(device)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
        history.append(float(np.mean(losses)))
    model.eval()
    return history


@torch.no_grad()
def trajectory_progress(model: RewardModel, traj: Trajectory, device: str | torch.device = "cpu") -> np.ndarray:
    """Predicted progress at every step of a trajectory (T,)."""
    data = WindowDataset([traj], model.input_keys, model.cfg.history)
    obs, _, _ = data.batch(np.arange(len(data)))
    model.eval()
    return model.progress({k: v.to(device) for k, v in obs.items()}).cpu().numpy()


# ----------------------------------------------------------------------------------------------- files
MAX_PARAMS = 100_000_000  # a reward-model file asking for more is refused before anything is built


def check_architecture(path: str | os.PathLike, cfg: RewardModelConfig, spec: IOSpec,
                       shapes: dict[str, tuple[int, ...]]) -> None:
    """ValueError (one line) unless the config is of sane size and its width, depth and history fit the stored
    tensor shapes: a small crafted file must not make the loader build a huge model."""
    D, K, L = cfg.d_model, cfg.history, cfg.n_layers
    chans = [3, *cfg.conv_channels, D]
    convs = len(spec.image_keys) * sum(9 * a * b for a, b in zip(chans[:-1], chans[1:], strict=True))
    n_params = L * 12 * D * D + convs
    if D > 4096 or L > 64 or K > 256 or len(chans) > 18 or n_params > MAX_PARAMS:
        raise ValueError(f"{path}: reward-model config (d_model={D}, n_layers={L}, history={K}, conv_channels="
                         f"{cfg.conv_channels[:17]}) is too large; refusing to build it")
    layers = {k.split(".")[2] for k in shapes if k.startswith("encoder.blocks.")}
    want = {"tokenizer.readout": (1, 1, D), "tokenizer.time_emb": (K, D),
            **{f"encoder.blocks.{i}.attn.qkv.weight": (3 * D, D) for i in range(L)}}
    bad = [k for k, v in want.items() if shapes.get(k) != v]
    if bad or layers != {str(i) for i in range(L)}:
        raise ValueError(f"{path}: the reward-model config does not fit the stored weights ({bad[:1] or 'depth'}); "
                         "refusing to build it")


def save_reward_model(path: str | os.PathLike, model: RewardModel) -> None:
    """safetensors weights + config + I/O spec in the metadata, written atomically."""
    from safetensors.torch import save  # noqa: PLC0415

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(state, metadata={"kind": "reward_model", "config": json.dumps(asdict(model.cfg)),
                                                   "io_spec": model.spec.to_json()}))


def load_reward_model(path: str | os.PathLike, expect_spec: IOSpec | None = None) -> RewardModel:
    """Inverse of save_reward_model; checks the I/O spec against the env's when given."""
    from safetensors import safe_open  # noqa: PLC0415
    from safetensors.torch import load_file  # noqa: PLC0415

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        shapes = upgrade_legacy_names({k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})  # header only
    if meta.get("kind") != "reward_model":
        raise ValueError(f"{path} is not a reward model written by save_reward_model")
    spec = IOSpec.from_json(meta["io_spec"])
    if expect_spec is not None:
        spec.require_compatible(expect_spec, what="env")
    cfg = RewardModelConfig(**json.loads(meta["config"]))
    check_architecture(path, cfg, spec, shapes)
    model = RewardModel(cfg, spec)
    model.load_state_dict(upgrade_legacy_names(load_file(str(path))))
    return model.eval()
