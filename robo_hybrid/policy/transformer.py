"""Pre-norm transformer encoder in the style of nanoGPT's model.py, without the causal mask."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class SelfAttention(nn.Module):
    """Multi-head self-attention over all tokens; an optional mask hides padded keys."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        assert d_model % n_heads == 0
        self.n_heads, self.d_model = n_heads, d_model
        self.dropout = dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)  # query, key, value projections for all heads, in a batch
        self.proj = nn.Linear(d_model, d_model)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, D); attn_mask: (B, 1, 1, T) bool or None. Returns (B, T, D)."""
        B, T, D = x.shape  # batch, tokens, width
        q, k, v = self.qkv(x).split(self.d_model, dim=2)  # a Python int: exporters trace it as a constant
        q = q.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        # attn_mask: (B, 1, 1, T) bool, True = may attend to that key
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, D)  # (B, T, D): re-assemble the heads side by side
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward: D -> mlp_ratio * D -> D."""

    def __init__(self, d_model: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(d_model, mlp_ratio * d_model)
        self.gelu = nn.GELU()
        self.proj = nn.Linear(mlp_ratio * d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, D) -> (B, T, D)."""
        return self.drop(self.proj(self.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, dropout)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, D) -> (B, T, D)."""
        x = x + self.attn(self.ln_1(x), attn_mask)
        x = x + self.mlp(self.ln_2(x))
        return x


class Encoder(nn.Module):
    """A stack of blocks and a final LayerNorm."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(d_model, n_heads, mlp_ratio, dropout) for _ in range(n_layers)])
        self.ln_f = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, D); key_mask: (B, T) bool, True = real token. Returns (B, T, D)."""
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, T)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, attn_mask)
        return self.ln_f(x)

    @staticmethod
    def flops(n_tokens: int, d_model: int, n_layers: int, mlp_ratio: int) -> int:
        """Multiply-add FLOPs (2 per MAC) of one forward over `n_tokens` tokens (matmuls only)."""
        T, D = n_tokens, d_model
        linear = 2 * T * (3 * D * D + D * D + 2 * mlp_ratio * D * D)  # qkv, proj, mlp fc + proj
        attention = 2 * 2 * T * T * D  # q @ k^T and att @ v, summed over heads
        return n_layers * (linear + attention)


def init_weights(module: nn.Module, init_std: float, n_layers: int) -> None:
    """nanoGPT init: N(0, init_std) weights, zero biases, residual projections scaled by 1/sqrt(2 n_layers)."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            std = init_std / math.sqrt(2 * n_layers) if name.endswith(".proj") else init_std
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=init_std)
