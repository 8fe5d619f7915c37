"""Simulated robot server: its own process steps a backend in real time and talks ZeroMQ (see wire.py).

Every control period it applies the newest command (holding the last one when none arrived: zero-order
hold) and publishes the observation with its stamp, episode and sequence number. Robot-side watchdog:
when no command has arrived for `watchdog_s`, it decelerates (xyz scaled by `decel_factor` per step,
then a hold: zero motion, gripper unchanged), as a real arm's controller does when its command link goes quiet.

    python -m robo_hybrid.deploy.sim_server --endpoint tcp://127.0.0.1:5555 --backend sim --task reach
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import zmq

from robo_hybrid.spec import IOSpec

from .robot import Robot
from .safety import stale_limit_s
from .wire import CMD_ACTION, decode_cmd, encode_obs, endpoints

now = time.monotonic


@dataclass
class SimServerConfig:
    """Sim server settings."""

    endpoint: str = "tcp://127.0.0.1:5555"
    """Base endpoint: tcp://HOST:PORT uses PORT..PORT+2; ipc:///path uses /path.obs, .cmd, .ctl."""
    backend: str = "sim"
    """'sim' (robo_hybrid.envs task via MujocoRobot) or 'mock' (MockRobot)."""
    task: str = ""
    """Task id for the sim backend."""
    env_kwargs: dict = field(default_factory=dict)
    """make_env keyword arguments for the sim backend."""
    spec_json: str | None = None
    """Mock backend: the IOSpec (JSON) to provide; None = mock_io_spec()."""
    rate_hz: float | None = None
    """Stepping rate; None = the backend spec's control rate."""
    watchdog_s: float | None = None
    """Command silence that starts the deceleration; None = max(2.5 periods, 50 ms)."""
    decel_factor: float = 0.5
    """Per-step scale on the held xyz command while the watchdog decelerates."""
    seed: int = 0


def make_backend(cfg: SimServerConfig) -> Robot:
    """The local robot the server steps (the sim backend is imported only here, lazily)."""
    if cfg.backend == "mock":
        from .mock import MockRobot

        return MockRobot(IOSpec.from_json(cfg.spec_json) if cfg.spec_json else None, seed=cfg.seed)
    if cfg.backend == "sim":
        from .sim_backend import MujocoRobot

        if not cfg.task:
            raise ValueError("sim server backend 'sim' needs task=<task id>")
        return MujocoRobot(cfg.task, seed=cfg.seed, **cfg.env_kwargs)
    raise ValueError(f"sim server backend {cfg.backend!r}: choose 'sim' or 'mock'")


