"""Fixtures for the policy tests: synthetic I/O specs (helpers live in policy_testlib.py)."""

from __future__ import annotations

import pytest

from robo_hybrid.spec import IOSpec
from robo_hybrid.training.data import make_synthetic_demos


@pytest.fixture(scope="session")
def spec32() -> IOSpec:
    """Spec of 32 px single-camera synthetic demos."""
    return make_synthetic_demos(1, 2, image_size=32).spec


@pytest.fixture(scope="session")
def spec32_wrist() -> IOSpec:
    """Spec with a wrist camera as well."""
    return make_synthetic_demos(1, 2, image_size=32, wrist_camera=True).spec
