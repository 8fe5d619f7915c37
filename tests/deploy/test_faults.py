"""The controller rows of docs/faults.md against the controller + MockRobot; none may emit an unsafe command.

The loop runs at 100 Hz (stale limit max(2.5 periods, 50 ms) = 50 ms). Faults are scheduled by cycle:
the mock's fault hook sees len(robot.commands) == cycle index, because every cycle writes exactly once.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from deploy_testlib import assert_commands_safe

from robo_hybrid.deploy.loop import Controller, LoopConfig, now
from robo_hybrid.deploy.mock import Fault, MockRobot
from robo_hybrid.deploy.policy import CallablePolicy, OnnxPolicy
from robo_hybrid.deploy.robot import RobotDisconnected
from robo_hybrid.deploy.safety import SafetyConfig
from robo_hybrid.spec import SpecMismatchError

START = (0.3, -0.3, 0.1)  # far from every mock goal: the wander policy never succeeds by chance


def schedule(fault: Fault, start: int, stop: int | None = None, action=None):
    """A fault hook: inject `fault` at cycle `start` (or run `action(robot)`), clear it at cycle `stop`."""

    def hook(_n: int, robot: MockRobot) -> None:
        c = len(robot.commands)
        if c == start:
            robot.inject(fault) if action is None else action(robot)
        if stop is not None and c == stop:
            robot.clear(fault)

    return hook


class Wander:
    """Policy that circles slowly and records what it was called with."""

    def __init__(self, spec, raise_at: int = -1, sleep: dict[int, float] | None = None, out=None):
        self.spec, self.raise_at, self.sleep, self.out = spec, raise_at, sleep or {}, out
        self.n, self.seen = 0, []

    def __call__(self, obs):
        self.seen.append({k: v.copy() for k, v in obs.items()})
        n, self.n = self.n, self.n + 1
        if n == self.raise_at:
            raise RuntimeError("policy blew up")
        if self.sleep.get(n) or self.sleep.get(-1):
            time.sleep(self.sleep.get(n) or self.sleep[-1])
        if self.out is not None:
            return self.out(n)
        return np.array([0.3 * np.sin(0.3 * n), 0.3 * np.cos(0.3 * n), 0.0, 1.0], np.float32)


def make(spec, fn=None, steps=30, hook=None, safety=None, policy=None, robot=None, **loop):
    fn = fn or Wander(spec)
    robot = robot or MockRobot(spec, start_ee_m=START, fault_hook=hook)
    robot.supports_reset = False  # one continuous run: cycle c reads after c commands
    cfg = LoopConfig(max_steps=steps, **loop)
    ctl = Controller(policy or CallablePolicy(spec, fn), robot, cfg, safety or SafetyConfig(estop_signal=False))
    return ctl, robot, fn


def kinds(robot: MockRobot) -> list[str]:
    return [c.kind for c in robot.commands]


def test_nominal_onnx_run_reaches_goal_safely(model_path, spec100):
    robot = MockRobot(spec100, seed=3)
    ctl = Controller(OnnxPolicy(model_path), robot, LoopConfig(max_steps=60), SafetyConfig(estop_signal=False))
    res = ctl.run(episodes=2)
    assert res["success_rate"] == 1.0 and res["ends"] == ["done", "done"]
    assert res["counters"].get("holds", 0) == 0
    assert_commands_safe(robot)


@pytest.mark.parametrize("fault", [Fault.NAN_OBS, Fault.INF_OBS])
def test_nonfinite_observation_holds_then_resumes(spec100, fault):
    ctl, robot, fn = make(spec100, hook=schedule(fault, 10, 15))
    res = ctl.run()
    assert res["ends"] == ["max_steps"] and res["latched"] is None
    assert kinds(robot)[10:15] == ["hold"] * 5 and kinds(robot)[15] == "action"
    assert res["counters"]["nonfinite_obs"] == 5
    assert all(np.isfinite(v).all() for obs in fn.seen for k, v in obs.items() if k != "image")  # never fed
    assert_commands_safe(robot)


def test_policy_nan_output_holds(make_model, spec100):
    ctl, robot, _ = make(spec100, policy=OnnxPolicy(make_model(spec100, add_nan=True)), steps=15)
    res = ctl.run()
    assert kinds(robot) == ["hold"] * 16  # 15 cycles + the final hold at the end of the run
    assert res["counters"]["nonfinite_action"] == 15
    assert_commands_safe(robot)
    np.testing.assert_array_equal(robot.ee_pos_m, START)  # nothing moved


def test_action_out_of_bounds_is_clamped_and_counted(spec100):
    ctl, robot, _ = make(spec100, fn=lambda obs: np.array([5.0, -5.0, 0.1, 3.0], np.float32), steps=10)
    res = ctl.run()
    assert res["counters"]["clamped"] == 10
    assert robot.actions("action").max() <= 1.0 and robot.actions("action").min() >= -1.0
    assert_commands_safe(robot, max_jerk=None)  # y runs into the workspace wall: the clamp outranks smoothness


def test_bang_bang_policy_is_rate_limited(spec100):
    out = Wander(spec100, out=lambda n: np.array([(-1.0) ** n, 1.0, 0.0, 1.0], np.float32))
    ctl, robot, _ = make(spec100, fn=out, steps=20)
    res = ctl.run()
    assert res["counters"]["rate_limited"] >= 10
    assert_commands_safe(robot)  # the default limits


def test_workspace_clamped_inside(spec100):
    ctl, robot, _ = make(spec100, fn=lambda obs: np.array([1.0, 0.0, 0.0, 1.0], np.float32), steps=25)
    res = ctl.run()
    assert res["counters"]["workspace_clamped"] >= 1
    assert robot.ee_pos_m[0] == pytest.approx(spec100.workspace_high_m[0], abs=1e-5)  # reached, never crossed
    assert_commands_safe(robot, max_jerk=None)


@pytest.mark.parametrize("direction,moves", [(1.0, False), (-1.0, True)])
def test_outside_workspace_only_inward(spec100, direction, moves):
    start_x = spec100.workspace_high_m[0] + 0.1
    robot = MockRobot(spec100, start_ee_m=(start_x, 0.0, 0.3))
    ctl, robot, _ = make(spec100, fn=lambda obs: np.array([direction, 0, 0, 1], np.float32), steps=5, robot=robot)
    ctl.run()
    assert (robot.ee_pos_m[0] < start_x - 0.01) == moves
    assert robot.ee_pos_m[0] <= start_x + 1e-9
    assert_commands_safe(robot, max_jerk=None)


class _ShapeSpy:
    """Wraps the onnxruntime session and fails loudly if a wrong-shaped feed ever reaches it."""

    def __init__(self, real, spec):
        self.real, self.spec, self.calls = real, spec, 0

    def run(self, names, feeds):
        self.calls += 1
        for t in self.spec.observations:
            assert feeds[t.name].shape == (1, *t.shape) and feeds[t.name].dtype == t.dtype, t.name
        return self.real.run(names, feeds)


@pytest.mark.parametrize("fault", [Fault.WRONG_IMAGE_SHAPE, Fault.WRONG_DTYPE])
def test_wrong_shape_or_dtype_rejected_before_onnxruntime(make_model, spec100, fault):
    pol = OnnxPolicy(make_model(spec100, gain=0.5))  # slow: the goal is not reached within the test
    pol.session = _ShapeSpy(pol.session, spec100)  # type: ignore[assignment]
    ctl, robot, _ = make(spec100, policy=pol, hook=schedule(fault, 5, 10), steps=15)
    res = ctl.run()
    assert kinds(robot)[5:10] == ["hold"] * 5 and kinds(robot)[10] == "action"
    assert res["counters"]["bad_obs"] == 5 and pol.session.calls == 10
    assert_commands_safe(robot)


def max_in_window(robot: MockRobot, window_s: float) -> int:
    """Most commands sent within any `window_s`: a catch-up burst packs more commands than periods."""
    t = np.array([c.t_s for c in robot.commands[:-1]])  # the run's final hold follows the last cycle at once
    return int((np.searchsorted(t, t + window_s) - np.arange(len(t))).max())


@pytest.mark.parametrize(
    "fault,reason",
    [(Fault.STALE_CAMERA, "stale_image"), (Fault.STATE_STOPS, "stale_state"), (Fault.FROZEN_STATE, "frozen_state")],
)
def test_stale_or_frozen_stream_holds_after_limit(spec100, fault, reason):
    t_inject = []
    ctl, robot, _ = make(spec100, hook=schedule(fault, 4, action=lambda r: (r.inject(fault), t_inject.append(now()))))
    res = ctl.run()
    limit = ctl.safety.stale_limit_s  # 50 ms at 100 Hz
    # age reference: the last fresh stamp (stale streams) or the first repeated reading (frozen values)
    refs = {Fault.STALE_CAMERA: robot._image_stamps["image"], Fault.STATE_STOPS: robot._state_stamp}
    ref = refs.get(fault, t_inject[0])
    k = kinds(robot)
    first = k.index("hold")
    assert set(k[first:]) == {"hold"} and len(k) - first >= 5
    assert res["counters"][reason] == len(k) - first - 1  # every cycle from then on; +1 final hold of the run
    for c in robot.commands[4:]:
        age = c.t_s - ref
        if c.kind == "action":
            assert age <= limit + 0.005, f"acted on an observation {age * 1e3:.1f} ms old (limit {limit * 1e3:.0f} ms)"
    assert robot.commands[first].t_s - ref > limit  # the limit is used, not a stricter one
    assert_commands_safe(robot)


def test_one_overrun_skips_ahead_without_burst(spec100):
    ctl, robot, _ = make(spec100, fn=Wander(spec100, sleep={10: 0.015}), steps=25)
    res = ctl.run()
    tel = res["telemetry"]
    assert res["ends"] == ["max_steps"] and res["latched"] is None
    assert res["counters"]["deadline_miss"] >= 1 and kinds(robot)[10] == "hold"  # the late action is dropped
    assert tel["overruns"] >= 1 and tel["skipped_periods"] >= 1
    assert max_in_window(robot, 5 * ctl.period_s) <= 6, "catch-up burst after the overrun"


def test_repeated_overruns_controlled_stop(spec100):
    ctl, robot, _ = make(spec100, fn=Wander(spec100, sleep={-1: 0.012}), steps=30)
    res = ctl.run()
    assert res["ends"] == ["overrun_stop"] and res["latched"] == "overrun_stop"
    assert kinds(robot)[-2:] == ["hold", "stop"] and robot.stopped
    assert res["telemetry"]["overruns"] == ctl.cfg.max_consecutive_overruns
    assert_commands_safe(robot)


def test_inference_timeout_controlled_stop(spec100):
    ctl, robot, _ = make(spec100, fn=Wander(spec100, sleep={6: 0.08}), steps=30)
    res = ctl.run()
    assert res["ends"] == ["inference_timeout"] and robot.stopped
    assert kinds(robot)[-2:] == ["hold", "stop"] and len(robot.commands) == 8


@pytest.mark.parametrize("fault", [Fault.READ_FAIL, Fault.WRITE_FAIL, Fault.DISCONNECT])
def test_hardware_error_goes_inactive_until_rearmed(spec100, fault):
    ctl, robot, _ = make(spec100, hook=schedule(fault, 5), steps=20)
    res = ctl.run()
    assert res["ends"] == ["hardware_error"] and res["latched"] == "hardware_error"
    assert len(robot.commands) == 5
    attempts = robot.n_write_attempts
    assert ctl.run()["ends"] == ["latched"] and robot.n_write_attempts == attempts  # no further commands
    if fault is Fault.DISCONNECT:
        with pytest.raises(RobotDisconnected):
            ctl.rearm()  # cannot re-arm while the link is down
    robot.fault_hook = None
    robot.clear()
    ctl.rearm()
    res = ctl.run()
    assert res["ends"] == ["max_steps"] and len(robot.commands) == 26 and kinds(robot)[-1] == "hold"
    assert_commands_safe(robot)


def test_policy_raises_holds_and_needs_rearm(spec100):
    fn = Wander(spec100, raise_at=5)
    ctl, robot, _ = make(spec100, fn=fn, steps=20)
    res = ctl.run()
    assert res["ends"] == ["policy_error"] and res["latched"] == "policy_error"
    assert kinds(robot) == ["action"] * 5 + ["hold"]
    assert ctl.run()["ends"] == ["latched"] and len(robot.commands) == 6
    ctl.rearm()
    assert ctl.run()["ends"] == ["max_steps"] and len(robot.commands) == 27  # 20 + the run's final hold
    assert_commands_safe(robot)


def test_unexpected_bug_leaves_the_robot_holding(spec100):
    def bug(robot):
        raise ZeroDivisionError("a bug in a driver callback")

    ctl, robot, _ = make(spec100, hook=schedule(Fault.READ_FAIL, 6, action=bug))
    with pytest.raises(ZeroDivisionError):
        ctl.run()
    assert kinds(robot) == ["action"] * 6 + ["hold"]


def test_estop_file_latched_and_rearm_from_measured_state(spec100, tmp_path):
    path = tmp_path / "ESTOP"
    hook = schedule(Fault.READ_FAIL, 8, action=lambda r: path.write_text("stop"))
    safety = SafetyConfig(estop_file=str(path), estop_signal=False)
    ctl, robot, _ = make(spec100, hook=hook, safety=safety, steps=30)
    res = ctl.run()
    assert res["ends"] == ["estop"] and res["latched"] == "estop"
    # the file appears during cycle 8's read; cycle 9 sees it: stop, and nothing after
    assert kinds(robot) == ["action"] * 9 + ["stop"] and robot.stopped
    with pytest.raises(RuntimeError, match="still exists"):
        ctl.rearm()
    assert ctl.run()["ends"] == ["latched"] and len(robot.commands) == 10
    path.unlink()
    ctl.rearm()
    assert ctl.run()["ends"] == ["max_steps"]
    assert robot.commands[10].kind == "action"
    assert_commands_safe(robot)  # includes: the first command after re-arm ramps up from zero


def test_estop_signal(spec100):
    prev = signal.getsignal(signal.SIGUSR1)
    hook = schedule(Fault.READ_FAIL, 8, action=lambda r: os.kill(os.getpid(), signal.SIGUSR1))
    ctl, robot, _ = make(spec100, hook=hook, safety=SafetyConfig(estop_signal=True), steps=30)
    res = ctl.run()
    assert res["ends"] == ["estop"] and robot.commands[-1].kind == "stop"
    assert len(robot.commands) <= 10  # at most the cycle the signal interrupted, then the stop
    assert signal.getsignal(signal.SIGUSR1) is prev  # handler restored


def test_shutdown_signal_holds_then_returns(spec100):
    prev = signal.getsignal(signal.SIGTERM)
    hook = schedule(Fault.READ_FAIL, 8, action=lambda r: os.kill(os.getpid(), signal.SIGTERM))
    ctl, robot, _ = make(spec100, hook=hook, steps=30)
    res = ctl.run(episodes=3)
    assert res["ends"] == ["shutdown"] and robot.commands[-1].kind == "hold"
    assert len(robot.commands) <= 11
    assert signal.getsignal(signal.SIGTERM) is prev


def test_wall_clock_jump_does_not_move_deadlines(spec100, monkeypatch):
    rng = np.random.default_rng(0)
    monkeypatch.setattr(time, "time", lambda: 1.7e9 + float(rng.choice([-3600.0, 3600.0]) * rng.integers(1, 48)))
    ctl, robot, _ = make(spec100, steps=20)
    res = ctl.run()
    gaps = np.diff([c.t_s for c in robot.commands])
    assert res["ends"] == ["max_steps"] and np.median(gaps) == pytest.approx(ctl.period_s, rel=0.2)


def test_spec_mismatch_refuses_before_any_command(model_path):
    from robo_hybrid.deploy.mock import mock_io_spec

    robot = MockRobot(mock_io_spec(image_size=64, control_rate_hz=25.0))
    ctl = Controller(OnnxPolicy(model_path), robot, LoopConfig(max_steps=5), SafetyConfig(estop_signal=False))
    with pytest.raises(SpecMismatchError, match=r"(?s)observation 'image'.*control rate.*Fix"):
        ctl.run()
    assert robot.commands == []
