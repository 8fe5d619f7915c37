"""DeployConfig: the settings of `robo-hybrid deploy` and of the main job's controller run (torch-free).

`RATE_HZ_MIN` / `RATE_HZ_MAX` are the one range of control rates: the loop, the sim server and this config
all check against it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from robo_hybrid.constants import HELD_OUT_SEED_BASE

RATE_HZ_MIN, RATE_HZ_MAX = 1.0, 1000.0
DEFAULT_KEYS_DIR = os.path.join("~", ".config", "robo_hybrid", "keys")


def check_rate_hz(rate_hz: float | None, name: str) -> None:
    """Raise ValueError unless `rate_hz` is None (= the model's) or within RATE_HZ_MIN..RATE_HZ_MAX."""
    if rate_hz is not None and not (math.isfinite(rate_hz) and RATE_HZ_MIN <= rate_hz <= RATE_HZ_MAX):
        raise ValueError(f"{name}={rate_hz}: must be within {RATE_HZ_MIN:g}..{RATE_HZ_MAX:g} Hz "
                         "(or null = the model's rate)")  # fmt: skip


@dataclass
class DeployConfig:
    """The torch-free controller loop (`robo-hybrid deploy`, and the main job's last stage)."""

    episodes: int = 20
    """Episodes to run on the robot (sim robots reset between episodes)."""
    rate_hz: float | None = None
    """Control rate; None = the rate in the model's I/O spec."""
    seed: int = HELD_OUT_SEED_BASE
    """Seed of the first sim episode (held-out seeds, as in evaluation); episode e uses seed + e."""
    max_steps: int = 0
    """Control cycles per episode (0 = the spec's episode length, or 250 when it has none)."""
    safety: bool = True
    """Rate limit and workspace box between policy and robot (finite checks, watchdogs, e-stop always stay on)."""
    estop_file: str = ""
    """If this file appears, the e-stop latches (SIGUSR1 does the same); empty = no file."""
    temporal_ensemble_m: float | None = None
    """ACT temporal-ensembling weight exp(-m * i) for chunk policies; None = no ensembling."""
    log_dir: str = ""
    """Telemetry CSV / JSON / histogram PNG and deploy_result.json folder; empty = nothing written."""
    plot: bool = True
    """Write the cycle-time histogram PNG into log_dir (needs matplotlib; skipped without it)."""
    endpoint: str = ""
    """robot=sim_server: the server's base endpoint; empty = a private ipc endpoint in a temporary folder."""
    sim_backend: str = "sim"
    """robot=sim_server: what the server steps, MuJoCo ('sim') or the MockRobot ('mock', no MuJoCo)."""
    keys_dir: str = DEFAULT_KEYS_DIR
    """CURVE key files of the robot link (made by `robo-hybrid keys`, or on first start when missing)."""
    link_refused_max: int = 10
    """Latch when the robot side reports more than this many refused / stale / bogus commands ..."""
    link_window_s: float = 2.0
    """... within this window (s). A clean run reports none, so normal jitter never gets near it."""
    allow_other_task: bool = False
    """Run a model trained for another task than the robot's (the robot's limits still apply)."""
    realtime: str = "auto"
    """SCHED_FIFO + mlockall + CPU pinning for the loop: auto = when permitted (warn otherwise); require = or fail."""
    realtime_priority: int = 80
    """SCHED_FIFO priority (1..99) of the loop thread."""
    realtime_cpu: int | None = None
    """CPU the loop is pinned to; None = the last CPU this process may use."""
    host: str = ""
    """robot=franka: the arm's FCI address (franky-sim: 127.0.0.1)."""
    dynamics_factor: float | None = None
    """robot=franka: franky's relative dynamics factor (0, 1]; None = the model's (spec extras), else 0.15."""
    cameras: str = ""
    """robot=franka: camera per image key, e.g. image=opencv:0,image_wrist=realsense:<serial> (or a .bag)."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"deploy.episodes={self.episodes}: must be >= 1")
        if self.max_steps < 0:
            raise ValueError(f"deploy.max_steps={self.max_steps}: must be >= 0 (0 = the spec's episode length)")
        check_rate_hz(self.rate_hz, "deploy.rate_hz")
        if self.temporal_ensemble_m is not None and not (math.isfinite(self.temporal_ensemble_m)
                                                         and self.temporal_ensemble_m >= 0):  # fmt: skip
            raise ValueError(f"deploy.temporal_ensemble_m={self.temporal_ensemble_m}: must be >= 0 (or null = off)")
        if self.link_refused_max < 0 or not self.link_window_s > 0:
            raise ValueError("deploy.link_refused_max must be >= 0 and deploy.link_window_s > 0")
        if not 1 <= self.realtime_priority <= 99:
            raise ValueError(f"deploy.realtime_priority={self.realtime_priority}: SCHED_FIFO priorities are 1..99")
        if self.realtime_cpu is not None and self.realtime_cpu < 0:
            raise ValueError(f"deploy.realtime_cpu={self.realtime_cpu}: must be a CPU index >= 0 (or null)")
        if self.sim_backend not in ("sim", "mock"):
            raise ValueError(f"deploy.sim_backend={self.sim_backend!r}: choose 'sim' or 'mock'")
        if self.realtime not in ("auto", "off", "require"):
            raise ValueError(f"deploy.realtime={self.realtime!r}: choose auto, off or require")
        if self.dynamics_factor is not None and not 0.0 < self.dynamics_factor <= 1.0:
            raise ValueError(f"deploy.dynamics_factor={self.dynamics_factor}: franky accepts (0, 1] (or null)")
        if not self.keys_dir:
            raise ValueError("deploy.keys_dir is empty: the robot link needs its key files (robo-hybrid keys)")
