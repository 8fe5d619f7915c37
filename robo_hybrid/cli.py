"""`robo-hybrid <command> [key=value ...]`: one entry point, Hydra overrides for every command."""

from __future__ import annotations

import sys
from collections.abc import Callable

USAGE = """usage: robo-hybrid <command> [hydra overrides, e.g. task=push episodes=200]

commands:
  run                 main job: collect demos -> BC -> export ONNX -> controller loop on the sim robot
  envs                list the task ids with their I/O spec (render=DIR writes camera views as PNG)
  collect             scripted-expert demos to an HDF5 file (task=... episodes=... out=... workers=...)
  train               train a policy (algo=bc data=... | algo=ppo checkpoint=...)
  eval                evaluate a checkpoint on held-out seeds (checkpoint=... episodes=...)
  export              export a checkpoint to ONNX (checkpoint=... out=policy.onnx)
  deploy              run the torch-free controller loop (model=policy.onnx robot=sim|sim_server)
  bench envs|latency|learn
                      benchmarks that print figures
Show the resolved config of a command with `robo-hybrid <command> --cfg`.
"""


def _compose(overrides: list[str]):
    from robo_hybrid.config import compose_config  # noqa: PLC0415

    return compose_config([a for a in overrides if a != "--debug"])


def load_config(overrides: list[str]):
    """Composed, validated root Config dataclass for a command's overrides."""
    from robo_hybrid.config import to_dataclass  # noqa: PLC0415

    return to_dataclass(_compose(overrides))


def cmd_envs(args: list[str]) -> int:
    """List every task id with its I/O spec; `render=DIR` writes the camera views as PNG."""
    from robo_hybrid.envs import TASK_IDS, make_env  # noqa: PLC0415

    opts = dict(a.split("=", 1) for a in args if "=" in a)
    for name, gym_id in TASK_IDS.items():
        env = make_env(name, render=False)
        spec = env.unwrapped.io_spec
        env.close()
        obs = ", ".join(f"{t.name} {t.dtype}{list(t.shape)}" for t in spec.observations)
        print(f"{name:<16} {gym_id:<34} {spec.control_rate_hz:g} Hz, {spec.episode_steps} steps")
        print(f"{'':<16} policy in: {obs}; action: {list(spec.action_meaning)} in [-1, 1] "
              f"(xyz x {spec.max_ee_delta_m} m/step); privileged: {list(spec.privileged_keys)}")
    if "render" in opts:
        from robo_hybrid.envs.bench import render_task_views  # noqa: PLC0415

        for p in render_task_views(opts["render"], list(TASK_IDS)):
            print("wrote", p)
    return 0


def cmd_collect(args: list[str]) -> int:
    """Scripted-expert demonstrations for cfg.task into cfg.out."""
    from robo_hybrid.envs.demos import collect  # noqa: PLC0415

    cfg = load_config(args)
    out = cfg.out or cfg.data
    r = collect(cfg.task.name, cfg.task.env, cfg.episodes, out, seed=cfg.seed, workers=cfg.workers,
                action_noise=cfg.task.demo_action_noise)
    print(f"wrote {r.path}: {r.episodes} episodes, expert success {r.success_rate:.1%}, "
          f"{r.env_steps} steps in {r.wall_s:.1f} s ({r.steps_per_s:.0f} env steps/s with {cfg.workers} worker(s))")
    return 0


def cmd_bench(args: list[str]) -> int:
    """Benchmarks: `bench envs`, `bench latency model=...`, `bench learn`."""
    if not args or args[0] not in ("envs", "latency", "learn"):
        print("usage: robo-hybrid bench envs|latency|learn [key=value ...]", file=sys.stderr)
        return 2
    what, rest = args[0], args[1:]
    opts = dict(a.split("=", 1) for a in rest if "=" in a)
    if what == "envs":
        from robo_hybrid.envs.bench import bench_envs  # noqa: PLC0415

        tasks = opts.get("tasks", "reach,push,pickplace,fetch_pickplace").split(",")
        workers = [int(w) for w in opts.get("workers", "1,2").split(",")]
        bench_envs(tasks, workers, steps=int(opts.get("steps", 1000)), repeats=int(opts.get("repeats", 3)))
        return 0
    from robo_hybrid import benchmarks  # noqa: PLC0415

    return getattr(benchmarks, f"bench_{what}")(rest)


def _lazy(module: str, func: str) -> Callable[[list[str]], int]:
    def run(args: list[str]) -> int:
        import importlib  # noqa: PLC0415

        return getattr(importlib.import_module(module), func)(args)

    return run


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "envs": cmd_envs,
    "collect": cmd_collect,
    "bench": cmd_bench,
    "train": _lazy("robo_hybrid.commands", "cmd_train"),
    "eval": _lazy("robo_hybrid.commands", "cmd_eval"),
    "export": _lazy("robo_hybrid.commands", "cmd_export"),
    "deploy": _lazy("robo_hybrid.commands", "cmd_deploy"),
    "run": _lazy("robo_hybrid.commands", "cmd_run"),
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch a sub-command; errors in user input print one clear line, not a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    cmd, args = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"unknown command '{cmd}'\n{USAGE}", file=sys.stderr)
        return 2
    if "--cfg" in args:
        from omegaconf import OmegaConf  # noqa: PLC0415

        print(OmegaConf.to_yaml(_compose([a for a in args if a != "--cfg"])))
        return 0
    try:
        return int(COMMANDS[cmd](args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # user-input errors become one clear line; anything else keeps its traceback
        config_error = type(e).__module__.split(".")[0] in ("hydra", "omegaconf")
        if "--debug" in args or not (config_error or isinstance(e, (ValueError, FileNotFoundError, KeyError))):
            raise
        msg = str(e).split("\n")[0] if config_error else str(e)
        hint = " (see `robo-hybrid <command> --cfg` for the valid keys)" if config_error else ""
        print(f"robo-hybrid {cmd}: error: {msg}{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
