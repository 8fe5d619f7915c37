"""Output heads: a Gaussian action head (mean + state-dependent log-std) and an action-chunk head."""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class GaussianHead(nn.Module):
    """Readout embedding -> mean and log-std of a diagonal Gaussian over normalized actions.

    The log-std is state dependent and squashed smoothly into [log_std_min, log_std_max] with a sigmoid
    (a hard clamp would stop the gradient at the bounds). The same head serves BC (likelihood of demo
    actions) and PPO (sampling, log-prob, entropy).
    """

    def __init__(self, d_model: int, action_dim: int, log_std_min: float, log_std_max: float) -> None:
        super().__init__()
        self.mean = nn.Linear(d_model, action_dim)
        self.log_std = nn.Linear(d_model, action_dim)
        self.log_std_min, self.log_std_max = float(log_std_min), float(log_std_max)

    def init_log_std(self, log_std_init: float) -> None:
        """Set the bias so that the initial log-std is `log_std_init` (weights stay small)."""
        frac = (log_std_init - self.log_std_min) / (self.log_std_max - self.log_std_min)
        with torch.no_grad():
            self.log_std.bias.fill_(math.log(frac / (1.0 - frac)))  # sigmoid^-1

    def flops(self) -> int:
        """Linear FLOPs (2 per MAC)."""
        return 2 * 2 * self.mean.in_features * self.mean.out_features

    def forward(self, h: torch.Tensor, detach_std: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """h: (B, D) -> mean (B, A), log_std (B, A), both in normalized action units.

        `detach_std` feeds the log-std layer stop-gradient features (BC's mse_nll loss: the std head then
        cannot push the shared trunk around)."""
        span = self.log_std_max - self.log_std_min
        log_std = self.log_std_min + span * torch.sigmoid(self.log_std(h.detach() if detach_std else h))
        return self.mean(h), log_std


class ChunkHead(nn.Module):
    """Readout embedding -> the next H actions (normalized), t .. t+H-1, for ACT-style temporal ensembling."""

    def __init__(self, d_model: int, action_dim: int, chunk_size: int) -> None:
        super().__init__()
        self.chunk_size, self.action_dim = chunk_size, action_dim
        self.out = nn.Linear(d_model, chunk_size * action_dim)

    def flops(self) -> int:
        """Linear FLOPs (2 per MAC)."""
        return 2 * self.out.in_features * self.out.out_features

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: (B, D) -> (B, H, A)."""
        return self.out(h).view(h.shape[0], self.chunk_size, self.action_dim)  # (B, H, A)
