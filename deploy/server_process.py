"""SimServerProcess: start / stop / kill a sim server subprocess (`python -m robo_hybrid.deploy.sim_server`).

The child is told its parent's pid: it asks the kernel for SIGTERM when the parent dies (PR_SET_PDEATHSIG)
and also checks the pid every tick, so a controller killed with SIGKILL leaves no server stepping under PID 1;
the child removes its private ipc folder itself on the way out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, replace

from .sim_server import SimServerConfig


class SimServerProcess:
    """A sim server in its own process, owned by this one."""

    def __init__(self, cfg: SimServerConfig, log_path: str | None = None, cleanup_dir: str | None = None,
                 idle_exit_s: float | None = 30.0) -> None:  # fmt: skip
        self.cfg = replace(cfg, parent_pid=os.getpid(), cleanup_dir=cleanup_dir or cfg.cleanup_dir,
                           idle_exit_s=cfg.idle_exit_s if cfg.idle_exit_s is not None else idle_exit_s)  # fmt: skip
        self.log_path = log_path
        self.cleanup_dir = self.cfg.cleanup_dir  # removed by stop() too (the child may have been SIGKILLed)
        self.proc: subprocess.Popen | None = None

    def start(self) -> SimServerProcess:
        """Launch the server process (returns at once; ZmqRobot.connect waits for it)."""
        cmd = [sys.executable, "-m", "robo_hybrid.deploy.sim_server", "--config-json", json.dumps(asdict(self.cfg))]
        env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
        if self.log_path:
            with open(self.log_path, "ab") as out:  # the child keeps its own descriptor
                self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        else:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        return self

    @property
    def pid(self) -> int | None:
        """The server's pid while started."""
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        """Whether the process is running."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time; remove the cleanup folder."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.cleanup_dir:
            shutil.rmtree(self.cleanup_dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL (a crash, for tests)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def __enter__(self) -> SimServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
