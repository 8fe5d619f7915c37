"""Simulated robot server: its own process steps a backend in real time and talks ZeroMQ (see wire.py).

Every control period it applies the newest command (holding the last one when none arrived: zero-order
hold) and publishes the observation with its stamp, episode and the link's refused / stale counters.
Robot-side watchdog: when no command has arrived for `watchdog_s`, it decelerates (xyz scaled by
`decel_factor` per step, then a hold: zero motion, gripper unchanged), as a real arm's controller does.

Hardening: every socket is a CURVE server behind a ZAP allow-list (auth.py) with a maximum message size;
anything undecodable is dropped and counted, never raised; commands are accepted only from the session the
newest `hello` opened, with increasing sequence numbers and finite, not-future, fresh stamps. The server
exits when its parent dies (PR_SET_PDEATHSIG, and a parent-pid check) or its controller goes quiet.

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
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import zmq

from robo_hybrid.spec import IOSpec

from .auth import ServerAuth, ensure_keys
from .config import DEFAULT_KEYS_DIR, check_rate_hz
from .robot import Robot
from .safety import stale_limit_s
from .wire import CMD_ACTION, MAX_CMD_BYTES, MAX_CTL_BYTES, WireError, decode_cmd, decode_ctl, encode_obs, endpoints

now = time.monotonic
FUTURE_TOLERANCE_S = 0.005  # same host, same CLOCK_MONOTONIC: a command cannot come from the future
MAX_SEQ_JUMP = 1000  # the client numbers every command it sends; a bigger gap is not ours


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
    """Seed of the backend's first episode."""
    keys_dir: str = DEFAULT_KEYS_DIR
    """CURVE keys (auth.py layout); created on first start when missing."""
    parent_pid: int | None = None
    """Exit when this process (the controller that started the server) is gone."""
    idle_exit_s: float | None = None
    """Exit when the session's controller has sent nothing for this long (None = serve forever)."""
    cleanup_dir: str | None = None
    """Folder removed when the server exits (the private ipc folder of its endpoint)."""


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
    """The server state machine; `serve()` runs it until SIGTERM/SIGINT, a 'shutdown' request, or orphaning."""

    def __init__(self, cfg: SimServerConfig) -> None:
        check_rate_hz(cfg.rate_hz, "sim server rate_hz")
        self.cfg = cfg
        self.backend = make_backend(cfg)
        self.backend.connect()
        self.spec = self.backend.io_spec
        self.period_s = 1.0 / (cfg.rate_hz or self.spec.control_rate_hz)
        self.watchdog_s = cfg.watchdog_s or stale_limit_s(self.period_s)
        self.boot = random.getrandbits(31)
        self.episode = 0
        self.running, self.stopped = True, False
        self.session, self.session_user = 0, b""  # 0 = no controller has said hello yet
        self.cmd: np.ndarray | None = None  # None = hold: zero motion, the backend keeps its own gripper state
        self.applied: np.ndarray | None = None  # what the last tick applied (None = a hold)
        self.last_rx_s = -math.inf
        self.last_peer_s = now()
        self.last_seq = 0
        self.stats = dict.fromkeys(("ticks", "cmd_rx", "cmd_stale", "cmd_refused", "cmd_bogus", "cmd_bad",
                                    "cmd_other_episode", "ctl_bad", "ctl_refused", "watchdog_ticks", "overruns",
                                    "resets", "stops"), 0)  # fmt: skip
        self.ctx = zmq.Context()
        self.auth = ServerAuth(self.ctx, ensure_keys(cfg.keys_dir))
        self.pub, self.pull, self.rep = (self.ctx.socket(t) for t in (zmq.PUB, zmq.PULL, zmq.REP))
        limits = ((self.pub, MAX_CTL_BYTES), (self.pull, MAX_CMD_BYTES), (self.rep, MAX_CTL_BYTES))
        for (s, max_bytes), ep in zip(limits, endpoints(cfg.endpoint), strict=True):
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.MAXMSGSIZE, max_bytes)  # larger: libzmq drops the peer before we see a byte
            self.auth.secure(s)
            s.bind(ep)
        self.poller = zmq.Poller()
        self.poller.register(self.pull, zmq.POLLIN)
        self.poller.register(self.rep, zmq.POLLIN)

    def link_counts(self) -> dict[str, int]:
        """What the controller watches: commands / peers refused, stale commands, bogus or undecodable messages."""
        st = self.stats
        return {"refused": st["cmd_refused"] + st["ctl_refused"] + self.auth.refused, "stale": st["cmd_stale"],
                "bogus": st["cmd_bogus"] + st["cmd_bad"] + st["ctl_bad"]}  # fmt: skip

    def serve(self) -> None:
        """Step at the fixed rate on absolute deadlines until asked to stop."""
        t0, k = now(), 0
        try:
            while self.running:
                self._wait_until(t0 + k * self.period_s)
                self._tick()
                self._check_orphaned()
                k += 1
                t = now()
                if t > t0 + k * self.period_s:  # overrun: skip ahead, never step twice to catch up
                    self.stats["overruns"] += 1
                    k = int((t - t0) / self.period_s) + 1
        finally:
            self.close()

    def _check_orphaned(self) -> None:
        """Stop when the parent is gone or the session's controller has been quiet for idle_exit_s."""
        if self.cfg.parent_pid is not None and os.getppid() != self.cfg.parent_pid:
            print("sim server: parent process gone; stopping", flush=True)
            self.running = False
        idle = self.cfg.idle_exit_s
        if idle is not None and self.session and now() - self.last_peer_s > idle:
            print(f"sim server: controller quiet for {idle:g} s; stopping", flush=True)
            self.running = False

    def _wait_until(self, deadline: float) -> None:
        """Serve commands and control requests until the deadline (poll, no busy loop)."""
        while self.running:
            remaining_ms = (deadline - now()) * 1000.0
            if remaining_ms <= 0:
                return
            for sock, _ in self.poller.poll(max(int(math.ceil(remaining_ms)), 1)):
                frames = sock.recv_multipart(copy=False)
                user = _user_id(frames[0])
                if sock is self.pull:
                    self._on_cmd([f.bytes for f in frames], user)
                else:
                    reply = self._on_ctl_frames([f.bytes for f in frames], user)
                    self.rep.send(json.dumps(reply).encode())  # REP must answer every request, even garbage

    def _on_cmd(self, frames: list[bytes], user: bytes) -> None:
        try:
            if len(frames) != 1:
                raise WireError(f"{len(frames)} frames")
            kind, episode, session, seq, stamp_s, action = decode_cmd(frames[0])
        except WireError:
            self.stats["cmd_bad"] += 1  # dropped and counted; the server keeps serving
            return
        t = now()
        if not self.session or session != self.session or user != self.session_user:
            self.stats["cmd_refused"] += 1  # not the controller that opened the current session
            return
        if episode != self.episode:
            self.stats["cmd_other_episode"] += 1  # in flight across a reset: expected, not an attack
            return
        if not math.isfinite(stamp_s) or stamp_s > t + FUTURE_TOLERANCE_S or seq > self.last_seq + MAX_SEQ_JUMP:
            self.stats["cmd_bogus"] += 1
            return
        if t - stamp_s > self.watchdog_s or seq <= self.last_seq:  # queued before a restart, or out of order
            self.stats["cmd_stale"] += 1
            return
        if action.shape != self.spec.action.shape or not np.isfinite(action).all():
            self.stats["cmd_bogus"] += 1  # the server never applies a malformed command
            return
        self.last_seq, self.last_rx_s, self.last_peer_s = seq, t, t
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
        self.pub.send(encode_obs(self.backend.read(), self.episode, self.boot, now(), self.link_counts()))

    def _on_ctl_frames(self, frames: list[bytes], user: bytes) -> dict:
        try:
            msg = decode_ctl(frames)
        except WireError as e:
            self.stats["ctl_bad"] += 1
            return {"error": f"malformed request dropped: {e}"}
        try:
            return self._on_ctl(msg, user)
        except Exception as e:  # a backend failure answers the request; it never kills the watchdog's process
            return {"error": f"{msg['cmd']} failed: {e!r}"}

    def _on_ctl(self, msg: dict, user: bytes) -> dict:
        cmd = msg["cmd"]
        if cmd == "hello":  # a new session: only the newest controller's commands are accepted from now on
            self.session, self.session_user = random.getrandbits(63) or 1, user
            self.last_seq, self.last_peer_s = 0, now()
            return {"io_spec": self.spec.to_json(), "rate_hz": 1.0 / self.period_s, "session": self.session,
                    "supports_reset": self.backend.supports_reset, "limits": self.backend.limits.to_dict()}  # fmt: skip
        if cmd == "stop":  # stopping is always safe: any authenticated peer may
            self.stopped = True
            self.stats["stops"] += 1
            return {"ok": True}
        if cmd == "stats":
            applied = "hold" if self.applied is None else self.applied.tolist()
            return {**self.stats, **self.link_counts(), "zap_refused": self.auth.refused, "applied": applied,
                    "stopped": self.stopped}  # fmt: skip
        if not self.session or msg.get("session") != self.session or user != self.session_user:
            self.stats["ctl_refused"] += 1
            return {"error": f"{cmd!r} refused: not the current session (send hello first)"}
        self.last_peer_s = now()
        if cmd == "rearm":
            self.stopped, self.cmd = False, None
            return {"ok": True, "episode": self.episode, "boot": self.boot}
        if cmd == "reset":
            self.backend.reset(msg.get("seed"))
            self.episode += 1
            self.stats["resets"] += 1
            self.cmd, self.applied, self.last_rx_s = None, None, -math.inf
            self._publish()
            return {"episode": self.episode}
        self.running = False  # shutdown
        return {"ok": True}

    def close(self) -> None:
        """Close sockets, the ZAP thread and the backend; remove the cleanup folder."""
        for s in (self.pub, self.pull, self.rep):
            s.close(linger=0)
        self.auth.stop()
        self.ctx.term()
        self.backend.close()
        if self.cfg.cleanup_dir:
            shutil.rmtree(self.cfg.cleanup_dir, ignore_errors=True)


