"""bench sim2sim against a REAL franky-sim (its own process, libfranka's protocol): the seeded scene reset and a
2-episode run of the scripted expert through robot=franka beside our env on the same seeds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import franky  # noqa: F401  # franky-control and franky-sim come with [dev]: missing is a failure, not a skip
import franky_sim  # noqa: F401
import numpy as np

from robo_hybrid.bench.fr3_motion import loopback_host
from robo_hybrid.bench.fr3_sim2sim import run_sim2sim, seed_state
from robo_hybrid.bench.franky_sim_scene import FrankySimScene, MirrorCamera
from robo_hybrid.envs import make_env


def test_reset_places_arm_cube_and_goal_as_our_env_does_for_the_seed():
    env = make_env("fr3_pickplace", image_size=32, wrist_camera=True)
    st = seed_state(env, 1234)
    obs, _ = env.reset(seed=1234)
    env.close()
    scene = FrankySimScene(loopback_host(7))
    cams = {"image": MirrorCamera(scene, "front", 32), "image_wrist": MirrorCamera(scene, "wrist", 32)}
    try:
        scene.reset(st.q_arm, st.obj_pose, st.goal)
        snap = scene.snapshot()
        np.testing.assert_allclose(snap.qpos[scene.arm_qadr], st.q_arm, atol=2e-3)  # held by franky-sim's server
        np.testing.assert_allclose(scene.object_pos()[:2], st.obj_pose[:2], atol=1e-3)
        assert abs(scene.object_pos()[2] - 0.02) < 2e-3  # resting on franky-sim's ground, our table top
        np.testing.assert_allclose(scene.model.site_pos[scene._goal_site], st.goal)
        for key, cam in cams.items():  # the policy's frames on franky-sim are our env's frames of the same state
            cam.start()
            diff = np.abs(cam.latest()[0].astype(int) - obs[key].astype(int))
            assert diff.mean() < 1.0, f"{key}: mean pixel difference {diff.mean():.1f} from our env's frame"
    finally:
        for cam in cams.values():
            cam.stop()
        scene.close()


def test_two_expert_episodes_on_franky_sim_and_in_our_env(capsys):
    out = run_sim2sim("fr3_pickplace", episodes=2, seed_base=1_000_000)
    assert len(out["env"].successes) == 2 and len(out["franky_sim"].successes) == 2
    assert out["latched"] is None and set(out["ends"]) <= {"done", "max_steps"}
    assert all(out["env"].successes)  # the expert solves both seeds in our env
    assert any(out["franky_sim"].successes)  # and, through the driver, on franky-sim
    text = capsys.readouterr().out
    assert "our env    : 2/2" in text and "franky-sim :" in text and "%" in text


def test_an_onnx_policy_sees_franky_sim_rendered_like_our_env(tmp_path, monkeypatch):
    """controller=onnx: the policy's camera frames come from franky-sim's state, drawn like our env's scene."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "deploy"))
    from deploy_testlib import build_policy_onnx

    from robo_hybrid.bench import fr3_sim2sim

    env = make_env("fr3_pickplace", image_size=32, wrist_camera=True)
    model = build_policy_onnx(str(tmp_path / "p.onnx"), env.unwrapped.io_spec)
    env.close()
    frames = []
    real_read = fr3_sim2sim.FrankySimRobot.read

    def read(self):
        obs = real_read(self)
        frames.append(obs.arrays["image"])
        return obs

    monkeypatch.setattr(fr3_sim2sim.FrankySimRobot, "read", read)
    out = run_sim2sim("fr3_pickplace", episodes=1, controller="onnx", model=model, episode_steps=15)
    assert out["franky_sim"].steps == [15] and out["env"].steps == [15] and out["latched"] is None
    assert frames and frames[-1].shape == (32, 32, 3) and frames[-1].std() > 10  # a drawn scene, not a grey frame


def test_the_harness_imports_no_torch():
    code = ("import sys, robo_hybrid.commands.bench_sim2sim, robo_hybrid.bench.fr3_sim2sim; "
            "print(sorted(m for m in ('torch', 'hydra') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
