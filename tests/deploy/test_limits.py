"""The robot declares its limits; the safety filter enforces their intersection with the model's spec."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from deploy_testlib import build_policy_onnx

from robo_hybrid.deploy.loop import Controller, LoopConfig
from robo_hybrid.deploy.mock import MockRobot, mock_io_spec
from robo_hybrid.deploy.policy import CallablePolicy, ModelLoadError, OnnxPolicy
from robo_hybrid.deploy.robot import RobotLimits
from robo_hybrid.deploy.safety import SafetyConfig
from robo_hybrid.spec import IOSpec, SpecMismatchError

SPEC = mock_io_spec(image_size=16, control_rate_hz=100.0, episode_steps=0)
WIDE = dataclasses.replace(SPEC, workspace_low_m=(-10.0, -10.0, -10.0), workspace_high_m=(10.0, 10.0, 10.0))
ROBOT = RobotLimits((0.2, -0.4, 0.0), (0.8, 0.4, 0.4))  # the robot: z <= 0.4 m
UP = np.array([0.0, 0.0, 1.0, 1.0], np.float32)


def _run(model_spec, robot_spec, limits, fn=lambda obs: UP, steps=60, **loop):
    robot = MockRobot(robot_spec, start_ee_m=(0.5, 0.0, 0.3), limits=limits)
    robot.supports_reset = False
    ctl = Controller(CallablePolicy(model_spec, fn), robot, LoopConfig(max_steps=steps, **loop),
                     SafetyConfig(estop_signal=False))  # fmt: skip
    return ctl, robot, ctl.run()


def test_a_wide_model_box_never_widens_the_robots():
    ctl, robot, res = _run(WIDE, WIDE, ROBOT)
    assert robot.ee_pos_m[2] == pytest.approx(0.4, abs=1e-5)  # reached the robot's ceiling, never crossed it
    assert ctl.safety.workspace_m == ([0.2, -0.4, 0.0], [0.8, 0.4, 0.4])
    assert res["counters"]["workspace_clamped"] >= 1


def test_a_narrow_model_box_narrows_the_robots():
    narrow = dataclasses.replace(SPEC, workspace_high_m=(0.8, 0.4, 0.35))
    _, robot, _ = _run(narrow, narrow, ROBOT)
    assert robot.ee_pos_m[2] == pytest.approx(0.35, abs=1e-5)


def test_disjoint_boxes_refuse_to_start():
    away = dataclasses.replace(SPEC, workspace_low_m=(2.0, 2.0, 2.0), workspace_high_m=(3.0, 3.0, 3.0))
    with pytest.raises(SpecMismatchError, match="overlap"):
        _run(away, SPEC, ROBOT)


def test_robot_speed_limit_caps_every_command():
    limits = dataclasses.replace(ROBOT, max_ee_speed_m_s=1.0)
    _, robot, res = _run(SPEC, SPEC, limits, fn=lambda obs: np.array([1.0, 1.0, 0.0, 1.0], np.float32), steps=20)
    a = robot.actions("action")[:, :3]
    speed = np.linalg.norm(a, axis=1) * SPEC.max_ee_delta_m * SPEC.control_rate_hz
    assert speed.max() <= 1.0 + 1e-5 and res["counters"]["speed_limited"] >= 1


def test_joint_past_its_soft_limit_holds():
    limits = dataclasses.replace(ROBOT, joint_pos_low_rad=(-0.05,) * 7, joint_pos_high_rad=(0.05,) * 7)
    _, robot, res = _run(SPEC, SPEC, limits, fn=lambda obs: np.array([0.0, 1.0, 0.0, 1.0], np.float32), steps=30)
    assert res["counters"]["joint_limit"] >= 1 and robot.commands[-2].kind == "hold"


def test_another_tasks_spec_is_refused_unless_allowed():
    other = dataclasses.replace(SPEC, task_id="push")
    with pytest.raises(SpecMismatchError, match="task: model trained for 'push'"):
        _run(other, SPEC, ROBOT, steps=3)
    *_, res = _run(other, SPEC, ROBOT, steps=3, allow_other_task=True)
    assert res["ends"] == ["max_steps"]


@pytest.mark.parametrize("rate", [0.0, -25.0, float("nan")])
def test_spec_with_a_bad_control_rate_is_refused_at_load(tmp_path, rate):
    d = json.loads(SPEC.to_json())
    d["control_rate_hz"] = rate
    with pytest.raises(SpecMismatchError, match="control_rate_hz"):
        IOSpec.from_dict(d)
    path = build_policy_onnx(str(tmp_path / "p.onnx"), SPEC, metadata={"io_spec": json.dumps(d)})
    with pytest.raises(ModelLoadError, match="control_rate_hz"):
        OnnxPolicy(path)
