"""`robo-hybrid deploy model=policy.onnx robot=sim|sim_server|mock [deploy.episodes=20 ...]` (base install).

Imports neither torch nor Hydra nor gymnasium: runs on the robot computer. Exit status: 0 when the run ended
without a latch, 1 after a latch (e-stop, hardware error, refused link, overrun stop: the reason in one
line), 2 on bad arguments or a model / robot that cannot run (one line), 143 on SIGTERM during start-up.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Literal

from robo_hybrid.cliargs import CliArgError, one_line, parse
from robo_hybrid.deploy.config import DeployConfig


@dataclass
class DeployArgs:
    """Arguments of `robo-hybrid deploy`."""

    model: str = ""
    """The exported policy.onnx (robo-hybrid export)."""
    robot: Literal["sim", "sim_server", "mock", "franka"] = "sim"
    """sim (in-process MuJoCo), sim_server (own process, ZeroMQ + CURVE), mock (no MuJoCo) or franka (franky)."""
    task: str = ""
    """Simulated robots: the task to simulate; empty = the model's task."""
    deploy: DeployConfig = field(default_factory=DeployConfig)


def main(args: list[str]) -> int:
    """Run the controller loop; see the module docstring for the exit status."""
    try:
        a = parse(DeployArgs, args)
        if not a.model:
            raise CliArgError("model=<policy.onnx> is required (make one with `robo-hybrid export`)")
    except CliArgError as e:
        print(f"deploy: {e}", file=sys.stderr)
        return 2
    from robo_hybrid.deploy.policy import ModelLoadError
    from robo_hybrid.deploy.realtime import RealtimeError
    from robo_hybrid.deploy.robot import RobotError
    from robo_hybrid.deploy.run import Terminated, run_deploy
    from robo_hybrid.spec import SpecMismatchError

    try:
        result = run_deploy(a.model, a.robot, a.deploy, task=a.task or None)
    except (ModelLoadError, SpecMismatchError, RobotError, RealtimeError, ValueError, OSError) as e:
        print(f"deploy: {one_line(e)}", file=sys.stderr)
        return 2
    except Terminated:
        print("deploy: terminated during start-up; nothing was commanded", file=sys.stderr)
        return 143
    if result.get("latch_reason"):
        print(f"deploy: {result['latch_reason']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
