"""ExportWrapper: the policy as one graph from raw sensors to clipped actions (what `export_onnx` traces)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from robo_hybrid.constants import HISTORY_MASK_KEY

if TYPE_CHECKING:
    from .model import MultimodalPolicy


class ExportWrapper(nn.Module):
    """Export wrapper (cf. rsl_rl as_onnx): raw sensors in, clipped deterministic actions out.

    Inputs are positional in `input_names` order (the spec's policy keys, plus `history_mask` (B, K) bool when
    history > 1); outputs are `output_names`. Normalizers travel inside the graph.
    """

    def __init__(self, policy: MultimodalPolicy) -> None:
        super().__init__()
        self.policy = copy.deepcopy(policy).cpu().eval()
        self.input_names: tuple[str, ...] = tuple(policy.spec.policy_keys) + (
            (HISTORY_MASK_KEY,) if policy.cfg.history > 1 else ()
        )
        self.output_names: tuple[str, ...] = ("action",) + (
            ("action_chunk",) if policy.chunk_head is not None else ()
        )
        self.eval()

    def train(self, mode: bool = True) -> ExportWrapper:
        """Always eval mode: exporters restore the wrapper's mode afterwards, which must not enable augmentation."""
        return super().train(False)

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """Zero inputs of the right shapes and dtypes, e.g. for `torch.onnx.export`."""
        K, spec = self.policy.cfg.history, self.policy.spec
        lead = (batch,) if K == 1 else (batch, K)
        out = []
        for name in self.input_names:
            if name == HISTORY_MASK_KEY:
                out.append(torch.ones(batch, K, dtype=torch.bool))
            else:
                t = spec.obs(name)
                out.append(torch.zeros(*lead, *t.shape, dtype=getattr(torch, t.dtype)))
        return tuple(out)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Raw inputs in `input_names` order -> clipped action (B, A) [, clipped chunk (B, H, A)]."""
        obs = dict(zip(self.input_names, inputs, strict=True))
        out = self.policy(obs)
        action = self.policy.clip_action(self.policy.unnormalize_action(out.mean))  # (B, A)
        if out.chunk is None:
            return action
        return action, self.policy.clip_action(self.policy.unnormalize_action(out.chunk))  # (B, H, A)
