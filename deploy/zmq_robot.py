"""ZmqRobot: the controller-side client of the simulated robot server (sim_server.py) over ZeroMQ.

Sockets: SUB observations (CONFLATE: only the newest is kept), PUSH commands (IMMEDIATE: nothing queues
for a server that is not there; a command that cannot go out is dropped and counted), REQ control
(hello / rearm / reset / stop / stats, with a time-out; the socket is rebuilt after one, "lazy pirate").
All three are CURVE clients pinning the server's public key (auth.py), with a maximum message size.

Faults become RobotError, never a crash: a silent link shows up as aging stamps (the safety filter holds)
and, after `disconnect_timeout_s`, as RobotDisconnected; an undecodable observation or reply is a
RobotReadError; and when the server reports more than `link_refused_max` refused / stale / bogus
messages within `link_window_s` (someone else is talking to the robot), `read` raises RobotError.
"""

from __future__ import annotations

import collections
import json
import time

import numpy as np
import zmq

from robo_hybrid.spec import IOSpec, SpecMismatchError

from .auth import LinkKeys, ensure_keys, secure_client
from .config import DEFAULT_KEYS_DIR
from .robot import Observation, Robot, RobotDisconnected, RobotError, RobotLimits, RobotReadError, hold_action
from .wire import (
    CMD_ACTION,
    CMD_HOLD,
    MAX_CMD_BYTES,
    MAX_CTL_BYTES,
    MAX_OBS_BYTES,
    WireError,
    decode_obs,
    encode_cmd,
    endpoints,
)


