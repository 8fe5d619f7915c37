"""The observation tokenizer shared by the actor, the critic and the reward model.

`ObservationTokenizer` turns a raw observation dict into the transformer's token sequence: one image stem per
camera (a grid of D-wide tokens each), one MLP token per vector key (or per part of a key), camera / modality /
position / time embeddings, and a readout token in front. The stems and the vector MLP are the classes above it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from torchvision.transforms import v2

from robo_hybrid.constants import HISTORY_MASK_KEY
from robo_hybrid.spec import IOSpec

from .config import IMAGE_ENCODERS


def conv_out(n: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution / pooling along one axis."""
    return (n + 2 * padding - kernel) // stride + 1


def stem_grid(image_encoder: str, n_convs: int, image_size: int) -> tuple[int, int]:
    """Token grid (rows, cols) of a stem without building it: 'conv' with `n_convs` 3x3 stride-2 convs, 'patch' (the
    first of them 3x3 stride 3, unpadded), or 'resnet18' (conv1 (7, s2, p3), maxpool (3, s2, p1), layer2 and layer3
    (3, s2, p1))."""
    if image_encoder == "resnet18":
        n = conv_out(image_size, 7, 2, 3)
        for _ in range(3):
            n = conv_out(n, 3, 2, 1)
        return n, n
    n = image_size
    for stride, padding in ConvStem.layout(n_convs, patch=image_encoder == "patch"):
        n = conv_out(n, ConvStem.kernel, stride, padding)
    return n, n


def image_to_float(image: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1]."""
    return image.permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W)


class ConvStem(nn.Module):
    """3x3 conv + ReLU layers, then a 3x3 conv to D channels: a small CNN patch stem.

    'conv': every layer has stride 2 (84 px -> 42 -> 21 -> 11 -> 6 with three hidden layers). 'patch': the first
    layer is an unpadded 3x3 stride-3 conv, i.e. a linear map of non-overlapping 3 x 3 patches (84 px -> 28 -> 14 ->
    7 with two hidden layers), which costs a ninth of the multiply-adds per output of the first 'conv' layer; the state
    dict has the same layout (3x3 kernels, `net.0`, `net.2`, ...).

    With `coord_channels` two constant channels holding the pixel's x and y in [-1, 1] are appended to the
    image (CoordConv), so the first layers can encode absolute position: the policy must localise the object
    in the fixed camera's frame, since the goal and the end effector arrive as vectors in world coordinates.
    The first conv is linear, so its coordinate part is computed once per call as a (1, C, h, w) map and added
    (the same sum as convolving the concatenated channels, without building a 5-channel batch).
    """

    kernel = 3
    coords: torch.Tensor

    @staticmethod
    def layout(n_convs: int, patch: bool) -> list[tuple[int, int]]:
        """(stride, padding) of each of the `n_convs` 3x3 convs."""
        first = (3, 0) if patch else (2, 1)
        return [first] + [(2, 1)] * (n_convs - 1)

    def __init__(self, channels: list[int], d_model: int, image_size: int = 84, coord_channels: bool = False,
                 patch: bool = False) -> None:
        super().__init__()
        self.coord_channels, self.patch = coord_channels, patch
        lin = torch.linspace(-1.0, 1.0, image_size)
        ys, xs = torch.meshgrid(lin, lin, indexing="ij")
        self.register_buffer("coords", torch.stack([xs, ys])[None], persistent=False)  # (1, 2, H, W)
        chans = [5 if coord_channels else 3, *channels, d_model]
        self.strides = self.layout(len(chans) - 1, patch)
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(chans[:-1], chans[1:], strict=True)):
            layers.append(nn.Conv2d(c_in, c_out, self.kernel, *self.strides[i]))
            if i < len(chans) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.chans = chans

    def grid(self, image_size: int) -> tuple[int, int]:
        """Token grid (rows, cols) for a square image of `image_size` pixels."""
        return stem_grid("patch" if self.patch else "conv", len(self.chans) - 1, image_size)

    def flops(self, image_size: int) -> int:
        """Conv FLOPs (2 per MAC) for one image at batch 1 (the coordinate channels included)."""
        total, n = 0, image_size
        for c_in, c_out, (stride, padding) in zip(self.chans[:-1], self.chans[1:], self.strides, strict=True):
            n = conv_out(n, self.kernel, stride, padding)
            total += 2 * n * n * c_out * c_in * self.kernel * self.kernel
        return total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) float in [0, 1] -> (N, D, h, w)."""
        # channels-last: oneDNN's convolutions (forward and backward) run several times faster on these small
        # channel counts in NHWC; a uint8 HWC image permuted to NCHW already has this layout (no copy)
        x = (x - 0.5).contiguous(memory_format=torch.channels_last)
        first = self.net[0]
        assert isinstance(first, nn.Conv2d)
        w = first.weight  # (C, 5 | 3, 3, 3)
        y = F.conv2d(x, w[:, :3], first.bias, first.stride, first.padding)  # (N, C, h, w)
        if self.coord_channels:
            y = y + F.conv2d(self.coords, w[:, 3:], None, first.stride, first.padding)  # (1, C, h, w) broadcast
        return self.net[1:](y)


