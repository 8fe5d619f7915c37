"""ZmqRobot: the controller-side client of the simulated robot server (sim_server.py) over ZeroMQ.

Sockets: SUB observations (CONFLATE: only the newest is kept), PUSH commands (IMMEDIATE: nothing queues
for a server that is not there; a command that cannot go out is dropped and counted), REQ control
(hello / reset / stop / rearm / stats, with a time-out; the socket is rebuilt after one, "lazy pirate").
A silent link shows up as aging stamps (the safety filter holds) and, after `disconnect_timeout_s`,
as RobotDisconnected from `read` (the controller latches until re-armed).
"""

from __future__ import annotations

import time

import numpy as np
import zmq

from robo_hybrid.spec import IOSpec

from .robot import Observation, Robot, RobotDisconnected, RobotError, hold_action
from .wire import CMD_ACTION, CMD_HOLD, decode_obs, encode_cmd, endpoints


class ZmqRobot(Robot):
    """A robot behind a ZeroMQ sim server (or any server speaking wire.py)."""

    def __init__(
        self,
        endpoint: str = "tcp://127.0.0.1:5555",
        connect_timeout_s: float = 10.0,
        disconnect_timeout_s: float = 1.0,
        ctl_timeout_s: float = 2.0,
    ) -> None:
        self.endpoint = endpoint
        self.connect_timeout_s = connect_timeout_s
        self.disconnect_timeout_s = disconnect_timeout_s
        self.ctl_timeout_s = ctl_timeout_s
        self._obs_ep, self._cmd_ep, self._ctl_ep = endpoints(endpoint)
        self._ctx: zmq.Context | None = None
        self._sub = self._push = self._req = None
        self._spec: IOSpec | None = None
        self._last: Observation | None = None
        self._last_rx_s = 0.0
        self._episode = 0
        self._boot = None
        self._seq = 0
        self._gripper = 0.0
        self.n_dropped = 0
        self.n_sent = 0
        self.supports_reset = False

    # ----- sockets -----
    def _open(self) -> None:
        self._ctx = zmq.Context()
        self._sub = self._ctx.socket(zmq.SUB)
        self._sub.setsockopt(zmq.CONFLATE, 1)  # keep only the newest observation
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.connect(self._obs_ep)
        self._push = self._ctx.socket(zmq.PUSH)
        self._push.setsockopt(zmq.IMMEDIATE, 1)  # never queue commands for an absent server
        self._push.setsockopt(zmq.SNDHWM, 4)
        self._push.setsockopt(zmq.LINGER, 0)
        self._push.connect(self._cmd_ep)
        self._new_req()

    def _new_req(self) -> None:
        if self._req is not None:
            self._req.close(linger=0)
        assert self._ctx is not None
        self._req = self._ctx.socket(zmq.REQ)
        self._req.setsockopt(zmq.LINGER, 0)
        self._req.connect(self._ctl_ep)

    def request(self, msg: dict, timeout_s: float | None = None) -> dict:
        """One control request; raises RobotDisconnected when the server does not answer in time."""
        if self._req is None:
            raise RobotError("ZmqRobot: not connected; call connect() first")
        self._req.send_json(msg)
        if self._req.poll(int(1000 * (timeout_s or self.ctl_timeout_s))):
            reply = self._req.recv_json()
            if isinstance(reply, dict) and "error" in reply:
                raise RobotError(f"sim server refused {msg.get('cmd')!r}: {reply['error']}")
            return reply  # type: ignore[return-value]
        self._new_req()  # a REQ socket is stuck after a lost reply: rebuild it
        raise RobotDisconnected(
            f"sim server at {self._ctl_ep} did not answer {msg.get('cmd')!r} within "
            f"{timeout_s or self.ctl_timeout_s:.1f} s. Fix: start it (python -m robo_hybrid.deploy.sim_server)"
        )

    # ----- Robot -----
    @property
    def io_spec(self) -> IOSpec:
        """The server's spec (after connect)."""
        if self._spec is None:
            raise RobotError("ZmqRobot.io_spec is known only after connect(); call connect() first")
        return self._spec

    def connect(self) -> None:
        """Handshake with the server (retrying until connect_timeout_s), re-arm it, wait for a fresh observation."""
        if self._ctx is None:
            self._open()
        deadline = time.monotonic() + self.connect_timeout_s
        while True:
            try:
                hello = self.request({"cmd": "hello"}, timeout_s=min(self.ctl_timeout_s, 1.0))
                break
            except RobotDisconnected:
                if time.monotonic() > deadline:
                    raise
        self._spec = IOSpec.from_json(hello["io_spec"])
        self._episode, self._boot = int(hello["episode"]), hello["boot"]
        self.supports_reset = bool(hello.get("supports_reset", False))
        self.request({"cmd": "rearm"})
        self._wait_obs(lambda h: h["boot"] == self._boot, deadline)
        assert self._push is not None  # with IMMEDIATE, POLLOUT means the command link is up
        if not self._push.poll(int(1000 * max(deadline - time.monotonic(), 0.1)), zmq.POLLOUT):
            raise RobotDisconnected(f"command link to {self._cmd_ep} did not come up; is the sim server running?")

    def _wait_obs(self, accept, deadline: float) -> Observation:
        """Block until an observation whose header passes `accept` arrives (or raise at the deadline)."""
        assert self._sub is not None
        while True:
            if self._sub.poll(50):
                obs, header = decode_obs(self._sub.recv())
                if accept(header):
                    self._last, self._last_rx_s = obs, time.monotonic()
                    self._boot, self._episode = header["boot"], header["episode"]
                    return obs
            if time.monotonic() > deadline:
                raise RobotDisconnected(f"no observation from {self._obs_ep} in time; is the sim server running?")

    def read(self) -> Observation:
        """Newest observation (stamps tell its age); RobotDisconnected after disconnect_timeout_s of silence."""
        if self._sub is None:
            raise RobotError("ZmqRobot: not connected; call connect() first")
        try:
            frame = self._sub.recv(zmq.NOBLOCK)
        except zmq.Again:
            frame = None
        t = time.monotonic()
        if frame is not None:
            obs, header = decode_obs(frame)
            if header["boot"] == self._boot and header["episode"] == self._episode:
                self._last, self._last_rx_s = obs, t
        if self._last is None or t - self._last_rx_s > self.disconnect_timeout_s:
            raise RobotDisconnected(
                f"no observation from the sim server for {t - self._last_rx_s:.2f} s "
                f"(> {self.disconnect_timeout_s} s); link lost. Fix: restart the server, then re-arm"
            )
        return self._last

    def _send(self, kind: int, action: np.ndarray) -> None:
        assert self._push is not None
        self._seq += 1
        try:
            self._push.send(encode_cmd(kind, self._episode, self._seq, time.monotonic(), action), zmq.NOBLOCK)
            self.n_sent += 1
        except zmq.Again:
            self.n_dropped += 1  # no server: the robot-side watchdog is what stops the arm

    def write(self, action: np.ndarray) -> None:
        """Send an action (never blocks; counted in n_dropped when the server is unreachable)."""
        a = np.asarray(action, dtype=np.float32)
        self._gripper = float(a[-1])
        self._send(CMD_ACTION, a)

    def hold(self) -> None:
        """Send a hold: the server applies zero motion and keeps its own gripper state."""
        self._send(CMD_HOLD, hold_action(self.io_spec, self._gripper))

    def stop(self) -> None:
        """Ask the server to stop (zero motion, ignore actions until re-armed)."""
        self.request({"cmd": "stop"})

    def reset(self, seed: int | None = None) -> Observation:
        """New episode on the server; waits for its first observation."""
        reply = self.request({"cmd": "reset", "seed": seed}, timeout_s=max(self.ctl_timeout_s, 10.0))
        episode = int(reply["episode"])
        self._episode = episode
        self._gripper = 0.0
        return self._wait_obs(lambda h: h["episode"] == episode, time.monotonic() + self.connect_timeout_s)

    def stats(self) -> dict:
        """The server's counters (commands received, watchdog ticks, last applied command...)."""
        return self.request({"cmd": "stats"})

    def close(self) -> None:
        """Close sockets (linger 0)."""
        for s in (self._sub, self._push, self._req):
            if s is not None:
                s.close(linger=0)
        self._sub = self._push = self._req = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