class SimServer:
    """The server state machine; `serve()` runs it until SIGTERM/SIGINT or a 'shutdown' request."""

    def __init__(self, cfg: SimServerConfig) -> None:
        self.cfg = cfg
        self.backend = make_backend(cfg)
        self.backend.connect()
        self.spec = self.backend.io_spec
        self.period_s = 1.0 / (cfg.rate_hz or self.spec.control_rate_hz)
        self.watchdog_s = cfg.watchdog_s or stale_limit_s(self.period_s)
        self.boot = random.getrandbits(31)
        self.episode = 0
        self.running = True
        self.stopped = False
        self.cmd: np.ndarray | None = None  # None = hold: zero motion, the backend keeps its own gripper state
        self.applied: np.ndarray | None = None  # what the last tick applied (None = a hold)
        self.last_rx_s = -math.inf
        self.last_seq = 0
        self.stats = {"ticks": 0, "cmd_rx": 0, "cmd_stale": 0, "cmd_other_episode": 0, "watchdog_ticks": 0,
                      "overruns": 0, "resets": 0, "stops": 0}  # fmt: skip
        obs_ep, cmd_ep, ctl_ep = endpoints(cfg.endpoint)
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pull = self.ctx.socket(zmq.PULL)
        self.rep = self.ctx.socket(zmq.REP)
        for s, ep in ((self.pub, obs_ep), (self.pull, cmd_ep), (self.rep, ctl_ep)):
            s.setsockopt(zmq.LINGER, 0)
            s.bind(ep)
        self.poller = zmq.Poller()
        self.poller.register(self.pull, zmq.POLLIN)
        self.poller.register(self.rep, zmq.POLLIN)

    def serve(self) -> None:
        """Step at the fixed rate on absolute deadlines until asked to stop."""
        t0, k = now(), 0
        try:
            while self.running:
                self._wait_until(t0 + k * self.period_s)
                self._tick()
                k += 1
                t = now()
                if t > t0 + k * self.period_s:  # overrun: skip ahead, never step twice to catch up
                    self.stats["overruns"] += 1
                    k = int((t - t0) / self.period_s) + 1
        finally:
            self.close()

    def _wait_until(self, deadline: float) -> None:
        """Serve commands and control requests until the deadline (poll, no busy loop)."""
        while self.running:
            remaining_ms = (deadline - now()) * 1000.0
            if remaining_ms <= 0:
                return
            for sock, _ in self.poller.poll(max(int(math.ceil(remaining_ms)), 1)):
                if sock is self.pull:
                    self._on_cmd(sock.recv())
                else:
                    msg = self.rep.recv_json()
                    self.rep.send_json(self._on_ctl(msg if isinstance(msg, dict) else {}))

    def _on_cmd(self, frame: bytes) -> None:
        kind, episode, seq, stamp_s, action = decode_cmd(frame)
        t = now()
        if episode != self.episode:
            self.stats["cmd_other_episode"] += 1
            return
        if t - stamp_s > self.watchdog_s or seq <= self.last_seq:  # queued before a restart, or out of order
            self.stats["cmd_stale"] += 1
            return
        if action.shape != self.spec.action.shape or not np.isfinite(action).all():
            self.stats["cmd_stale"] += 1  # the server never applies a malformed command
            return
        self.last_seq, self.last_rx_s = seq, t
        self.cmd = np.clip(action, -1.0, 1.0) if kind == CMD_ACTION else None
        self.stats["cmd_rx"] += 1

    def _command_for_tick(self) -> np.ndarray | None:
        """Newest command (zero-order hold), the watchdog's deceleration when commands went quiet, None = hold."""
        if self.stopped:
            return None
        if now() - self.last_rx_s <= self.watchdog_s:
            return self.cmd
        self.stats["watchdog_ticks"] += 1
        if self.applied is None:
            return None
        a = self.applied.copy()
        a[:-1] *= self.cfg.decel_factor  # xyz ramps down; the gripper command stays
        return None if np.abs(a[:-1]).max() < 1e-3 else a

    def _tick(self) -> None:
        obs = self.backend.read()
        if not (obs.info.get("terminated") or obs.info.get("truncated")):
            cmd = self._command_for_tick()
            if cmd is None:
                self.backend.hold()
            else:
                self.backend.write(cmd.astype(np.float32))
            self.applied = cmd
        self.stats["ticks"] += 1
        self._publish()

    def _publish(self) -> None:
        self.pub.send(encode_obs(self.backend.read(), self.episode, self.boot, now()))

    def _on_ctl(self, msg: dict) -> dict:
        cmd = msg.get("cmd") if isinstance(msg, dict) else None
        if cmd == "hello":
            return {"io_spec": self.spec.to_json(), "episode": self.episode, "boot": self.boot,
                    "rate_hz": 1.0 / self.period_s, "supports_reset": self.backend.supports_reset}  # fmt: skip
        if cmd == "reset":
            self.backend.reset(msg.get("seed"))
            self.episode += 1
            self.stats["resets"] += 1
            self.cmd, self.applied, self.last_seq, self.last_rx_s = None, None, 0, -math.inf
            self._publish()
            return {"episode": self.episode}
        if cmd == "stop":
            self.stopped = True
            self.stats["stops"] += 1
            return {"ok": True}
        if cmd == "rearm":
            self.stopped, self.cmd = False, None
            return {"ok": True}
        if cmd == "stats":
            applied = "hold" if self.applied is None else self.applied.tolist()
            return {**self.stats, "applied": applied, "stopped": self.stopped, "episode": self.episode}
        if cmd == "shutdown":
            self.running = False
            return {"ok": True}
        return {"error": f"unknown request {cmd!r}; use hello/reset/stop/rearm/stats/shutdown"}

    def close(self) -> None:
        """Close sockets and the backend."""
        for s in (self.pub, self.pull, self.rep):
            s.close(linger=0)
        self.ctx.term()
        self.backend.close()


def main(argv: list[str] | None = None) -> int:
    """CLI: run a sim server until SIGTERM / SIGINT."""
    p = argparse.ArgumentParser(description="robo-hybrid simulated robot server (ZeroMQ)")
    p.add_argument("--config-json", default=None, help="SimServerConfig as JSON (overrides the flags)")
    p.add_argument("--endpoint", default=SimServerConfig.endpoint)
    p.add_argument("--backend", default="sim", choices=["sim", "mock"])
    p.add_argument("--task", default="")
    p.add_argument("--rate-hz", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.config_json:
        cfg = SimServerConfig(**json.loads(a.config_json))
    else:
        cfg = SimServerConfig(endpoint=a.endpoint, backend=a.backend, task=a.task, rate_hz=a.rate_hz, seed=a.seed)
    server = SimServer(cfg)

    def _stop(signum, frame):
        server.running = False

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    rate = 1.0 / server.period_s
    print(f"sim server up: {cfg.backend} {server.spec.task_id} at {cfg.endpoint}, {rate:g} Hz", flush=True)
    server.serve()
    return 0


class SimServerProcess:
    """Start / stop / kill a sim server subprocess (`python -m robo_hybrid.deploy.sim_server`)."""

    def __init__(self, cfg: SimServerConfig, log_path: str | None = None, cleanup_dir: str | None = None) -> None:
        self.cfg = cfg
        self.log_path = log_path
        self.cleanup_dir = cleanup_dir  # removed by stop() (a private ipc socket folder)
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

    def alive(self) -> bool:
        """Whether the process is running."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
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


if __name__ == "__main__":
    sys.exit(main())
