"""`robo-hybrid <command> [key=value ...]`: the one entry point.

Each command is one module of robo_hybrid.commands with `main(args) -> int`, imported only when it runs: the
robot-side commands (deploy, sim-server, keys, bench loop) import neither torch nor Hydra, so they run on a base
install. Errors in user input print one line naming the problem and the fix, never a traceback (--debug shows it).
"""

from __future__ import annotations

import importlib
import sys

USAGE = """usage: robo-hybrid <command> [key=value ...]

training side (Hydra overrides, e.g. task=pickplace algo.steps=6000):
  run                 main job: collect demos -> BC -> eval -> export ONNX -> controller loop on the sim robot
  envs                list the task ids with their I/O spec (out=DIR writes camera views as PNG)
  collect             scripted-expert demos to an HDF5 file (task=... episodes=... out=... workers=...)
  train               train a policy (algo=bc data=... | algo=ppo checkpoint=...)
  eval                evaluate a checkpoint on held-out seeds (checkpoint=... eval.episodes=...)
  export              export a checkpoint to ONNX (checkpoint=... out=policy.onnx)
  ablate              PPO ablation table from one BC checkpoint (ablation.variants=[...])
  bench envs|latency|learn|train|rl
                      benchmarks that print figures (bench.<name>.* settings)
robot side (no torch, no Hydra):
  deploy              run the torch-free controller loop (model=policy.onnx robot=sim|sim_server|mock)
  sim-server          the simulated robot server over ZeroMQ
  keys                make the CURVE key pairs of the robot link
  bench loop          controller-loop timing with and without real-time scheduling
  bench sim2sim       one controller on franky-sim (robot=franka) and in our FR3 env, on the same seeds
  bench camera        franky-sim's 1 kHz loop with and without the simulated cameras rendering
Show the resolved config of a command with `robo-hybrid <command> --cfg`.
"""

# command -> module of robo_hybrid.commands
COMMANDS: dict[str, str] = {
    "run": "run", "envs": "envs", "collect": "collect", "train": "train", "eval": "eval", "export": "export",
    "ablate": "ablate", "bench": "bench", "deploy": "deploy", "sim-server": "sim_server", "keys": "keys",
}
ROBOT_SIDE = ("deploy", "sim-server", "keys")


def _is_user_error(e: BaseException) -> bool:
    """Errors that describe bad input: the project's own error types and the standard ones it raises for input."""
    own = type(e).__module__.startswith("robo_hybrid")
    return own or isinstance(e, (ValueError, FileNotFoundError, FileExistsError, PermissionError))


def _print_config(cmd: str, args: list[str]) -> int:
    if cmd in ROBOT_SIDE or (cmd == "bench" and args[:1] in (["loop"], ["sim2sim"], ["camera"])):
        module = importlib.import_module(f"robo_hybrid.commands.{COMMANDS[cmd]}")
        return int(module.main([*args, "--cfg"]))
    from omegaconf import OmegaConf  # noqa: PLC0415

    from robo_hybrid.config import load_config  # noqa: PLC0415

    print(OmegaConf.to_yaml(OmegaConf.structured(load_config(args[1:] if cmd == "bench" else args))))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Dispatch a command; errors in user input print one clear line, not a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    cmd, args = argv[0], argv[1:]
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    if cmd not in COMMANDS:
        print(f"robo-hybrid: unknown command '{cmd}'; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        if "--cfg" in args:
            return _print_config(cmd, [a for a in args if a != "--cfg"])
        return int(importlib.import_module(f"robo_hybrid.commands.{COMMANDS[cmd]}").main(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug or not _is_user_error(e):
            raise
        msg = str(e).strip().split("\n")[0] or type(e).__name__
        print(f"robo-hybrid {cmd}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
