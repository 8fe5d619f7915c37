"""envs/common.py: EnvConfig / RandomizationConfig validation, spaces from the I/O spec."""

from __future__ import annotations

import numpy as np
import pytest

from robo_hybrid.envs import EnvConfig, RandomizationConfig, make_env
from robo_hybrid.envs.common import ACTION_DIM, image_keys, spaces_from_spec
from robo_hybrid.envs.rewards import RewardWeights


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 4}, "image_size"),
        ({"reward": "shaped"}, "reward"),
        ({"camera": "top"}, "camera"),
        ({"randomization": {"enabled": True, "friction_range": (2.0, 1.0)}}, "friction_range"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_env("push", **kwargs)


def test_nested_configs_are_built_from_dicts():
    """Hydra and demo files hand over plain dicts; EnvConfig turns them into their dataclasses."""
    cfg = EnvConfig(randomization={"enabled": True}, reward_weights={"tcp_to_object_m": -1.0})
    assert isinstance(cfg.randomization, RandomizationConfig) and cfg.randomization.enabled
    assert cfg.reward_weights == RewardWeights(tcp_to_object_m=-1.0)
    with pytest.raises(ValueError, match="low <= high"):
        RandomizationConfig(object_mass_range=(1.5, 0.5))


def test_spaces_follow_the_spec():
    env = make_env("push", image_size=32, wrist_camera=True, render=False)
    spec = env.unwrapped.io_spec
    obs_space, act_space = spaces_from_spec(spec)
    assert set(obs_space.spaces) == set(spec.policy_keys) | set(spec.privileged_keys)
    assert obs_space["image"].dtype == np.uint8 and obs_space["image"].shape == (32, 32, 3)
    assert act_space.shape == (ACTION_DIM,) and act_space.low.min() == -1.0 and act_space.high.max() == 1.0
    assert image_keys(env.unwrapped.cfg) == ("image", "image_wrist")
    env.close()
