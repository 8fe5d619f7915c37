"""`robo-hybrid bench loop [seconds=20 rate_hz=100 load=2 priority=80 cpu=null link_s=0]` (base install).

Prints the controller loop's p99 period jitter and wake-up lateness without and with the real-time settings,
side by side, under `load` busy-loop processes; with link_s > 0 also a clean authenticated link session of
that length and the refused / stale counts the robot side reported (against the controller's threshold).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from robo_hybrid.cliargs import CliArgError, one_line, parse


@dataclass
class BenchLoopArgs:
    """Arguments of `robo-hybrid bench loop`."""

    seconds: float = 20.0
    """Length of each arm."""
    rate_hz: float = 100.0
    """Loop rate."""
    load: int = 2
    """Busy-loop processes running during both arms."""
    priority: int = 80
    """SCHED_FIFO priority of the real-time arm."""
    cpu: int | None = None
    """CPU of the real-time arm; null = the last allowed one."""
    realtime: str = "require"
    """The real-time arm's mode: require (fail when refused) or auto (warn)."""
    link_s: float = 0.0
    """Also run a clean link session of this many seconds (0 = skip)."""

    def __post_init__(self) -> None:
        if self.seconds <= 0 or self.rate_hz <= 0 or self.load < 0 or self.link_s < 0:
            raise ValueError("seconds and rate_hz must be > 0, load and link_s >= 0")
        if self.realtime not in ("require", "auto"):
            raise ValueError(f"realtime={self.realtime!r}: choose require or auto")


def main(args: list[str]) -> int:
    """Run the benchmark and print its figures."""
    try:
        a = parse(BenchLoopArgs, args)
    except CliArgError as e:
        print(f"bench loop: {e}", file=sys.stderr)
        return 2
    from robo_hybrid.deploy.bench_rt import bench_link, bench_loop
    from robo_hybrid.deploy.realtime import RealtimeError

    try:
        bench_loop(a.seconds, a.rate_hz, a.load, a.priority, a.cpu, a.realtime)
    except RealtimeError as e:
        print(f"bench loop: {one_line(e)}", file=sys.stderr)
        return 1
    if a.link_s > 0:
        bench_link(a.link_s, a.rate_hz)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
