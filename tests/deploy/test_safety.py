"""SafetyFilter unit tests: clamp, rate limit, workspace, watchdog limits, e-stop latch and re-arm."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from robo_hybrid.deploy.mock import mock_io_spec
from robo_hybrid.deploy.robot import Observation
from robo_hybrid.deploy.safety import EStop, SafetyConfig, SafetyFilter, stale_limit_s

SPEC = mock_io_spec(image_size=16, control_rate_hz=25.0)
EE = list(SPEC.proprio_layout).index("ee.x_m")
GRIP = list(SPEC.proprio_layout).index("gripper.opening_m")


def _obs(ee=(0.5, 0.0, 0.3), t=None, gripper_m=0.04, image_t=None) -> Observation:
    t = time.monotonic() if t is None else t
    proprio = np.zeros(len(SPEC.proprio_layout), np.float32)
    proprio[EE : EE + 3] = ee
    proprio[GRIP] = gripper_m
    arrays = {"image": np.zeros((16, 16, 3), np.uint8), "proprio": proprio, "goal": np.zeros(3, np.float32)}
    return Observation(arrays, t, {"image": t if image_t is None else image_t})


def test_stale_limit():
    assert stale_limit_s(1 / 25) == pytest.approx(0.1)  # 2.5 periods at 25 Hz
    assert stale_limit_s(1 / 500) == pytest.approx(0.05)  # floor of 50 ms at 500 Hz


def test_clamp_and_count():
    f = SafetyFilter(SPEC, SafetyConfig(enabled=False))
    out, hold = f.filter(np.array([3.0, -7.0, 0.2, 2.0], np.float32), _obs())
    assert not hold
    np.testing.assert_allclose(out, [1.0, -1.0, 0.2, 1.0])
    assert f.counters["clamped"] == 1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_action_becomes_hold_with_gripper_unchanged(bad):
    f = SafetyFilter(SPEC)
    f.filter(np.array([0.3, 0.0, 0.0, -1.0], np.float32), _obs())  # gripper closed
    out, hold = f.filter(np.array([bad, 0.0, 0.0, 1.0], np.float32), _obs())
    assert hold
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.0, -1.0])
    assert f.counters["nonfinite_action"] == 1


def test_rate_limit_jerk_then_acceleration_then_velocity():
    f = SafetyFilter(SPEC, SafetyConfig(max_action_step=0.5, max_action_jerk=0.3, workspace=False))
    xs = [float(f.filter(np.array([1.0, 0, 0, 1], np.float32), _obs())[0][0]) for _ in range(5)]
    # dv limited by jerk 0.3/step then capped at 0.5/step, v capped at 1: 0.3, 0.3+0.5, 1, 1, 1
    np.testing.assert_allclose(xs, [0.3, 0.8, 1.0, 1.0, 1.0], atol=1e-6)
    assert f.counters["rate_limited"] >= 2
    back = [float(f.filter(np.array([-1.0, 0, 0, 1], np.float32), _obs())[0][0]) for _ in range(4)]
    assert np.all(np.abs(np.diff([1.0, *back])) <= 0.5 + 1e-6)


def test_workspace_clamps_target_into_box():
    f = SafetyFilter(SPEC, SafetyConfig(enabled=True, max_action_step=2.0, max_action_jerk=4.0))
    hi_x = SPEC.workspace_high_m[0]
    out, _ = f.filter(np.array([1.0, 0, 0, 1], np.float32), _obs(ee=(hi_x - 0.01, 0.0, 0.3)))
    assert out[0] * SPEC.max_ee_delta_m == pytest.approx(0.01, abs=1e-6)  # stops exactly at the boundary
    assert f.counters["workspace_clamped"] == 1


def test_outside_workspace_only_inward_motion():
    f = SafetyFilter(SPEC, SafetyConfig(max_action_step=2.0, max_action_jerk=4.0))
    z_lo = SPEC.workspace_low_m[2]
    below = _obs(ee=(0.5, 0.0, z_lo - 0.1))  # below the table plane
    out, _ = f.filter(np.array([0, 0, -1.0, 1], np.float32), below)
    assert out[2] == 0.0  # further out: refused
    f.reset_motion()
    out, _ = f.filter(np.array([0, 0, 1.0, 1], np.float32), below)
    assert out[2] == pytest.approx(1.0)  # back inward: allowed


def test_observation_checks():
    f = SafetyFilter(SPEC)  # 25 Hz -> stale limit 100 ms
    now = time.monotonic()
    assert f.check_obs(_obs(t=now), now) is None
    assert f.check_obs(_obs(t=now - 0.09), now) is None
    assert f.check_obs(_obs(t=now - 0.11), now) == "stale_state"
    assert f.check_obs(_obs(t=now, image_t=now - 0.2), now) == "stale_image"
    bad = _obs(t=now)
    bad.arrays["goal"][0] = np.nan
    assert f.check_obs(bad, now) == "nonfinite_obs"
    bad = _obs(t=now)
    bad.arrays["image"] = np.zeros((8, 8, 3), np.uint8)
    assert f.check_obs(bad, now) == "bad_obs"


def test_frozen_state_detected_only_while_moving():
    f = SafetyFilter(SPEC)
    now = time.monotonic()
    obs = _obs(t=now)
    for i in range(10):  # at rest, identical proprio is fine
        assert f.check_obs(_obs(t=now + i * 0.04), now + i * 0.04) is None
    f.filter(np.array([0.5, 0, 0, 1], np.float32), obs)  # now motion is commanded
    reasons = [f.check_obs(_obs(t=now + 1 + i * 0.04), now + 1 + i * 0.04) for i in range(6)]
    assert reasons[:3] == [None, None, None] and reasons[-1] == "frozen_state"
    assert f.check_obs(_obs(ee=(0.51, 0, 0.3), t=now + 2), now + 2) is None  # moves again: cleared


def test_estop_file_latches_until_removed_and_rearmed(tmp_path):
    path = tmp_path / "ESTOP"
    f = SafetyFilter(SPEC, SafetyConfig(estop_file=str(path)))
    assert not f.estop.poll()
    path.write_text("stop")
    assert f.estop.poll()
    f.latch("estop")
    path.unlink()
    assert f.estop.poll()  # latched: removing the file is not enough
    obs = _obs(gripper_m=0.0)
    f.rearm(obs, obs.stamp_s)
    assert f.latched is None and not f.estop.poll()
    assert f.last_gripper == pytest.approx(-1.0)  # re-armed from the measured (closed) gripper


def test_estop_rearm_refused_while_file_present(tmp_path):
    path = tmp_path / "ESTOP"
    path.write_text("")
    f = SafetyFilter(SPEC, SafetyConfig(estop_file=str(path)))
    assert f.estop.poll()
    f.latch("estop")
    with pytest.raises(RuntimeError, match="still exists"):
        f.rearm(_obs(), time.monotonic())
    assert f.latched == "estop"


def test_rearm_refused_on_stale_measurement():
    f = SafetyFilter(SPEC)
    f.latch("policy_error")
    with pytest.raises(RuntimeError, match="stale_state"):
        f.rearm(_obs(t=time.monotonic() - 1.0), time.monotonic())
    assert f.latched == "policy_error"


def test_estop_signal():
    e = EStop(use_signal=True)
    assert e.install()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.01)
        assert e.poll() and e.reason == "SIGUSR1"
    finally:
        e.uninstall()
