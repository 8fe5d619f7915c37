"""`robo-hybrid sim_server backend=sim|mock task=reach endpoint=tcp://127.0.0.1:5555 keys_dir=...` (base install).

The simulated robot server in the foreground (MuJoCo only for backend=sim); stops on SIGTERM / SIGINT.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal

from robo_hybrid.cliargs import CliArgError, one_line, parse
from robo_hybrid.deploy.config import DEFAULT_KEYS_DIR


@dataclass
class SimServerArgs:
    """Arguments of `robo-hybrid sim_server`."""

    endpoint: str = "tcp://127.0.0.1:5555"
    """Base endpoint: tcp://HOST:PORT uses PORT..PORT+2; ipc:///path uses /path.obs, .cmd, .ctl."""
    backend: Literal["sim", "mock"] = "sim"
    """What the server steps: a robo_hybrid.envs task in MuJoCo, or the MockRobot."""
    task: str = ""
    """Task for backend=sim."""
    rate_hz: float | None = None
    """Stepping rate; null = the backend's spec rate."""
    seed: int = 0
    """Seed of the first episode."""
    keys_dir: str = DEFAULT_KEYS_DIR
    """CURVE keys (created on first start when missing)."""


def main(args: list[str]) -> int:
    """Serve until stopped; 2 with one line on bad arguments or a backend that cannot start."""
    try:
        a = parse(SimServerArgs, args)
    except CliArgError as e:
        print(f"sim_server: {e}", file=sys.stderr)
        return 2
    from robo_hybrid.deploy.sim_server import SimServerConfig, run_server

    try:
        return run_server(SimServerConfig(endpoint=a.endpoint, backend=a.backend, task=a.task, rate_hz=a.rate_hz,
                                          seed=a.seed, keys_dir=a.keys_dir))  # fmt: skip
    except (ValueError, RuntimeError, OSError) as e:
        print(f"sim_server: {one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
