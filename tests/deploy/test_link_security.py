"""The robot link under attack: fuzzed sockets on both sides, strangers without a listed key, foreign commands.

The sim server runs the mock backend in its own process with a private keys folder; "stranger" sockets use
a freshly made key pair that is not on the allow-list (or no CURVE at all).
"""

from __future__ import annotations

import json
import struct
import threading
import time

import numpy as np
import pytest
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from robo_hybrid.deploy.auth import ensure_keys, load_pair, load_public
from robo_hybrid.deploy.loop import Controller, LoopConfig
from robo_hybrid.deploy.mock import mock_io_spec
from robo_hybrid.deploy.policy import CallablePolicy
from robo_hybrid.deploy.robot import RobotDisconnected, RobotError, RobotReadError
from robo_hybrid.deploy.safety import SafetyConfig
from robo_hybrid.deploy.server_process import SimServerProcess
from robo_hybrid.deploy.sim_server import SimServerConfig
from robo_hybrid.deploy.wire import encode_cmd, endpoints
from robo_hybrid.deploy.zmq_robot import ZmqRobot

SPEC = mock_io_spec(image_size=16, control_rate_hz=50.0, episode_steps=0)
EE = list(SPEC.proprio_layout).index("ee.x_m")
RNG = np.random.default_rng(0)


@pytest.fixture
def link(tmp_path):
    """A running mock sim server: (endpoint, keys folder, process)."""
    keys = str(tmp_path / "keys")
    ensure_keys(keys)
    ep = f"ipc://{tmp_path}/sim"
    proc = SimServerProcess(SimServerConfig(endpoint=ep, backend="mock", spec_json=SPEC.to_json(), keys_dir=keys),
                            log_path=str(tmp_path / "server.log")).start()  # fmt: skip
    yield ep, keys, proc
    proc.stop()


def _client(ctx, kind, ep, keys, who: str):
    """A socket as 'valid' (the listed controller key), 'stranger' (an unlisted key) or 'plain' (no CURVE)."""
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    if who != "plain":
        if who == "valid":
            pub, sec = load_pair(f"{keys}/controller.key_secret")
        else:
            pub, sec = zmq.curve_keypair()
        s.curve_publickey, s.curve_secretkey = pub, sec
        s.curve_serverkey = load_public(f"{keys}/server.key")
    s.connect(ep)
    return s


def _garbage() -> list[list[bytes]]:
    """Random, truncated, oversized, non-UTF-8, badly typed and multi-frame messages."""
    good_cmd = encode_cmd(0, 0, 1, 1, time.monotonic(), np.ones(4, np.float32))
    msgs = [[RNG.bytes(int(n))] for n in RNG.integers(0, 200, size=40)]
    msgs += [[b"\x01\x02\x03"], [good_cmd[:10]], [good_cmd + b"x"], [b"\xff\xfe\xfa"], [RNG.bytes(2 << 20)]]
    msgs += [[b'{"cmd": "reset", "seed": "abc"}'], [b'{"cmd": "reset", "seed": 1e400}'], [b"[1, 2]"],
             [b'{"cmd": "stop"}', b"second frame"], [good_cmd, good_cmd], [b'{"cmd": "hello"}'] * 3,
             [b'{"cmd": "reset", "seed": 3, "session": "x"}'], [b"{" * 5000]]  # fmt: skip
    return msgs


