"""The MuJoCo backends with the real envs and a policy exported by robo_hybrid's exporter (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pytest

# The training side is imported before any GL context exists (torch/triton vs Mesa, see DESIGN.md).
policy_model = pytest.importorskip("robo_hybrid.policy.model", reason="training side not installed")
export = pytest.importorskip("robo_hybrid.export", reason="training side not installed")
envs = pytest.importorskip("robo_hybrid.envs", reason="sim extra not installed")
if not hasattr(envs, "make_env"):
    pytest.skip("robo_hybrid.envs.make_env is not there yet", allow_module_level=True)

from robo_hybrid.deploy.run import run_deploy  # noqa: E402
from robo_hybrid.deploy.sim_backend import MujocoRobot  # noqa: E402
from robo_hybrid.spec import SpecMismatchError  # noqa: E402

TASK = "reach"
ENV_KW = {"image_size": 32, "render": False}  # physics only: fast, same spec


@pytest.fixture(scope="module")
def env_spec():
    env = envs.make_env(TASK, **ENV_KW)
    try:
        return env.unwrapped.io_spec
    finally:
        env.close()


def _export(spec, path, history=1, chunk=0) -> str:
    from robo_hybrid.policy.config import PolicyConfig

    cfg = PolicyConfig(d_model=32, n_layers=1, n_heads=2, conv_channels=[8, 16], history=history, chunk_size=chunk)
    export.export_onnx(policy_model.MultimodalPolicy(cfg, spec).eval(), path)
    return str(path)


@pytest.fixture(scope="module")
def exported(env_spec, tmp_path_factory):
    return _export(env_spec, tmp_path_factory.mktemp("onnx") / "policy.onnx")


def test_mujoco_robot_gives_only_policy_keys(env_spec):
    robot = MujocoRobot(TASK, seed=0, **ENV_KW)
    try:
        robot.connect()
        assert robot.io_spec == env_spec
        obs = robot.read()
        assert set(obs.arrays) == set(env_spec.policy_keys)  # "privileged" never leaves the simulator
        env_spec.check_obs(obs.arrays)
        robot.write(np.array([0.5, 0.0, 0.0, 1.0], np.float32))
        after = robot.read()
        assert robot.n_steps == 1 and after.stamp_s > obs.stamp_s and "is_success" in after.info
        assert not np.array_equal(after.arrays["proprio"], obs.arrays["proprio"])
    finally:
        robot.close()


def test_run_deploy_in_process_sim(exported):
    res = run_deploy(exported, robot="sim", episodes=1, max_steps=8, env_cfg={"render": False})
    assert res["ends"] == ["max_steps"] and res["counters"]["actions"] == 8
    assert res["counters"].get("holds", 0) == 0 and res["latched"] is None


def test_run_deploy_sim_server_with_history_and_chunks(env_spec, tmp_path):
    path = _export(env_spec, tmp_path / "hist.onnx", history=2, chunk=4)
    res = run_deploy(path, robot="sim_server", episodes=1, max_steps=8, temporal_ensemble_m=0.1,
                     keys_dir=str(tmp_path / "keys"), env_cfg={"render": False})  # fmt: skip
    assert res["ends"] == ["max_steps"] and res["counters"]["actions"] == 8


def test_spec_mismatch_with_the_env_refuses_before_stepping(exported):
    with pytest.raises(SpecMismatchError, match="observation 'image'"):
        run_deploy(exported, robot="sim", episodes=1, max_steps=5, env_cfg={"image_size": 48, "render": False})
