"""Asymmetric transformer critic: the actor's observation tokens plus privileged-state tokens -> V(s).

The critic is only used in simulation, so it may read `privileged` (object pose and velocities). It reuses the
policy's tokenizer classes (conv stem, vector MLP, encoder) with its own weights, and normalizes its vector inputs
with running statistics updated from rollouts (the BC normalizers do not cover `privileged`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from robo_hybrid.policy.tokenizer import ConvStem, VectorTokenizer, image_to_float
from robo_hybrid.policy.transformer import Encoder, init_weights
from robo_hybrid.spec import IOSpec

from .config import CriticConfig
from .storage import RunningMeanStd

OBS_CLIP = 10.0


def current_frame(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """The newest frame of a history-stacked tensor (B, K, *shape) -> (B, *shape); unstacked tensors pass through."""
    return x[:, -1] if x.dim() == ndim + 2 else x


class TransformerCritic(nn.Module):
    """Tokens: image grid(s), one per vector key, one per privileged part; a readout token -> scalar value."""

    def __init__(self, cfg: CriticConfig, spec: IOSpec) -> None:
        super().__init__()
        self.cfg, D = cfg, cfg.d_model
        self.image_keys = tuple(spec.image_keys) if cfg.use_images else ()
        self.vector_keys = tuple(k for k in spec.policy_keys if k not in spec.image_keys)
        self.privileged_keys = tuple(spec.privileged_keys)
        self.input_keys = self.image_keys + self.vector_keys + self.privileged_keys
        self.image_size = spec.obs(self.image_keys[0]).shape[0] if self.image_keys else 0
        stems = {k: ConvStem(cfg.conv_channels, D) for k in self.image_keys}
        self.stems = nn.ModuleDict(stems)
        self.grid = stems[self.image_keys[0]].grid(self.image_size) if self.image_keys else (0, 0)
        # one token per vector key; the privileged vector is cut into parts (pos, quat, linvel, angvel)
        self.parts: dict[str, list[int]] = {}
        for k in self.vector_keys:
            self.parts[k] = [int(np.prod(spec.obs(k).shape))]
        for k in self.privileged_keys:
            n = int(np.prod(spec.obs(k).shape))
            self.parts[k] = list(cfg.privileged_split) if sum(cfg.privileged_split) == n else [n]
        self.tokenizers = nn.ModuleDict(
            {f"{k}_{i}": VectorTokenizer(d, D) for k, sizes in self.parts.items() for i, d in enumerate(sizes)}
        )
        # std floor: near-constant features (a resting object's quaternion) must not be blown up to +-clip
        self.obs_rms = nn.ModuleDict({k: RunningMeanStd((sum(s),), std_floor=1e-2) for k, s in self.parts.items()})
        n_vec = sum(len(s) for s in self.parts.values())
        self.pos_emb = nn.Parameter(torch.zeros(max(self.grid[0] * self.grid[1], 1), D))
        self.cam_emb = nn.Parameter(torch.zeros(max(len(self.image_keys), 1), D))
        self.vec_emb = nn.Parameter(torch.zeros(n_vec, D))
        self.readout = nn.Parameter(torch.zeros(1, 1, D))
        self.encoder = Encoder(D, cfg.n_layers, cfg.n_heads, cfg.mlp_ratio, 0.0)
        self.value_head = nn.Linear(D, 1)
        init_weights(self, cfg.init_std, cfg.n_layers)
        for p in (self.pos_emb, self.cam_emb, self.vec_emb, self.readout):
            nn.init.normal_(p, mean=0.0, std=cfg.init_std)

    @torch.no_grad()
    def update_normalizers(self, obs: dict[str, torch.Tensor]) -> None:
        """Fold a rollout batch of vector observations into the running statistics."""
        for k, rms in self.obs_rms.items():
            x = obs[k]
            rms.update(current_frame(x, 1).reshape(-1, x.shape[-1]))  # type: ignore[operator]

    def tokenize(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Raw obs (newest frame used when history-stacked) -> tokens (B, T, D)."""
        D = self.cfg.d_model
        tokens: list[torch.Tensor] = []
        for i, k in enumerate(self.image_keys):
            img = current_frame(obs[k], 3)  # (B, H, W, 3)
            f = self.stems[k](image_to_float(img)).flatten(2).transpose(1, 2)  # (B, G, D)
            tokens.append(f + self.pos_emb + self.cam_emb[i])  # (B, G, D)
        j = 0
        for k, sizes in self.parts.items():
            x = current_frame(obs[k], 1).float()  # (B, d)
            x = self.obs_rms[k].normalize(x, clip=OBS_CLIP)  # type: ignore[operator]
            for i, chunk in enumerate(x.split(sizes, dim=-1)):
                tokens.append((self.tokenizers[f"{k}_{i}"](chunk) + self.vec_emb[j]).unsqueeze(1))  # (B, 1, D)
                j += 1
        x = torch.cat(tokens, dim=1)  # (B, S, D)
        B = x.shape[0]
        return torch.cat([self.readout.expand(B, 1, D), x], dim=1)  # (B, 1 + S, D)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Raw obs dict -> value (B,) in the critic's (possibly normalized) value units."""
        h = self.encoder(self.tokenize(obs))[:, 0]  # (B, D)
        return self.value_head(h).squeeze(-1)  # (B,)
