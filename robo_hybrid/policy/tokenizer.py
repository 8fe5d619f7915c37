"""Tokenizers: camera image -> grid of D-wide tokens, vector observation -> one token; training augmentation."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.transforms import v2


def conv_out(n: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution / pooling along one axis."""
    return (n + 2 * padding - kernel) // stride + 1


def image_to_float(image: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1]."""
    return image.permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W)


class ConvStem(nn.Module):
    """3x3 stride-2 conv + ReLU layers, then a 3x3 stride-2 conv to D channels: a small CNN patch stem.

    With `coord_channels` two constant channels holding the pixel's x and y in [-1, 1] are appended to the
    image (CoordConv), so the first layers can encode absolute position: the policy must localise the object
    in the fixed camera's frame, since the goal and the end effector arrive as vectors in world coordinates.
    """

    kernel, stride, padding = 3, 2, 1
    coords: torch.Tensor

    def __init__(self, channels: list[int], d_model: int, image_size: int = 84, coord_channels: bool = False) -> None:
        super().__init__()
        self.coord_channels = coord_channels
        lin = torch.linspace(-1.0, 1.0, image_size)
        ys, xs = torch.meshgrid(lin, lin, indexing="ij")
        self.register_buffer("coords", torch.stack([xs, ys])[None], persistent=False)  # (1, 2, H, W)
        chans = [5 if coord_channels else 3, *channels, d_model]
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(chans[:-1], chans[1:], strict=True)):
            layers.append(nn.Conv2d(c_in, c_out, self.kernel, self.stride, self.padding))
            if i < len(chans) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.chans = chans

    def grid(self, image_size: int) -> tuple[int, int]:
        """Token grid (rows, cols) for a square image of `image_size` pixels."""
        n = image_size
        for _ in range(len(self.chans) - 1):
            n = conv_out(n, self.kernel, self.stride, self.padding)
        return n, n

    def flops(self, image_size: int) -> int:
        """Conv FLOPs (2 per MAC) for one image."""
        total, n = 0, image_size
        for c_in, c_out in zip(self.chans[:-1], self.chans[1:], strict=True):
            n = conv_out(n, self.kernel, self.stride, self.padding)
            total += 2 * n * n * c_out * c_in * self.kernel * self.kernel
        return total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) float in [0, 1] -> (N, D, h, w)."""
        x = x - 0.5
        if self.coord_channels:
            x = torch.cat([x, self.coords.expand(x.shape[0], -1, -1, -1)], dim=1)  # (N, 5, H, W)
        return self.net(x)


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
        """Token grid (rows, cols): conv1 (7, s2, p3), maxpool (3, s2, p1), layer2 and layer3 (3, s2, p1)."""
        n = conv_out(image_size, 7, 2, 3)
        for _ in range(3):
            n = conv_out(n, 3, 2, 1)
        return n, n

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
    """Random shift (pad + random crop, DrQ) and colour jitter with torchvision v2, drawn per sample.

    Applied only when the policy is in training mode; the same draw covers all K history frames of a sample
    so that motion between frames is preserved.
    """

    def __init__(self, image_size: int, shift_pad_px: int, color_jitter: float) -> None:
        super().__init__()
        ops: list[nn.Module] = []
        if shift_pad_px > 0:
            ops.append(v2.RandomCrop(image_size, padding=shift_pad_px, padding_mode="edge"))
        if color_jitter > 0:
            ops.append(v2.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter))
        self.transform = v2.Compose(ops) if ops else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, K, 3, H, W) float in [0, 1] -> same shape, each sample shifted / jittered independently."""
        if self.transform is None:
            return x
        return torch.stack([self.transform(sample) for sample in x.unbind(0)], dim=0)  # (B, K, 3, H, W)


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


def pad_mask_from_lengths(valid: torch.Tensor, tokens_per_step: int) -> torch.Tensor:
    """(B, K) bool per history step -> (B, K * tokens_per_step) bool per token."""
    B, K = valid.shape
    return valid[:, :, None].expand(B, K, tokens_per_step).reshape(B, K * tokens_per_step)  # (B, K*S)

