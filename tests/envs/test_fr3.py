"""envs/fr3.py: the FR3 tasks' gymnasium contract, I/O spec, privileged isolation, pose-target motion, expert."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from robo_hybrid.envs import TASK_IDS, make_env, make_expert
from robo_hybrid.envs.experts_fr3 import run_expert_episode
from robo_hybrid.envs.fr3 import MAX_EE_DELTA_M, CartesianTrajectory
from robo_hybrid.envs.fr3_scene import FR3_JOINTS, build_scene_xml
from robo_hybrid.spec import IOSpec

FR3 = ["fr3_reach", "fr3_pickplace"]


def test_model_comes_from_the_installed_franky_sim_package():
    xml = build_scene_xml()
    assert "franky_sim" in xml and "meshes" in xml  # meshdir points into the installed package, nothing copied


@pytest.mark.parametrize("task", FR3)
def test_check_env_and_spec(task):
    env = gym.make(TASK_IDS[task], image_size=32, wrist_camera=True).unwrapped
    try:
        check_env(env, skip_render_check=True)
        obs, info = env.reset(seed=3)
        spec = env.io_spec
        spec.check_obs(obs)
        assert set(obs) == set(spec.policy_keys) | set(spec.privileged_keys)
        assert spec.joint_names == FR3_JOINTS and obs["proprio"].shape == (7 + 7 + 3 + 1,)
        for key in ("image", "image_wrist"):
            assert obs[key].shape == (32, 32, 3) and obs[key].std() > 0, f"{key} is blank"
        assert spec.extras["robot"] == "fr3" and spec.action_meaning[:3] == ("ee_delta_x", "ee_delta_y", "ee_delta_z")
        for _ in range(5):
            obs, _, _, _, info = env.step(env.action_space.sample())
            assert all(np.isfinite(v).all() for v in obs.values())
        assert IOSpec.from_json(spec.to_json()) == spec
    finally:
        env.close()


def test_policy_inputs_carry_no_privileged_state():
    """Moving the cube changes `privileged` but no non-image policy input."""
    env = make_env("fr3_pickplace", render=False)
    e = env.unwrapped
    obs, _ = env.reset(seed=0)
    assert "privileged" not in e.io_spec.policy_keys
    import mujoco

    e.data.qpos[e._obj_qadr : e._obj_qadr + 2] += 0.05
    mujoco.mj_forward(e.model, e.data)
    obs2 = e._obs()
    assert not np.allclose(obs["privileged"], obs2["privileged"])
    for k in ("proprio", "goal"):
        np.testing.assert_array_equal(obs[k], obs2[k])


def test_trajectory_respects_per_axis_limits_synchronises_the_axes_and_stops_on_target():
    """franky's Ruckig: velocity / acceleration limits per axis, every axis arriving at the same time."""
    traj = CartesianTrajectory(vel_m_s=0.45, acc_m_s2=1.35)
    traj.reset(np.zeros(3))
    target, dt = np.array([0.3, -0.1, 0.05]), 0.001
    vs = []
    for _ in range(3000):
        traj.step(target, dt)
        vs.append(traj.v.copy())
    v = np.array(vs)  # (ticks, 3)
    acc = np.abs(np.diff(v, axis=0)) / dt  # (ticks - 1, 3)
    assert np.abs(v).max() <= 0.45 + 1e-9 and np.abs(v[:, 0]).max() > 0.44  # x, the longest, reaches the limit
    assert np.abs(v[:, 1]).max() < 0.2  # y is stretched to x's duration (a third of the distance)
    assert acc.max() <= 1.35 + 1e-6
    moving = np.abs(v) > 1e-9  # (ticks, 3)
    ends = [int(np.nonzero(moving[:, i])[0].max()) for i in range(3)]
    assert max(ends) - min(ends) <= 1, ends  # time-synchronised
    np.testing.assert_allclose(traj.pos, target, atol=1e-9)
    assert np.abs(traj.v).max() < 1e-12


def test_a_diagonal_moves_faster_than_one_axis():
    """Limits per axis, as franky's (measured on franky-sim: 9.1 mm per 25 Hz step along y alone and along each of
    y and z for the diagonal action)."""
    out = []
    for target in (np.array([0.0, -1.0, 0.0]), np.array([0.0, -1.0, -1.0])):
        traj = CartesianTrajectory(vel_m_s=0.255, acc_m_s2=1.95)
        traj.reset(np.zeros(3))
        for _ in range(500):
            traj.step(target, 0.001)
        out.append(np.abs(traj.v))
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-6)  # y at its limit either way
    assert np.linalg.norm(out[1]) > 1.4 * np.linalg.norm(out[0])


def test_a_new_target_keeps_the_motion_state():
    """Like franky's asynchronous motions: a new target takes over from the current velocity (no jump to zero)."""
    traj = CartesianTrajectory(vel_m_s=0.45, acc_m_s2=1.35)
    traj.reset(np.zeros(3))
    for _ in range(100):
        traj.step(np.array([0.5, 0, 0]), 0.001)
    v = traj.v.copy()
    traj.step(np.array([0.5, 0.2, 0]), 0.001)
    assert np.abs(traj.v - v).max() <= 1.35 * 0.001 + 1e-9