def _user_id(frame: zmq.Frame) -> bytes:
    """The ZAP user id (the client's z85 public key) of an authenticated message; b'' when there is none."""
    try:
        return (frame.get("User-Id") or "").encode()
    except zmq.ZMQError:
        return b""


def die_with_parent() -> bool:
    """Linux: ask the kernel to SIGTERM this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(1, signal.SIGTERM, 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    """CLI: run a sim server until SIGTERM / SIGINT."""
    p = argparse.ArgumentParser(description="robo-hybrid simulated robot server (ZeroMQ, CURVE)")
    p.add_argument("--config-json", default=None, help="SimServerConfig as JSON (overrides the flags)")
    p.add_argument("--endpoint", default=SimServerConfig.endpoint)
    p.add_argument("--backend", default="sim", choices=["sim", "mock"])
    p.add_argument("--task", default="")
    p.add_argument("--rate-hz", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keys-dir", default=DEFAULT_KEYS_DIR)
    a = p.parse_args(argv)
    if a.config_json:
        cfg = SimServerConfig(**json.loads(a.config_json))
    else:
        cfg = SimServerConfig(endpoint=a.endpoint, backend=a.backend, task=a.task, rate_hz=a.rate_hz, seed=a.seed,
                              keys_dir=a.keys_dir)  # fmt: skip
    return run_server(cfg)


def run_server(cfg: SimServerConfig) -> int:
    """Build the server and serve until SIGTERM / SIGINT / shutdown / orphaning; returns an exit status."""
    stop = {"asked": False}
    signal.signal(signal.SIGTERM, lambda s, f: stop.update(asked=True))  # before the (slow) backend start-up
    if cfg.parent_pid is not None:
        die_with_parent()
        if os.getppid() != cfg.parent_pid:  # the parent died before prctl took effect
            return 1
    try:
        server = SimServer(cfg)
    except BaseException:
        if cfg.cleanup_dir:
            shutil.rmtree(cfg.cleanup_dir, ignore_errors=True)
        raise

    def _stop(signum, frame):
        server.running = False

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server.running = not stop["asked"]
    rate = 1.0 / server.period_s
    print(f"sim server up: {cfg.backend} {server.spec.task_id} at {cfg.endpoint}, {rate:g} Hz", flush=True)
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
