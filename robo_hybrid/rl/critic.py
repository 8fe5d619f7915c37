"""Asymmetric transformer critic: the actor's observation tokens plus privileged-state tokens -> V(s).

The critic is only used in simulation, so it may read `privileged` (object pose and velocities). It uses the
policy's `ObservationTokenizer` (its own weights, no history: the newest frame of a stacked input), cuts the
privileged vector into parts with one token each, and normalizes its vector inputs with running statistics
updated from rollouts (the BC normalizers do not cover `privileged`). With algo.critic.time_input it also reads
the episode's elapsed time (TIME_KEY, one more token), which the collector supplies.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn

from robo_hybrid.policy.tokenizer import ObservationTokenizer, TokenizerConfig
from robo_hybrid.policy.transformer import Encoder, init_weights
from robo_hybrid.spec import IOSpec, TensorSpec

from .config import CriticConfig
from .storage import RunningMeanStd

OBS_CLIP = 10.0
TIME_KEY = "episode_time"
"""The critic's time input (algo.critic.time_input): steps taken in the episode / the env's episode_steps, in
[0, 1]; the collector writes it beside the privileged state (the env does not emit it)."""


def current_frame(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """The newest frame of a history-stacked tensor (B, K, *shape) -> (B, *shape); unstacked tensors pass through."""
    return x[:, -1] if x.dim() == ndim + 2 else x


class ClippedRunningMeanStd(RunningMeanStd):
    """Running statistics whose forward normalizes and clips to +-OBS_CLIP (the tokenizer's normalizer call)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw -> normalized, clipped."""
        return self.normalize(x, clip=OBS_CLIP)


class TransformerCritic(nn.Module):
    """Tokens: image grid(s), one per vector key, one per privileged part; a readout token -> scalar value."""

    def __init__(self, cfg: CriticConfig, spec: IOSpec) -> None:
        super().__init__()
        self.cfg, D = cfg, cfg.d_model
        self.image_keys = tuple(spec.image_keys) if cfg.use_images else ()
        self.vector_keys = tuple(k for k in spec.policy_keys if k not in spec.image_keys)
        self.privileged_keys = tuple(spec.privileged_keys)
        self.input_keys = self.image_keys + self.vector_keys + self.privileged_keys
        self.obs_ndim = {k: len(spec.obs(k).shape) for k in self.input_keys}
        # the privileged vector is cut into parts (pos, quat, linvel, angvel), one token each
        parts = {}
        for k in self.privileged_keys:
            n = int(np.prod(spec.obs(k).shape))
            split = list(cfg.privileged_split)
            # one object's layout repeated per object (Stack: two cubes, 26 = 2 x 13), else one token
            parts[k] = split * (n // sum(split)) if split and n % sum(split) == 0 else [n]
        self.tokenizer = ObservationTokenizer(
            TokenizerConfig(d_model=D, conv_channels=cfg.conv_channels, time_emb=False),
            spec, self.image_keys, self.vector_keys + self.privileged_keys,
            # std floor: near-constant features (a resting object's quaternion) must not be blown up to +-clip
            make_normalizer=lambda d: ClippedRunningMeanStd((d,), std_floor=1e-2),
            vector_parts=parts,
        )
        self.encoder = Encoder(D, cfg.n_layers, cfg.n_heads, cfg.mlp_ratio, 0.0)
        self.value_head = nn.Linear(D, 1)
        init_weights(self, cfg.init_std, cfg.n_layers)
        self.tokenizer.init_embeddings(cfg.init_std)

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (rows, cols) of one camera ((0, 0) without images)."""
        return self.tokenizer.grid

    @torch.no_grad()
    def update_normalizers(self, obs: dict[str, torch.Tensor]) -> None:
        """Fold a rollout batch of vector observations into the running statistics."""
        for k, rms in self.tokenizer.normalizers.items():
            x = obs[k]
            rms.update(current_frame(x, 1).reshape(-1, x.shape[-1]))  # type: ignore[operator]

    def tokenize(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Raw obs (newest frame used when history-stacked) -> tokens (B, T, D)."""
        newest = {k: current_frame(obs[k], self.obs_ndim[k]) for k in self.input_keys}  # (B, *shape) each
        return self.tokenizer(newest)[0]  # (B, 1 + S, D)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Raw obs dict -> value (B,) in the critic's (possibly normalized) value units."""
        h = self.encoder(self.tokenize(obs))[:, 0]  # (B, D)
        return self.value_head(h).squeeze(-1)  # (B,)


class MLPCritic(nn.Module):
    """The ablation's baseline critic: proprio, goal and privileged state (newest frame, normalized) -> MLP -> V(s).

    Width 4 * d_model and n_layers + 1 hidden layers, about the transformer critic's parameter count and cost."""

    def __init__(self, cfg: CriticConfig, spec: IOSpec) -> None:
        super().__init__()
        if cfg.use_images:
            raise ValueError("critic.arch=mlp reads no images; set algo.critic.use_images=false")
        self.cfg = cfg
        self.image_keys: tuple[str, ...] = ()
        self.vector_keys = tuple(k for k in spec.policy_keys if k not in spec.image_keys)
        self.privileged_keys = tuple(spec.privileged_keys)
        self.input_keys = self.vector_keys + self.privileged_keys
        dims = {k: int(np.prod(spec.obs(k).shape)) for k in self.input_keys}
        self.normalizers = nn.ModuleDict({k: ClippedRunningMeanStd((d,), std_floor=1e-2) for k, d in dims.items()})
        width, layers, d_in = 4 * cfg.d_model, [], sum(dims.values())
        for _ in range(cfg.n_layers + 1):
            layers += [nn.Linear(d_in, width), nn.GELU()]
            d_in = width
        self.mlp = nn.Sequential(*layers, nn.Linear(d_in, 1))

    @torch.no_grad()
    def update_normalizers(self, obs: dict[str, torch.Tensor]) -> None:
        """Fold a rollout batch of vector observations into the running statistics."""
        for k, rms in self.normalizers.items():
            x = obs[k]
            rms.update(current_frame(x, 1).reshape(-1, x.shape[-1]))  # type: ignore[operator]

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Raw obs dict -> value (B,)."""
        x = [self.normalizers[k](current_frame(obs[k], 1).float()) for k in self.input_keys]  # (B, d_k) each
        return self.mlp(torch.cat(x, dim=-1)).squeeze(-1)  # (B,)


def with_time_input(spec: IOSpec) -> IOSpec:
    """`spec` with the episode's elapsed time (TIME_KEY) as one more privileged input of the critic."""
    if spec.episode_steps <= 0:
        raise ValueError(f"algo.critic.time_input=true needs the env's episode length, but the I/O spec of "
                         f"{spec.task_id!r} has episode_steps={spec.episode_steps}; set algo.critic.time_input=false")
    time = TensorSpec(TIME_KEY, (1,), "float32", "fraction", 0.0, 1.0,
                      description="steps taken in the episode / episode_steps (the critic's time input)")
    return dataclasses.replace(spec, privileged=(*spec.privileged, time))


def make_critic(cfg: CriticConfig, spec: IOSpec) -> TransformerCritic | MLPCritic:
    """The critic of algo.critic.arch (with the time input of algo.critic.time_input)."""
    spec = with_time_input(spec) if cfg.time_input else spec
    return MLPCritic(cfg, spec) if cfg.arch == "mlp" else TransformerCritic(cfg, spec)
