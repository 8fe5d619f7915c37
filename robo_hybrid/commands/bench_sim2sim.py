"""`robo-hybrid bench sim2sim [controller=expert|onnx model=policy.onnx episodes=50 ...]` (no torch, no Hydra).

Runs one controller on franky-sim through `robot=franka` (a real franky-sim in its own process, libfranka's
protocol, real time) and in our FR3 env on the same seeds, and prints both success rates with Wilson intervals
(robo_hybrid/bench/fr3_sim2sim.py). `bench sim2sim motion=true` prints the TCP paths of both for the same action
sequences instead (robo_hybrid/bench/fr3_motion.py). Needs franky-control and franky-sim ([dev] or [franka] +
franky-sim). Run it alone on the machine: franky-sim runs in real time and a loaded CPU slows its clock.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal

from robo_hybrid.cliargs import CliArgError, one_line, parse


@dataclass
class BenchSim2SimArgs:
    """Arguments of `robo-hybrid bench sim2sim`."""

    task: Literal["fr3_pickplace", "fr3_reach"] = "fr3_pickplace"
    """FR3 task (its seeds, scene and success rule)."""
    controller: Literal["expert", "onnx"] = "expert"
    """The scripted expert (reads the cube), or an exported policy (model=)."""
    model: str = ""
    """policy.onnx for controller=onnx."""
    episodes: int = 50
    """Episodes on each side, seeds seed_base .. seed_base + episodes - 1."""
    seed_base: int = 1_000_000
    """First seed (1000000 = the evaluator's held-out seeds)."""
    safety: bool = True
    """The safety filter's rate limit on the franky-sim side (off: actions reach the driver unchanged)."""
    slowdown: float = 1.0
    """franky-sim at 1 / slowdown of real time, the loop at the policy rate / slowdown (> 1 on a loaded machine,
    where franky-sim cannot keep 1 kHz: the printed simulated ms per period should read 1000 / rate)."""
    motion: bool = False
    """Instead: the TCP paths of both sides for the same action sequences (per-step error table)."""
    motion_steps: int = 60
    """Actions per motion sequence."""

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.motion_steps < 6 or self.slowdown < 1.0:
            raise ValueError("episodes must be >= 1, motion_steps >= 6 and slowdown >= 1")
        if self.controller == "onnx" and not self.model:
            raise ValueError("controller=onnx needs model=<policy.onnx> (export one with `robo-hybrid export`)")


def main(args: list[str]) -> int:
    """Run the comparison and print its figures."""
    try:
        a = parse(BenchSim2SimArgs, args)
    except CliArgError as e:
        print(f"bench sim2sim: {e}", file=sys.stderr)
        return 2
    try:
        if a.motion:
            from robo_hybrid.bench.fr3_motion import compare_motion

            compare_motion(a.motion_steps)
            return 0
        from robo_hybrid.bench.fr3_sim2sim import run_sim2sim

        run_sim2sim(a.task, a.episodes, a.seed_base, a.controller, a.model, a.safety, slowdown=a.slowdown)
    except (ModuleNotFoundError, RuntimeError) as e:
        print(f"bench sim2sim: {one_line(e)}", file=sys.stderr)
        return 1
    return 0