def test_action_moves_the_tool_toward_the_pose_target():
    env = make_env("fr3_reach", render=False)
    e = env.unwrapped
    env.reset(seed=1)
    start = e.tcp_pos
    for _ in range(10):
        env.step(np.array([0.0, 1.0, 0.0, 1.0], np.float32))
    moved = e.tcp_pos - start
    assert moved[1] > 5 * MAX_EE_DELTA_M * 0.3  # mostly along +y ...
    assert abs(moved[0]) < 0.01 and abs(moved[2]) < 0.01  # ... and not elsewhere (tool down, straight line)
    rot = e.data.site_xmat[e._tcp].reshape(3, 3)
    np.testing.assert_allclose(rot, e._tool_rot, atol=0.02)  # the tool stays pointing down


@pytest.mark.parametrize("task", FR3)
def test_expert_solves_the_task(task):
    env = make_env(task, render=False)
    try:
        assert type(make_expert(env)).__name__.startswith("FR3")
        results = [run_expert_episode(env.unwrapped, seed) for seed in range(8)]
    finally:
        env.close()
    assert sum(ok for ok, _ in results) >= 7, results


def test_a_new_motion_starts_from_the_reported_velocity():
    """franky takes each motion over from the commanded velocity the robot reports: franky-sim's is low-passed
    (it lags while accelerating), an FR3's is exact (velocity_filter=0)."""
    for filt in (0.95, 0.0):
        traj = CartesianTrajectory(vel_m_s=0.255, acc_m_s2=1.95, velocity_filter=filt)
        traj.reset(np.zeros(3))
        for _ in range(40):  # one 25 Hz control period of accelerating along +y
            traj.step(np.array([0.0, 0.02, 0.0]), 0.001)
        v = traj.v.copy()
        traj.new_motion()
        if filt:
            assert 0.3 * v[1] < traj.v[1] < 0.8 * v[1]  # restarts slower than it was moving
        else:
            np.testing.assert_allclose(traj.v, v, atol=1e-12)


def test_reported_tcp_leads_the_simulated_joints_while_moving_and_meets_them_at_rest():
    """Like franky-sim, the env reports the commanded pose (O_T_EE at the joint targets); its joint PD lags it."""
    env = make_env("fr3_reach", render=False)
    e = env.unwrapped
    env.reset(seed=2)
    for _ in range(10):
        obs, *_ = env.step(np.array([0.0, 1.0, 0.0, 1.0], np.float32))
    np.testing.assert_allclose(obs["proprio"][14:17], e.tcp_pos, atol=1e-6)  # the policy sees the reported tcp
    assert e.tcp_pos[1] - e.tcp_measured_pos[1] > 0.005  # ahead along the motion
    for _ in range(25):
        env.step(np.array([0.0, 0.0, 0.0, 1.0], np.float32))
    np.testing.assert_allclose(e.tcp_pos, e.tcp_measured_pos, atol=1e-3)
    env.close()


def test_cameras_draw_the_light_collision_meshes_not_the_visual_ones():
    """The drawn groups (0-2) hold the arm's collision meshes only: ~3 k triangles, not the 241 k visual ones."""
    import mujoco

    m = mujoco.MjModel.from_xml_string(build_scene_xml())
    drawn = [g for g in range(m.ngeom) if m.geom_group[g] <= 2 and m.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH]
    faces = sum(int(m.mesh_facenum[m.geom_dataid[g]]) for g in drawn)
    assert drawn and faces < 10_000
    assert all(m.geom_contype[g] or m.geom_conaffinity[g] for g in drawn)  # they are the colliding geoms


def test_a_gripper_command_runs_until_the_hand_settles_as_through_the_driver():
    """robot=franka never interrupts franky's gripper: a close wished for one step closes the hand all the way (it
    settles on nothing), and the open wished meanwhile goes out only after that; a steady wish sends one command."""
    env = make_env("fr3_reach", render=False)
    e = env.unwrapped
    env.reset(seed=3)

    def width() -> float:
        return float(e.data.qpos[e._finger_qadr].sum())

    env.step(np.array([0.0, 0.0, 0.0, 1.0], np.float32))  # the first command (open) goes out: already open
    for _ in range(3):
        env.step(np.array([0.0, 0.0, 0.0, 1.0], np.float32))
    assert not e.hand.running and e.hand.issued is True
    env.step(np.array([0.0, 0.0, 0.0, -1.0], np.float32))  # close for one step ...
    widths = []
    for _ in range(30):  # ... then open: the hand keeps closing until it has settled
        env.step(np.array([0.0, 0.0, 0.0, 1.0], np.float32))
        widths.append(width())
    closed = int(np.argmin(widths))
    assert widths[closed] < 0.005, widths  # closed on nothing, all the way
    assert widths[-1] > widths[closed] + 0.01  # then the deferred open went out
    assert all(b <= a + 1e-6 for a, b in zip(widths[:closed], widths[1 : closed + 1], strict=True))  # no reopening
    env.close()


def test_a_reset_ends_a_running_gripper_command():
    """A close still running when the episode ends does not hold back the next episode's first command."""
    env = make_env("fr3_reach", render=False)
    e = env.unwrapped
    env.reset(seed=4)
    env.step(np.array([0.0, 0.0, 0.0, -1.0], np.float32))
    assert e.hand.running and e.hand.issued is False
    env.reset(seed=5)
    assert not e.hand.running and e.hand.issued is None
    env.step(np.array([0.0, 0.0, 0.0, -1.0], np.float32))
    assert e.hand.running and e.hand.issued is False  # the close went out at once
    env.close()
