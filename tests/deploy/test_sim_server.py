"""The ZeroMQ sim server in its own process (mock backend): real timing, the robot-side watchdog, and a
transport that dies and comes back."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from robo_hybrid.deploy.loop import Controller, LoopConfig
from robo_hybrid.deploy.mock import mock_io_spec
from robo_hybrid.deploy.policy import CallablePolicy
from robo_hybrid.deploy.robot import RobotDisconnected
from robo_hybrid.deploy.safety import SafetyConfig
from robo_hybrid.deploy.server_process import SimServerProcess
from robo_hybrid.deploy.sim_server import SimServerConfig
from robo_hybrid.deploy.zmq_robot import ZmqRobot

SPEC = mock_io_spec(image_size=32, control_rate_hz=50.0, episode_steps=40)
EE = list(SPEC.proprio_layout).index("ee.x_m")


def KEYS(tmp_path) -> str:  # noqa: N802 - reads like a constant at the call sites
    """The test's private keys folder (made on first use by both sides)."""
    return str(tmp_path / "keys")


@pytest.fixture
def server(tmp_path):
    """Factory for sim server processes on a private ipc endpoint; all stopped at teardown."""
    procs: list[SimServerProcess] = []
    endpoint = f"ipc://{tmp_path}/sim"

    def start(spec=SPEC) -> SimServerProcess:
        cfg = SimServerConfig(endpoint=endpoint, backend="mock", spec_json=spec.to_json(), keys_dir=KEYS(tmp_path))
        procs.append(SimServerProcess(cfg, log_path=str(tmp_path / "server.log")).start())
        return procs[-1]

    start.endpoint = endpoint  # type: ignore[attr-defined]
    start.keys = KEYS(tmp_path)  # type: ignore[attr-defined]
    yield start
    for p in procs:
        p.stop()


def reach(obs):
    """P controller towards the goal."""
    err = obs["goal"] - obs["proprio"][EE : EE + 3]
    return np.r_[np.clip(err / SPEC.max_ee_delta_m, -1, 1), 1.0].astype(np.float32)


def test_controller_over_zmq_reaches_goals(server):
    server()
    robot = ZmqRobot(server.endpoint, connect_timeout_s=20.0, keys_dir=server.keys)
    try:
        ctl = Controller(CallablePolicy(SPEC, reach), robot, LoopConfig(), SafetyConfig(estop_signal=False))
        res = ctl.run(episodes=3)
        assert robot.io_spec == SPEC and robot.supports_reset
        assert res["success_rate"] == 1.0 and res["ends"] == ["done"] * 3
        assert robot.stats()["cmd_rx"] >= 3
    finally:
        robot.close()


def test_robot_side_watchdog_decelerates_to_zero(server):
    server()
    robot = ZmqRobot(server.endpoint, connect_timeout_s=20.0, keys_dir=server.keys)
    try:
        robot.connect()
        robot.write(np.array([np.nan, 0, 0, 1], np.float32))  # the server never applies a malformed command
        for _ in range(10):
            robot.write(np.array([0.5, 0.0, 0.0, 1.0], np.float32))
            time.sleep(SPEC.control_dt_s)
        moving = robot.stats()
        assert moving["applied"][0] == pytest.approx(0.5)  # commands flowing: applied as sent
        time.sleep(0.4)  # the link goes quiet (the controller hung or crashed)
        stats = robot.stats()
        assert stats["watchdog_ticks"] - moving["watchdog_ticks"] >= 5 and stats["cmd_bogus"] >= 1
        assert stats["applied"] == "hold"  # decelerated, then zero motion with the gripper unchanged
        ee1 = robot.read().arrays["proprio"][EE : EE + 3].copy()
        time.sleep(0.1)
        ee2 = robot.read().arrays["proprio"][EE : EE + 3].copy()
        np.testing.assert_array_equal(ee1, ee2)  # at rest
    finally:
        robot.close()


def test_transport_loss_holds_then_latches_and_reconnects(server):
    spec = dataclasses.replace(SPEC, episode_steps=0)  # no task horizon: run until the link is lost
    first = server(spec)
    robot = ZmqRobot(server.endpoint, connect_timeout_s=20.0, disconnect_timeout_s=0.3, keys_dir=server.keys)
    calls = {"n": 0}

    def policy(obs):
        calls["n"] += 1
        if calls["n"] == 10:
            first.kill()  # the robot side crashes mid-episode
        return np.array([0.1, 0.0, 0.0, 1.0], np.float32)

    try:
        ctl = Controller(CallablePolicy(spec, policy), robot, LoopConfig(max_steps=200),
                         SafetyConfig(estop_signal=False))  # fmt: skip
        res = ctl.run()
        assert res["ends"] == ["hardware_error"] and res["latched"] == "hardware_error"
        assert res["counters"]["stale_state"] >= 3  # held while the link was silent, before giving up
        assert calls["n"] <= 10 + 3  # after the loss: only observations younger than the 50 ms limit (2.5 periods)
        assert robot.n_dropped >= 1  # holds to a dead server are dropped, not queued for its successor
        with pytest.raises(RobotDisconnected):
            robot.connect_timeout_s = 0.5
            ctl.rearm()  # nobody there yet
        server(spec)  # restart on the same endpoint
        robot.connect_timeout_s = 20.0
        ctl.rearm()
        ctl.max_steps = 40
        res = ctl.run()
        assert res["ends"] == ["max_steps"] and res["latched"] is None
        assert robot.stats()["cmd_rx"] >= 30  # the new server is commanded
    finally:
        robot.close()
