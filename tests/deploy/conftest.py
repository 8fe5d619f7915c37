"""Fixtures for the deploy tests (helpers live in deploy_testlib.py)."""

from __future__ import annotations

import os

import pytest
from deploy_testlib import build_policy_onnx

from robo_hybrid.deploy.mock import mock_io_spec
from robo_hybrid.spec import IOSpec

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="module")
def fr3_spec() -> IOSpec:
    """The FR3 pick-and-place spec (franky-sim tests): 32 px front camera, 25 Hz."""
    from robo_hybrid.envs import make_env  # noqa: PLC0415

    env = make_env("fr3_pickplace", render=False, image_size=32)
    spec = env.unwrapped.io_spec
    env.close()
    return spec


@pytest.fixture
def spec100() -> IOSpec:
    """Mock spec at 100 Hz (fast fault tests; stale limit = 50 ms)."""
    return mock_io_spec(image_size=32, control_rate_hz=100.0, episode_steps=0)


@pytest.fixture
def model_path(tmp_path, spec100) -> str:
    """The P-controller policy for spec100."""
    return build_policy_onnx(str(tmp_path / "policy.onnx"), spec100)


@pytest.fixture
def make_model(tmp_path):
    """Factory: make_model(spec, name='policy.onnx', **build_policy_onnx kwargs) -> path."""

    def _make(spec: IOSpec, name: str = "policy.onnx", **kw) -> str:
        return build_policy_onnx(str(tmp_path / name), spec, **kw)

    return _make
