"""Helpers for the policy tests: tiny configs and random raw observations (imported by name, not a conftest)."""

from __future__ import annotations

import torch

from robo_hybrid.policy import PolicyConfig
from robo_hybrid.spec import IOSpec


def tiny_cfg(**kw) -> PolicyConfig:
    """Width-32, one-layer policy config with the stride-2 'conv' stem (32 px -> a 4 x 4 grid)."""
    base = dict(d_model=32, n_layers=1, n_heads=2, conv_channels=[8, 16], image_encoder="conv")
    base.update(kw)
    return PolicyConfig(**base)


def random_obs(spec: IOSpec, batch: int, history: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    """Raw observations (uint8 images, float32 vectors) for every policy key and a garbage `privileged`."""
    g = torch.Generator().manual_seed(seed)
    lead = (batch,) if history == 1 else (batch, history)
    out = {}
    for t in spec.observations + spec.privileged:
        if t.dtype == "uint8":
            out[t.name] = torch.randint(0, 256, (*lead, *t.shape), generator=g, dtype=torch.uint8)
        else:
            out[t.name] = torch.randn(*lead, *t.shape, generator=g)
    return out
