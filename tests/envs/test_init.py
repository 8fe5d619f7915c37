"""envs/__init__.py: every task id registered, make_env by name or id, one task list, clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import pytest

import robo_hybrid.envs as envs
from robo_hybrid.constants import HELD_OUT_SEED_BASE
from robo_hybrid.envs import TASK_IDS, EnvConfig, make_env

ENVS_DIR = Path(envs.__file__).resolve().parent


def test_unknown_task_names_the_choices():
    with pytest.raises(ValueError, match="choose one of"):
        make_env("nosuch")



def test_every_task_is_registered_and_built_by_name_or_id():
    for name, gym_id in TASK_IDS.items():
        assert gym_id in gym.registry, gym_id
        for key in (name, gym_id):
            env = make_env(key, render=False)
            assert env.unwrapped.io_spec.task_id == gym_id
            env.close()
    with pytest.raises(TypeError, match="not both"):
        make_env("push", cfg=EnvConfig(), render=False)


def test_no_second_task_list_or_seed_base_in_envs():
    """Task ids and the held-out seed base are defined once, in robo_hybrid.constants."""
    base = re.compile(rf"\b({HELD_OUT_SEED_BASE}|{HELD_OUT_SEED_BASE:_})\b")
    for path in sorted(ENVS_DIR.glob("*.py")):
        text = path.read_text()
        assert not base.search(text), f"{path.name} spells out the held-out seed base"
        for gym_id in TASK_IDS.values():
            assert gym_id not in text, f"{path.name} spells out the task id {gym_id}"
