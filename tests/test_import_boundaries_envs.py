"""DESIGN.md's import boundaries: envs/ and deploy/ never import torch; the package root stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; "


@pytest.mark.parametrize(
    "module",
    ["robo_hybrid", "robo_hybrid.spec", "robo_hybrid.envs", "robo_hybrid.envs.arm", "robo_hybrid.envs.demos"],
)
def test_module_imports_without_torch(module):
    code = BLOCK_TORCH + f"import {module}; assert 'torch' not in [m for m in sys.modules if sys.modules[m]]"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_envs_can_step_without_torch():
    code = BLOCK_TORCH + (
        "from robo_hybrid.envs import make_env; e = make_env('push', image_size=16); e.reset(seed=0); "
        "e.step(e.action_space.sample()); e.close()"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
