"""Shared fixtures: tiny demo files and tiny policies, built once per session."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402
import torch  # noqa: E402,F401  (torch before any GL context: triton's LLVM clashes with Mesa's)

import robo_hybrid.policy  # noqa: E402,F401  (loads what it needs from torch before any GL context too)
from robo_hybrid.envs import EnvConfig  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def push_demos_32(tmp_path_factory):
    """Three expert demos of Push at 32 x 32 pixels."""
    from robo_hybrid.envs.demos import collect

    path = tmp_path_factory.mktemp("demos") / "push32.hdf5"
    collect("push", EnvConfig(image_size=32), episodes=3, out=path, seed=0, workers=1, progress=False)
    return path


@pytest.fixture(scope="session")
def tiny_policy_cfg():
    """A policy small enough for fast tests."""
    from robo_hybrid.policy.config import PolicyConfig

    return PolicyConfig(d_model=32, n_layers=1, n_heads=2, conv_channels=[8, 16])