class ZmqRobot(Robot):
    """A robot behind a ZeroMQ sim server (or any server speaking wire.py)."""

    def __init__(
        self,
        endpoint: str = "tcp://127.0.0.1:5555",
        connect_timeout_s: float = 10.0,
        disconnect_timeout_s: float = 1.0,
        ctl_timeout_s: float = 2.0,
        keys_dir: str = DEFAULT_KEYS_DIR,
        link_refused_max: int = 10,
        link_window_s: float = 2.0,
    ) -> None:
        self.endpoint = endpoint
        self.connect_timeout_s = connect_timeout_s
        self.disconnect_timeout_s = disconnect_timeout_s
        self.ctl_timeout_s = ctl_timeout_s
        self.keys: LinkKeys = ensure_keys(keys_dir)
        self.link_refused_max, self.link_window_s = link_refused_max, link_window_s
        self._obs_ep, self._cmd_ep, self._ctl_ep = endpoints(endpoint)
        self._ctx: zmq.Context | None = None
        self._sub = self._push = self._req = None
        self._spec: IOSpec | None = None
        self._limits: RobotLimits | None = None
        self._last: Observation | None = None
        self._last_rx_s = 0.0
        self._episode, self._boot, self._session, self._seq = 0, None, 0, 0
        self._gripper = 0.0
        self._link: collections.deque[tuple[float, int]] = collections.deque()
        self.n_dropped = self.n_sent = self.n_bad_obs = 0
        self.supports_reset = False

    # ----- sockets -----
    def _socket(self, kind: int, endpoint: str, max_bytes: int) -> zmq.Socket:
        assert self._ctx is not None
        s = self._ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.MAXMSGSIZE, max_bytes)
        secure_client(s, self.keys)
        if kind == zmq.SUB:
            s.setsockopt(zmq.CONFLATE, 1)  # keep only the newest observation
            s.setsockopt(zmq.SUBSCRIBE, b"")
        if kind == zmq.PUSH:
            s.setsockopt(zmq.IMMEDIATE, 1)  # never queue commands for an absent server
            s.setsockopt(zmq.SNDHWM, 4)
        s.connect(endpoint)
        return s

    def _open(self) -> None:
        self._ctx = zmq.Context()
        self._sub = self._socket(zmq.SUB, self._obs_ep, MAX_OBS_BYTES)
        self._push = self._socket(zmq.PUSH, self._cmd_ep, MAX_CMD_BYTES)
        self._new_req()

    def _new_req(self) -> None:
        if self._req is not None:
            self._req.close(linger=0)
        self._req = self._socket(zmq.REQ, self._ctl_ep, MAX_CTL_BYTES)

    def request(self, msg: dict, timeout_s: float | None = None) -> dict:
        """One control request; RobotDisconnected when the server does not answer in time, RobotError on refusal."""
        if self._req is None:
            raise RobotError("ZmqRobot: not connected; call connect() first")
        self._req.send_json(msg)
        if self._req.poll(int(1000 * (timeout_s or self.ctl_timeout_s))):
            frames = self._req.recv_multipart()
            try:
                if len(frames) != 1:
                    raise ValueError(f"{len(frames)} frames")
                reply = json.loads(frames[0].decode("utf-8"))
                if not isinstance(reply, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, UnicodeDecodeError, RecursionError) as e:
                raise RobotReadError(f"sim server's reply to {msg.get('cmd')!r} is malformed ({str(e)[:80]})") from None
            if "error" in reply:
                raise RobotError(f"sim server refused {msg.get('cmd')!r}: {str(reply['error'])[:200]}")
            return reply
        self._new_req()  # a REQ socket is stuck after a lost reply: rebuild it
        raise RobotDisconnected(
            f"sim server at {self._ctl_ep} did not answer {msg.get('cmd')!r} within "
            f"{timeout_s or self.ctl_timeout_s:.1f} s. Fix: start it (python -m robo_hybrid.deploy.sim_server) "
            f"with the keys in {self.keys.root}"
        )

    # ----- Robot -----
    @property
    def io_spec(self) -> IOSpec:
        """The server's spec (after connect)."""
        if self._spec is None:
            raise RobotError("ZmqRobot.io_spec is known only after connect(); call connect() first")
        return self._spec

    @property
    def limits(self) -> RobotLimits:
        """The limits the server's backend declares (after connect)."""
        if self._limits is None:
            raise RobotError("ZmqRobot.limits are known only after connect(); call connect() first")
        return self._limits

    def connect(self) -> None:
        """Open a session (retrying until connect_timeout_s), re-arm the server, wait for a fresh observation."""
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
        try:
            self._spec = IOSpec.from_json(hello["io_spec"])
            self._limits = RobotLimits.from_dict(hello["limits"])
            self._session = int(hello["session"])
        except (KeyError, TypeError, ValueError, SpecMismatchError) as e:
            raise RobotReadError(f"sim server's hello is malformed: {str(e)[:200]}") from None
        self.supports_reset = bool(hello.get("supports_reset", False))
        self._seq = 0
        self._link.clear()
        armed = self.request({"cmd": "rearm", "session": self._session})
        self._episode, self._boot = int(armed.get("episode", 0)), armed.get("boot")
        self._wait_obs(lambda h: h["boot"] == self._boot and h["episode"] == self._episode, deadline)
        assert self._push is not None  # with IMMEDIATE, POLLOUT means the command link is up
        if not self._push.poll(int(1000 * max(deadline - time.monotonic(), 0.1)), zmq.POLLOUT):
            raise RobotDisconnected(f"command link to {self._cmd_ep} did not come up; is the sim server running?")

    def _decode(self, frame: bytes) -> tuple[Observation, dict] | None:
        """Decode one observation; a corrupt one is counted and raised as RobotReadError."""
        try:
            return decode_obs(frame)
        except WireError as e:
            self.n_bad_obs += 1
            raise RobotReadError(f"corrupt observation from {self._obs_ep}: {e}") from None

    def _wait_obs(self, accept, deadline: float) -> Observation:
        """Block until an observation whose header passes `accept` arrives (or raise at the deadline)."""
        assert self._sub is not None
        while True:
            if self._sub.poll(50):
                decoded = self._decode(self._sub.recv())
                assert decoded is not None
                obs, header = decoded
                if accept(header):
                    self._last, self._last_rx_s = obs, time.monotonic()
                    return obs
            if time.monotonic() > deadline:
                raise RobotDisconnected(f"no observation from {self._obs_ep} in time; is the sim server running?")

    def _check_link(self, link: dict, t: float) -> None:
        """Raise RobotError when refused + stale + bogus messages grew by more than the limit within the window."""
        try:
            total = sum(int(link.get(k, 0)) for k in ("refused", "stale", "bogus"))
        except (TypeError, ValueError):
            raise RobotReadError("observation's link counters are malformed") from None
        self._link.append((t, total))
        while self._link and t - self._link[0][0] > self.link_window_s:
            self._link.popleft()
        grew = total - self._link[0][1]
        if grew > self.link_refused_max:
            raise RobotError(
                f"the robot side refused {grew} commands / messages in {self.link_window_s:g} s "
                f"(> {self.link_refused_max}): another process is talking to the robot. Fix: find it, then re-arm"
            )

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
            decoded = self._decode(frame)
            assert decoded is not None
            obs, header = decoded
            if header["boot"] == self._boot and header["episode"] == self._episode:
                self._last, self._last_rx_s = obs, t
                self._check_link(header.get("link", {}), t)
        if self._last is None or t - self._last_rx_s > self.disconnect_timeout_s:
            raise RobotDisconnected(
                f"no observation from the sim server for {t - self._last_rx_s:.2f} s "
                f"(> {self.disconnect_timeout_s} s); link lost. Fix: restart the server, then re-arm"
            )
        return self._last

    def _send(self, kind: int, action: np.ndarray) -> None:
        assert self._push is not None
        try:
            frame = encode_cmd(kind, self._episode, self._session, self._seq + 1, time.monotonic(), action)
            self._push.send(frame, zmq.NOBLOCK)
            self._seq += 1  # only commands that went out are numbered: the server sees no gaps
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
        reply = self.request({"cmd": "reset", "seed": seed, "session": self._session},
                             timeout_s=max(self.ctl_timeout_s, 10.0))  # fmt: skip
        try:
            episode = int(reply["episode"])
        except (KeyError, TypeError, ValueError):
            raise RobotReadError("sim server's reset reply has no episode number") from None
        self._episode = episode
        self._gripper = 0.0
        return self._wait_obs(lambda h: h["episode"] == episode, time.monotonic() + self.connect_timeout_s)

    def stats(self) -> dict:
        """The server's counters (commands received, refused, stale, watchdog ticks, last applied command...)."""
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
