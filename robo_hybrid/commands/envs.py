"""`robo-hybrid envs [out=DIR]`: every task id with its I/O spec; out= writes the camera views as PNG."""

from __future__ import annotations

from robo_hybrid.config import load_config


def main(args: list[str]) -> int:
    """List the tasks (the spec each env declares); with out=DIR also render their camera views."""
    from robo_hybrid.envs import TASK_IDS, make_env  # noqa: PLC0415

    cfg = load_config(args)
    for name, gym_id in TASK_IDS.items():
        env = make_env(name, render=False)
        spec = env.unwrapped.io_spec
        env.close()
        obs = ", ".join(f"{t.name} {t.dtype}{list(t.shape)}" for t in spec.observations)
        print(f"{name:<16} {gym_id:<34} {spec.control_rate_hz:g} Hz, {spec.episode_steps} steps")
        print(f"{'':<16} policy in: {obs}; action: {list(spec.action_meaning)} in [-1, 1] "
              f"(xyz x {spec.max_ee_delta_m} m/step); privileged: {list(spec.privileged_keys)}")
    if cfg.out:
        from robo_hybrid.envs.bench import render_task_views  # noqa: PLC0415

        for p in render_task_views(cfg.out, list(TASK_IDS)):
            print("wrote", p)
    return 0
