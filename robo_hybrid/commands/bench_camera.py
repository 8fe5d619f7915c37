"""`python -m robo_hybrid.commands.bench_camera [seconds=10 repeats=2 size=84 rate_hz=25]` (no torch, no Hydra).

Embedded franky-sim's 1 kHz loop with and without the simulated front + wrist cameras rendering its scene, side
by side in one run: ticks per second, tick period p50 / p99 / max and periods over 2 ms (a lost tick), while the
controller drives the arm through robot=franka at the policy rate. Needs franky-control, franky-sim and mujoco.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from robo_hybrid.cliargs import CliArgError, parse


@dataclass
class BenchCameraArgs:
    """Arguments of the simulated-camera starvation benchmark."""

    seconds: float = 10.0
    """Length of each arm."""
    repeats: int = 2
    """Pairs of arms (no render, render), alternating."""
    size: int = 84
    """Camera image size in pixels (square)."""
    rate_hz: float = 25.0
    """Policy rate: the controller's rate and each camera's frame rate."""

    def __post_init__(self) -> None:
        if self.seconds <= 0 or self.repeats < 1 or not 16 <= self.size <= 512 or not 1 <= self.rate_hz <= 500:
            raise ValueError("seconds must be > 0, repeats >= 1, size within 16..512 and rate_hz within 1..500")


def main(args: list[str]) -> int:
    """Run the benchmark and print its figures."""
    try:
        a = parse(BenchCameraArgs, args)
    except CliArgError as e:
        print(f"bench camera: {e}", file=sys.stderr)
        return 2
    from robo_hybrid.bench.sim_camera import bench_sim_camera

    bench_sim_camera(a.seconds, a.repeats, a.size, a.rate_hz)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
