"""Simulation tasks (MuJoCo): rh6 arm tasks and Fetch adapters, scripted experts, demo files. Never imports torch."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402

from robo_hybrid.constants import TASK_IDS, task_name  # noqa: E402

from .common import EnvConfig, RandomizationConfig  # noqa: E402


def _register() -> None:
    for name, gym_id in TASK_IDS.items():
        if gym_id in gym.registry:
            continue
        module = "robo_hybrid.envs.fetch:FetchAdapter" if name.startswith("fetch") else "robo_hybrid.envs.arm:ArmEnv"
        if name.startswith("fr3"):
            module = "robo_hybrid.envs.fr3:FR3Env"  # the FR3 model is loaded from franky-sim at construction
        gym.register(gym_id, entry_point=module, kwargs={"task": name}, disable_env_checker=True)


_register()


def make_env(task: str, cfg: EnvConfig | None = None, render_mode: str | None = None, **cfg_kw) -> gym.Env:
    """Build a task by short name or gymnasium id, with an EnvConfig or its fields as keyword arguments."""
    name = task_name(task)
    if cfg is None:
        cfg = EnvConfig(**cfg_kw)
    elif cfg_kw:
        raise TypeError("pass either cfg or EnvConfig fields as keywords, not both")
    if name.startswith("fetch"):
        from .fetch import FetchAdapter  # noqa: PLC0415

        return FetchAdapter(name, cfg=cfg, render_mode=render_mode)
    if name.startswith("fr3"):
        from .fr3 import FR3Env  # noqa: PLC0415

        return FR3Env(name, cfg=cfg, render_mode=render_mode)
    from .arm import ArmEnv  # noqa: PLC0415

    return ArmEnv(name, cfg=cfg, render_mode=render_mode)


def make_expert(env: gym.Env):
    """The scripted expert for an env built by make_env."""
    if getattr(env.unwrapped, "io_spec", None) is not None and env.unwrapped.io_spec.extras.get("robot") == "fr3":
        from .experts_fr3 import make_fr3_expert  # noqa: PLC0415

        return make_fr3_expert(env)
    from .experts import make_expert as _make  # noqa: PLC0415

    return _make(env)


__all__ = ["TASK_IDS", "EnvConfig", "RandomizationConfig", "make_env", "make_expert", "task_name"]
