"""Rollout videos: the camera image beside one bar per action element, written as H.264 mp4."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robo_hybrid.fileio import atomic_write_with

_COLORS = [(230, 80, 80), (80, 200, 80), (80, 120, 230), (230, 200, 60)]


def action_panel(action: np.ndarray, size: int) -> np.ndarray:
    """A size x size RGB panel with one bar per action element (centre line = 0, full width = +-1)."""
    panel = np.full((size, size, 3), 30, np.uint8)
    n = len(action)
    bar_h = size // (n + 1)
    mid = size // 2
    for i, a in enumerate(np.clip(action, -1, 1)):
        y0 = (i + 1) * size // (n + 1) - bar_h // 3
        x1 = int(mid + a * (size // 2 - 4))
        lo, hi = sorted((mid, x1))
        panel[y0 : y0 + bar_h * 2 // 3, lo : hi + 1] = _COLORS[i % len(_COLORS)]
    panel[:, mid] = 200
    return panel


def video_frame(image: np.ndarray, action: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 camera image, upscaled to ~168 px, with the action panel on its right."""
    scale = max(1, 168 // image.shape[0])
    big = image.repeat(scale, 0).repeat(scale, 1)
    return np.concatenate([big, action_panel(action, big.shape[0])], axis=1)


def write_video(path: str | Path, frames: list[np.ndarray], fps: int = 25) -> None:
    """mp4 (H.264 through imageio-ffmpeg), written to a temporary file then renamed."""
    import imageio.v2 as imageio  # noqa: PLC0415

    def write(tmp: Path) -> None:
        with imageio.get_writer(str(tmp), fps=fps, codec="libx264", macro_block_size=8) as w:
            for f in frames:
                w.append_data(f)

    atomic_write_with(path, write, suffix=".mp4")