def _server_alive_and_idle(ep, keys, proc) -> dict:
    assert proc.alive(), "the sim server died"
    robot = ZmqRobot(ep, connect_timeout_s=20.0, keys_dir=keys)
    try:
        robot.connect()
        stats = robot.stats()
        robot.write(np.array([0.2, 0.0, 0.0, 1.0], np.float32))  # still commandable by its controller
        deadline = time.monotonic() + 10.0
        while robot.stats()["cmd_rx"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert robot.stats()["cmd_rx"] == 1
    finally:
        robot.close()
    return stats


@pytest.mark.parametrize("who", ["valid", "stranger", "plain"])
def test_fuzz_every_server_socket(link, who):
    ep, keys, proc = link
    obs_ep, cmd_ep, ctl_ep = endpoints(ep)
    ctx = zmq.Context()
    try:
        push = _client(ctx, zmq.PUSH, cmd_ep, keys, who)
        dealer = _client(ctx, zmq.DEALER, ctl_ep, keys, who)  # DEALER: any frames, no REQ state machine
        xsub = _client(ctx, zmq.XSUB, obs_ep, keys, who)  # the PUB side receives subscription frames
        time.sleep(0.3)  # let the handshakes (or their refusal) happen
        for frames in _garbage():
            for sock, extra in ((push, []), (dealer, [b""]), (xsub, [])):
                try:
                    sock.send_multipart(extra + frames, zmq.NOBLOCK)
                except zmq.Again:
                    pass
        time.sleep(0.5)
    finally:
        ctx.destroy(linger=0)
    stats = _server_alive_and_idle(ep, keys, proc)
    assert stats["cmd_rx"] == 0 and stats["resets"] == 0 and stats["stops"] == 0  # nothing got through
    if who == "valid":
        assert stats["cmd_bad"] > 0 and stats["ctl_bad"] > 0  # the decoders were reached, dropped and counted
    else:
        assert stats["cmd_bad"] == 0 and stats["ctl_bad"] == 0  # nothing reached a decoder
    if who == "stranger":
        assert stats["zap_refused"] > 0


def test_process_without_listed_key_cannot_command_reset_or_stop(link):
    ep, keys, proc = link
    _, cmd_ep, ctl_ep = endpoints(ep)
    robot = ZmqRobot(ep, connect_timeout_s=20.0, keys_dir=keys)
    ctx = zmq.Context()
    try:
        robot.connect()
        ee0 = robot.read().arrays["proprio"][EE : EE + 3].copy()
        for who in ("stranger", "plain"):
            req = _client(ctx, zmq.REQ, ctl_ep, keys, who)
            for msg in ({"cmd": "hello"}, {"cmd": "stop"}, {"cmd": "reset", "seed": 1}, {"cmd": "shutdown"}):
                req.send_json(msg)
                assert not req.poll(300), f"{who} got an answer to {msg}"
                req.close(linger=0)
                req = _client(ctx, zmq.REQ, ctl_ep, keys, who)
            push = _client(ctx, zmq.PUSH, cmd_ep, keys, who)
            for seq in range(50):  # huge sequence numbers and full +z, as in the report
                push.send(encode_cmd(0, 0, 1, 2**40 + seq, time.monotonic(), np.array([0, 0, 1, 1], "f4")))
        time.sleep(0.5)
        stats = robot.stats()
        assert stats["stops"] == 0 and stats["resets"] == 0 and stats["cmd_rx"] == 0 and not stats["stopped"]
        assert stats["zap_refused"] > 0
        np.testing.assert_array_equal(robot.read().arrays["proprio"][EE : EE + 3], ee0)  # the arm did not move
        assert proc.alive()
    finally:
        ctx.destroy(linger=0)
        robot.close()


def test_foreign_commands_latch_the_controller(link):
    """A process holding a listed key but not the session (it read the key file) floods commands: refused, latched."""
    ep, keys, _ = link
    _, cmd_ep, _ = endpoints(ep)
    robot = ZmqRobot(ep, connect_timeout_s=20.0, keys_dir=keys, link_refused_max=10, link_window_s=2.0)
    ctx = zmq.Context()
    intruder = _client(ctx, zmq.PUSH, cmd_ep, keys, "valid")
    calls = {"n": 0}

    def policy(obs):
        calls["n"] += 1
        if calls["n"] == 5:
            for seq in range(40):
                intruder.send(encode_cmd(0, 0, 12345, 10**9 + seq, time.monotonic(), np.array([0, 0, 1, 1], "f4")))
        return np.array([0.0, 0.0, 0.0, 1.0], np.float32)

    try:
        ctl = Controller(CallablePolicy(SPEC, policy), robot, LoopConfig(max_steps=500),
                         SafetyConfig(estop_signal=False))  # fmt: skip
        res = ctl.run()
        assert res["ends"] == ["hardware_error"] and res["latched"] == "hardware_error"
        assert any("refused" in e["detail"] for e in res["telemetry"]["events"])
        assert robot.stats()["cmd_refused"] >= 40
    finally:
        ctx.destroy(linger=0)
        robot.close()


def test_future_nan_and_jumping_commands_are_rejected(link):
    ep, keys, _ = link
    robot = ZmqRobot(ep, connect_timeout_s=20.0, keys_dir=keys)
    try:
        robot.connect()
        a = np.array([0.0, 0.0, 1.0, 1.0], np.float32)
        t = time.monotonic()
        for seq, stamp in ((1, t + 5.0), (2, float("nan")), (3, float("inf")), (5000, t)):
            robot._push.send(encode_cmd(0, robot._episode, robot._session, seq, stamp, a))  # type: ignore[union-attr]
        time.sleep(0.3)
        stats = robot.stats()
        assert stats["cmd_bogus"] == 4 and stats["cmd_rx"] == 0 and stats["applied"] == "hold"
    finally:
        robot.close()


# ----- the controller side, fuzzed through a fake robot server -----
class FakeServer:
    """Binds the three endpoints with the robot side's key (or a wrong one); answers hello / rearm, then feeds `obs`."""

    def __init__(self, ep: str, keys: str, obs: list[bytes], reply: list[bytes] | None = None, key_ok: bool = True):
        self.ctx = zmq.Context()
        self.auth = ThreadAuthenticator(self.ctx)
        self.auth.start()
        self.auth.configure_curve(domain="*", location=f"{keys}/authorized")
        pub, sec = load_pair(f"{keys}/server.key_secret") if key_ok else zmq.curve_keypair()
        self.socks = []
        for kind, e in zip((zmq.PUB, zmq.PULL, zmq.REP), endpoints(ep), strict=True):
            s = self.ctx.socket(kind)
            s.curve_server, s.curve_publickey, s.curve_secretkey = True, pub, sec
            s.setsockopt(zmq.LINGER, 0)
            s.bind(e)
            self.socks.append(s)
        self.obs, self.reply, self.stop = obs, reply, False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        pub, _, rep = self.socks
        hello = {"io_spec": SPEC.to_json(), "session": 7, "supports_reset": False,
                 "limits": {"workspace_low_m": [0.2, -0.4, 0.0], "workspace_high_m": [0.8, 0.4, 0.6]}}  # fmt: skip
        while not self.stop:
            if rep.poll(10):
                msg = json.loads(rep.recv())
                if self.reply is not None:
                    rep.send_multipart(self.reply)
                else:
                    rep.send_json(hello if msg["cmd"] == "hello" else {"ok": True, "episode": 0, "boot": 1})
            for frame in self.obs:
                pub.send(frame)

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        self.auth.stop()
        self.ctx.destroy(linger=0)


def _corrupt_obs() -> list[bytes]:
    header = json.dumps({"arrays": [["proprio", "float32", [1000]]], "stamp_s": 1.0, "image_stamp_s": {}, "seq": 0,
                         "info": {}, "episode": 0, "boot": 1}).encode()  # fmt: skip
    obj = header.replace(b'"float32"', b'"object"')
    return [RNG.bytes(64), b"\x01\x00", struct.pack("<I", 10**6) + header, struct.pack("<I", len(header)) + header,
            struct.pack("<I", len(obj)) + obj + bytes(8000), struct.pack("<I", 3) + b"\xff\xfe\xfd"]  # fmt: skip


@pytest.mark.parametrize("frame", _corrupt_obs(), ids=["random", "short", "lying_len", "short_arrays", "object",
                                                       "non_utf8"])  # fmt: skip
def test_corrupt_observation_latches_the_controller(tmp_path, frame):
    keys = str(tmp_path / "keys")
    ensure_keys(keys)
    ep = f"ipc://{tmp_path}/fake"
    fake = FakeServer(ep, keys, [frame])
    robot = ZmqRobot(ep, connect_timeout_s=5.0, keys_dir=keys)
    try:
        with pytest.raises(RobotReadError, match="corrupt observation"):
            robot.connect()  # a corrupt frame while connecting: refused
        assert robot.n_bad_obs >= 1
    finally:
        robot.close()
        fake.close()


def test_controller_loop_latches_on_a_corrupt_frame_mid_run(tmp_path):
    keys = str(tmp_path / "keys")
    ensure_keys(keys)
    ep = f"ipc://{tmp_path}/fake"
    from robo_hybrid.deploy.mock import MockRobot
    from robo_hybrid.deploy.robot import Observation
    from robo_hybrid.deploy.wire import encode_obs

    good = MockRobot(SPEC)
    good.connect()
    o = good.read()
    frames = [encode_obs(Observation(o.arrays, time.monotonic() + 3600, {"image": time.monotonic() + 3600}), 0, 1,
                         0.0)]  # fmt: skip
    fake = FakeServer(ep, keys, frames)
    robot = ZmqRobot(ep, connect_timeout_s=5.0, keys_dir=keys)
    try:
        ctl = Controller(CallablePolicy(SPEC, lambda obs: np.zeros(4, np.float32)), robot, LoopConfig(max_steps=200),
                         SafetyConfig(estop_signal=False))  # fmt: skip
        ctl.startup()
        fake.obs = _corrupt_obs()[:1]  # from now on only garbage
        res = ctl.run()
        assert res["ends"] == ["hardware_error"] and res["latched"] == "hardware_error"
    finally:
        robot.close()
        fake.close()


@pytest.mark.parametrize("reply", [[b"\xff\xfe"], [b"not json"], [b"[]"], [b"{}", b"{}"]])
def test_garbage_replies_raise_robot_error(tmp_path, reply):
    keys = str(tmp_path / "keys")
    ensure_keys(keys)
    ep = f"ipc://{tmp_path}/fake"
    fake = FakeServer(ep, keys, [], reply=reply)
    robot = ZmqRobot(ep, connect_timeout_s=3.0, keys_dir=keys)
    try:
        with pytest.raises(RobotError):
            robot.connect()
    finally:
        robot.close()
        fake.close()


def test_server_without_the_robot_key_is_never_trusted(tmp_path):
    keys = str(tmp_path / "keys")
    ensure_keys(keys)
    ep = f"ipc://{tmp_path}/fake"
    fake = FakeServer(ep, keys, _corrupt_obs(), key_ok=False)
    robot = ZmqRobot(ep, connect_timeout_s=1.5, keys_dir=keys)
    try:
        with pytest.raises(RobotDisconnected):
            robot.connect()  # the CURVE handshake fails: no hello, no observation ever reaches the decoder
        assert robot.n_bad_obs == 0
    finally:
        robot.close()
        fake.close()