class ResNetStem(nn.Module):
    """torchvision ResNet-18 up to layer3 (stride 16), GroupNorm instead of BatchNorm, 1x1 conv to D."""

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(self, d_model: int) -> None:
        super().__init__()
        from torchvision.models import resnet18

        # GroupNorm: batch statistics would differ between BC batches, PPO rollouts and the exported graph.
        r = resnet18(weights=None, norm_layer=lambda c: nn.GroupNorm(max(1, c // 16), c))
        self.trunk = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3)
        self.proj = nn.Conv2d(256, d_model, kernel_size=1)
        self.register_buffer("pixel_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.d_model = d_model

    def grid(self, image_size: int) -> tuple[int, int]:
        """Token grid (rows, cols) at stride 16."""
        return stem_grid("resnet18", 0, image_size)

    def flops(self, image_size: int) -> int:
        """Conv + linear FLOPs for one image, counted on the meta device (no real compute)."""
        meta = ResNetStem(self.d_model).to("meta")
        with FlopCounterMode(display=False) as counter:
            meta(torch.zeros(1, 3, image_size, image_size, device="meta"))
        return int(counter.get_total_flops())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) float in [0, 1] -> (N, D, h, w)."""
        return self.proj(self.trunk((x - self.pixel_mean) / self.pixel_std))


class ImageAugment(nn.Module):
    """Random shift (edge-replicate pad + random crop, DrQ) and colour jitter, drawn per sample.

    Applied only when the policy is in training mode; the same draw covers all K history frames of a sample
    so that motion between frames is preserved. The shift is one gather on the uint8 batch (a pixel of the
    shifted image is the source pixel at the clamped shifted row and column: exactly pad-by-edge then crop);
    colour jitter (torchvision v2, per sample) runs on the float images when enabled.
    """

    def __init__(self, image_size: int, shift_pad_px: int, color_jitter: float) -> None:
        super().__init__()
        self.image_size, self.shift_pad_px = image_size, shift_pad_px
        self.jitter = None
        if color_jitter > 0:
            self.jitter = v2.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter)

    def shift(self, img: torch.Tensor) -> torch.Tensor:
        """img: (B, K, H, W, 3) uint8 -> the same shape, each sample shifted by up to shift_pad_px in x and y."""
        if self.shift_pad_px <= 0:
            return img
        B, K, H, W, _ = img.shape
        pad = self.shift_pad_px
        offset = torch.randint(0, 2 * pad + 1, (B, 2), device=img.device) - pad  # (B, 2): rows, cols
        rows = (torch.arange(H, device=img.device)[None] + offset[:, :1]).clamp(0, H - 1)  # (B, H)
        cols = (torch.arange(W, device=img.device)[None] + offset[:, 1:]).clamp(0, W - 1)  # (B, W)
        b = torch.arange(B, device=img.device)[:, None, None, None]  # (B, 1, 1, 1)
        k = torch.arange(K, device=img.device)[None, :, None, None]  # (1, K, 1, 1)
        return img[b, k, rows[:, None, :, None], cols[:, None, None, :]]  # (B, K, H, W, 3)

    def color(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, K, 3, H, W) float in [0, 1] -> same shape, each sample jittered independently (or x unchanged)."""
        if self.jitter is None:
            return x
        return torch.stack([self.jitter(sample) for sample in x.unbind(0)], dim=0)  # (B, K, 3, H, W)


class VectorTokenizer(nn.Module):
    """A vector observation (normalized) -> one token: Linear -> GELU -> Linear."""

    def __init__(self, dim_in: int, d_model: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim_in, d_model), nn.GELU(), nn.Linear(d_model, d_model))
        self.dim_in, self.d_model = dim_in, d_model

    def flops(self) -> int:
        """Linear FLOPs (2 per MAC) for one vector."""
        d = self.d_model
        return 2 * (self.dim_in * d + d * d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, dim_in) -> (N, D)."""
        return self.net(x)


@dataclass
class TokenizerConfig:
    """How an owner (policy, critic, reward model) wants its observations tokenized."""

    d_model: int
    """Token width D."""
    conv_channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    """Hidden channels of the 'conv' image stem (see `ConvStem`)."""
    image_encoder: str = "conv"
    """'conv' (`ConvStem`) or 'resnet18' (`ResNetStem`)."""
    coord_channels: bool = False
    """CoordConv x / y input channels for the 'conv' stem."""
    history: int = 1
    """K: observation steps per sample."""
    stacked: bool | None = None
    """Inputs carry a K axis, (B, K, ...) newest last, and `history_mask` (B, K) is read when present; the time
    embedding is added then. None: stacked when history > 1 (the policy); the reward model stacks even at K = 1."""
    time_emb: bool = True
    """Own a (K, D) time-embedding table (the policy keeps it at K = 1, unused, so its layout and seeded
    initialisation stay what they were; the critic has none)."""
    shift_pad_px: int = 0
    """Random-shift augmentation in training mode (0 disables)."""
    color_jitter: float = 0.0
    """Colour-jitter augmentation strength in training mode (0 disables)."""

    def __post_init__(self) -> None:
        if self.image_encoder not in IMAGE_ENCODERS:
            raise ValueError(f"image_encoder={self.image_encoder!r}: choose one of {IMAGE_ENCODERS}")
        if self.history < 1:
            raise ValueError(f"history={self.history}: use 1 for no history, K > 1 for K observations")
        if self.stacked is None:
            self.stacked = self.history > 1
        if self.history > 1 and not self.stacked:
            raise ValueError("history > 1 needs stacked inputs (B, K, ...)")


class ObservationTokenizer(nn.Module):
    """Raw observation dict -> tokens (B, 1 + K * S, D) and key mask (B, 1 + K * S) or None.

    Per step the S tokens are, in order: each camera's grid (+ position and camera embeddings), then one token per
    part of each vector key (+ a modality embedding per token). A time embedding marks the step when inputs are
    stacked; a readout token goes first. Vector inputs pass through `normalizers[key]` (built by the owner's
    factory: fixed dataset statistics or running ones) before their MLP. Only `image_keys`, the vector keys and
    `history_mask` are ever read from the observation dict.
    """

    def __init__(
        self,
        cfg: TokenizerConfig,
        spec: IOSpec,
        image_keys: tuple[str, ...],
        vector_keys: tuple[str, ...],
        make_normalizer: Callable[[int], nn.Module],
        vector_parts: Mapping[str, list[int]] | None = None,
        hidden: Mapping[str, list[int]] | None = None,
    ) -> None:
        super().__init__()
        if not image_keys and not vector_keys:
            raise ValueError("the tokenizer needs at least one image or vector key")
        self.cfg, D, K = cfg, cfg.d_model, cfg.history
        self.image_keys, self.vector_keys = tuple(image_keys), tuple(vector_keys)
        self.image_size = spec.obs(self.image_keys[0]).shape[0] if self.image_keys else 0
        for k in self.image_keys:
            if tuple(spec.obs(k).shape) != (self.image_size, self.image_size, 3):
                raise ValueError(f"image '{k}' is {spec.obs(k).shape}; cameras must be square RGB images of one size")
        self.vec_dims = {k: int(np.prod(spec.obs(k).shape)) for k in self.vector_keys}
        self.parts = {k: list((vector_parts or {}).get(k, [d])) for k, d in self.vec_dims.items()}
        for k, sizes in self.parts.items():
            if sum(sizes) != self.vec_dims[k]:
                raise ValueError(f"'{k}': token parts {sizes} do not sum to its {self.vec_dims[k]} elements")

        # one stem per camera, one MLP per vector part, one normalizer per vector key
        stems = {k: self._make_stem() for k in self.image_keys}
        self.grid = next(iter(stems.values())).grid(self.image_size) if stems else (0, 0)
        self.stems = nn.ModuleDict(stems)
        self.vec_tokenizers = nn.ModuleDict(
            {k: nn.ModuleList([VectorTokenizer(d, D) for d in sizes]) for k, sizes in self.parts.items()}
        )
        self.normalizers = nn.ModuleDict({k: make_normalizer(d) for k, d in self.vec_dims.items()})
        # elements of a vector key that are never read: zeroed after normalization (a buffer per such key)
        hidden = {k: list(v) for k, v in (hidden or {}).items() if v}
        self.masked_keys = tuple(k for k in self.vector_keys if k in hidden)
        for k in self.masked_keys:
            keep = torch.ones(self.vec_dims[k])
            keep[hidden[k]] = 0.0
            self.register_buffer(f"keep_{k}", keep)
        augment = self.image_keys and (cfg.shift_pad_px > 0 or cfg.color_jitter > 0)
        self.augment = ImageAugment(self.image_size, cfg.shift_pad_px, cfg.color_jitter) if augment else None

        # embeddings: spatial position (shared by cameras), camera, vector token, time step, readout token
        n_vec = sum(len(sizes) for sizes in self.parts.values())
        self.pos_emb = nn.Parameter(torch.zeros(max(self.grid[0] * self.grid[1], 1), D))
        self.cam_emb = nn.Parameter(torch.zeros(max(len(self.image_keys), 1), D))
        self.vec_emb = nn.Parameter(torch.zeros(max(n_vec, 1), D))
        self.time_emb = nn.Parameter(torch.zeros(K, D)) if cfg.time_emb else None
        self.readout = nn.Parameter(torch.zeros(1, 1, D))

    def _make_stem(self) -> ConvStem | ResNetStem:
        if self.cfg.image_encoder == "resnet18":
            return ResNetStem(self.cfg.d_model)
        return ConvStem(self.cfg.conv_channels, self.cfg.d_model, self.image_size, self.cfg.coord_channels,
                        patch=self.cfg.image_encoder == "patch")

    def init_embeddings(self, init_std: float) -> None:
        """N(0, init_std) embeddings; the owner calls it after `init_weights`, in this order (seeded runs repeat)."""
        for p in self.embeddings():
            nn.init.normal_(p, mean=0.0, std=init_std)

    def embeddings(self) -> list[nn.Parameter]:
        """The learned embeddings: position, camera, vector token, time (when owned), readout."""
        time = [self.time_emb] if self.time_emb is not None else []
        return [self.pos_emb, self.cam_emb, self.vec_emb, *time, self.readout]

    # ----- sizes without a forward pass -----
    @property
    def tokens_per_step(self) -> int:
        """S: a grid per camera + one token per vector part."""
        return len(self.image_keys) * self.grid[0] * self.grid[1] + sum(len(s) for s in self.parts.values())

    @property
    def num_tokens(self) -> int:
        """T = 1 + K * S: the readout token and K steps."""
        return 1 + self.cfg.history * self.tokens_per_step

    def flops(self) -> int:
        """Stem and vector-MLP FLOPs (2 per MAC) of one sample, all K steps (embedding adds not counted)."""
        stems = sum(s.flops(self.image_size) for s in self.stems.values())  # type: ignore[operator]
        vecs = sum(t.flops() for ts in self.vec_tokenizers.values() for t in ts)  # type: ignore[union-attr]
        return self.cfg.history * (stems + vecs)

    # ----- forward -----
    def _check_image(self, key: str, img: torch.Tensor) -> None:
        if torch.jit.is_tracing():  # pyright: ignore[reportPrivateImportUsage]  (shapes are symbolic then)
            return
        n, stacked = self.image_size, bool(self.cfg.stacked)
        if tuple(img.shape[-3:]) != (n, n, 3) or img.dim() != (5 if stacked else 4) or img.dtype != torch.uint8:
            lead = "B, K" if stacked else "B"
            raise ValueError(f"'{key}': expected ({lead}, {n}, {n}, 3) uint8, got {tuple(img.shape)} {img.dtype}")

    def _image_tokens(self, obs: Mapping[str, torch.Tensor], B: int) -> list[torch.Tensor]:
        K, D, n = self.cfg.history, self.cfg.d_model, self.image_size
        steps = []
        for i, key in enumerate(self.image_keys):
            img = obs[key]
            self._check_image(key, img)
            augment = self.augment if self.training else None
            if augment is not None:
                img = augment.shift(img.reshape(B, K, n, n, 3))  # (B, K, H, W, 3) uint8
            x = image_to_float(img.reshape(B * K, n, n, 3))  # (B*K, 3, H, W)
            if augment is not None and augment.jitter is not None:
                x = augment.color(x.reshape(B, K, 3, n, n)).reshape(B * K, 3, n, n)  # (B*K, 3, H, W)
            f = self.stems[key](x).flatten(2).transpose(1, 2)  # (B*K, G, D)
            f = f + self.pos_emb + self.cam_emb[i]  # (B*K, G, D)
            steps.append(f.view(B, K, -1, D))  # (B, K, G, D)
        return steps

    def _normalized(self, key: str, v: torch.Tensor) -> torch.Tensor:
        """(N, d) raw values of vector key `key` -> normalized (N, d); hidden elements read as 0."""
        v = self.normalizers[key](v.float())
        return v * getattr(self, f"keep_{key}") if key in self.masked_keys else v

    def _vector_tokens(self, obs: Mapping[str, torch.Tensor], B: int) -> list[torch.Tensor]:
        K, D = self.cfg.history, self.cfg.d_model
        steps, j = [], 0
        for key, sizes in self.parts.items():
            v = self._normalized(key, obs[key].reshape(B * K, self.vec_dims[key]))  # (B*K, d)
            for mlp, part in zip(self.vec_tokenizers[key], v.split(sizes, dim=-1), strict=True):  # type: ignore[arg-type]
                steps.append((mlp(part) + self.vec_emb[j]).view(B, K, 1, D))  # (B, K, 1, D)
                j += 1
        return steps

    def vector_state(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The vector inputs of the latest step, normalized as the tokens see them, concatenated: (B, sum d).

        (A residual head reads them beside the readout; hidden elements read as 0 here too.)"""
        K = self.cfg.history
        B = obs[(self.image_keys or self.vector_keys)[0]].shape[0]
        parts = []
        for key in self.vector_keys:
            parts.append(self._normalized(key, obs[key].reshape(B, K, self.vec_dims[key])[:, -1]))  # (B, d)
        return torch.cat(parts, dim=-1) if parts else torch.zeros(B, 0, device=self.readout.device)  # (B, sum d)

    def forward(self, obs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw obs -> tokens (B, T, D) and key mask (B, T) (True = real token; None when no `history_mask`)."""
        K, D, S = self.cfg.history, self.cfg.d_model, self.tokens_per_step
        B = obs[(self.image_keys or self.vector_keys)[0]].shape[0]
        x = torch.cat(self._image_tokens(obs, B) + self._vector_tokens(obs, B), dim=2)  # (B, K, S, D)
        if self.cfg.stacked and self.time_emb is not None:
            x = x + self.time_emb[None, :, None, :]  # (B, K, S, D)
        x = x.reshape(B, K * S, D)  # (B, K*S, D)
        x = torch.cat([self.readout.expand(B, 1, D), x], dim=1)  # (B, T, D)
        mask = obs.get(HISTORY_MASK_KEY) if self.cfg.stacked else None
        if mask is None:
            return x, None
        mask = mask.to(torch.bool)[:, :, None].expand(B, K, S).reshape(B, -1)  # (B, K*S): a step's tokens share it
        return x, torch.cat([torch.ones(B, 1, dtype=torch.bool, device=x.device), mask], dim=1)  # (B, T)
