"""Mean / std normalizer whose statistics are buffers, so they live in the state dict and the ONNX graph."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn


class Normalizer(nn.Module):
    """y = clip((x - mean) / std); fitted once on the dataset, frozen afterwards (no running update)."""

    mean: torch.Tensor
    std: torch.Tensor
    fitted: torch.Tensor

    def __init__(self, shape: tuple[int, ...], std_floor: float = 1e-2, clip: float | None = None) -> None:
        super().__init__()
        self.std_floor = float(std_floor)
        self.clip = None if clip is None else float(clip)
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def set_stats(self, mean: np.ndarray | torch.Tensor, std: np.ndarray | torch.Tensor) -> None:
        """Load statistics (std floored at `std_floor`)."""
        mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float32)).reshape(self.mean.shape)
        std_t = torch.as_tensor(np.asarray(std, dtype=np.float32)).reshape(self.std.shape)
        self.mean.copy_(mean_t)
        self.std.copy_(std_t.clamp_min(self.std_floor))
        self.fitted.fill_(True)

    def fit(self, x: np.ndarray | torch.Tensor) -> None:
        """Fit on samples `x` of shape (N, *shape) (float64 accumulation)."""
        arr = np.asarray(x, dtype=np.float64).reshape(-1, *self.mean.shape)
        self.set_stats(arr.mean(axis=0), arr.std(axis=0))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Raw units -> normalized (clipped when `clip` is set)."""
        y = (x - self.mean) / self.std
        return y if self.clip is None else y.clamp(-self.clip, self.clip)

    def unnormalize(self, y: torch.Tensor) -> torch.Tensor:
        """Normalized -> raw units (inverse of `normalize` inside the clip range)."""
        return y * self.std + self.mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same as `normalize`."""
        return self.normalize(x)

    def extra_repr(self) -> str:
        """Shape, floor and clip, for print(module)."""
        return f"shape={tuple(self.mean.shape)}, std_floor={self.std_floor}, clip={self.clip}"
