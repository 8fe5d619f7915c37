"""The same Cartesian target sequence at the policy rate in our FR3 env and on franky-sim: the two TCP paths.

franky-sim runs in its own process (real time, 1 kHz); this process talks to it with franky (`franky.Robot`,
`RealtimeConfig.Ignore`), sending each target as an asynchronous `CartesianMotion` exactly as `robot=franka` does:
action delta x MAX_EE_DELTA_M added to the reported tool centre point. Both start from our env's reset pose of
one seed. Per step it records the tcp each side reports (what the policy sees) and the tcp of the simulated joints.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from robo_hybrid.envs.fr3 import MAX_EE_DELTA_M, WORKSPACE_HIGH_M, WORKSPACE_LOW_M

from .franky_sim_scene import FrankySimScene


def loopback_host(n: int = 0) -> str:
    """A loopback address of its own per server (libfranka's port is fixed; a killed server's port lingers)."""
    return f"127.{os.getpid() % 250 + 1}.{(time.monotonic_ns() // 10**6) % 250 + 1}.{n % 250 + 2}"


def action_sequences(steps: int = 60, seed: int = 0) -> dict[str, np.ndarray]:
    """Named (steps, 3) action sequences in [-1, 1]: full-speed legs, half-speed legs, smooth random."""
    legs = np.array([[0, 1, 0], [0, 0, -1], [0, -1, 0], [0, 0, 1], [-1, 0, 0], [1, 0, 0]], float)
    n = max(1, steps // len(legs))
    full = np.repeat(legs, n, axis=0)[:steps]  # (steps, 3)
    rng = np.random.default_rng(seed)
    raw = rng.uniform(-1, 1, (steps + 8, 3))
    smooth = np.stack([np.convolve(raw[:, i], np.ones(8) / 8, mode="valid")[:steps] for i in range(3)], 1) * 2
    return {"full_speed_legs": full, "half_speed_legs": 0.5 * full, "smooth_random": np.clip(smooth, -1, 1)}


@dataclass
class Path:
    """One side's per-step record: reported tcp (steps, 3), tcp of the simulated joints (steps, 3), time (s)."""

    reported: np.ndarray
    physical: np.ndarray
    time_s: np.ndarray


def run_env(actions: np.ndarray, seed: int, gripper: float = 1.0) -> Path:
    """Our env: the action sequence from the reset pose of `seed`."""
    from robo_hybrid.envs import make_env

    env = make_env("fr3_pickplace", render=False)
    e = env.unwrapped
    env.reset(seed=seed)
    rep, phys, ts = [], [], []
    for a in actions:
        rep.append(e.tcp_pos)
        phys.append(e.data.site_xpos[e._tcp].copy())
        ts.append(float(e.data.time))
        env.step(np.array([*a, gripper], np.float32))
    env.close()
    return Path(np.array(rep), np.array(phys), np.array(ts))


def seed_pose(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Our env's reset of `seed`: arm joints, cube pose (pos + quat), goal."""
    from robo_hybrid.envs import make_env

    env = make_env("fr3_pickplace", render=False)
    e = env.unwrapped
    env.reset(seed=seed)
    out = (e.data.qpos[e._arm_qadr].copy(), e.data.qpos[e._obj_qadr : e._obj_qadr + 7].copy(), e.goal.copy())
    env.close()
    return out


def run_franky_sim(scene: FrankySimScene, actions: np.ndarray, seed: int, rate_hz: float = 25.0,
                   dynamics_factor: float = 0.15) -> Path:  # fmt: skip
    """franky-sim through franky: the same action sequence every 1 / rate_hz of franky-sim's own (simulated) time,
    from the same reset pose."""
    import franky

    q, obj, goal = seed_pose(seed)
    scene.reset(q, obj, goal)
    time.sleep(0.5)  # franky-sim's finite-difference velocity estimates settle after the jump
    arm = franky.Robot(scene.host, realtime_config=franky.RealtimeConfig.Ignore)
    arm.relative_dynamics_factor = dynamics_factor
    quat = np.asarray(arm.current_pose.end_effector_pose.quaternion, float)
    rep, phys, ts = [], [], []
    period, t0 = 1.0 / rate_hz, scene.snapshot().time_s
    try:
        for k, a in enumerate(actions):
            snap = scene.snapshot()
            while snap.time_s < t0 + k * period - 0.0005:  # paced by franky-sim's clock: a loaded machine slows it
                time.sleep(0.0005)
                snap = scene.snapshot()
            p = np.asarray(arm.current_pose.end_effector_pose.translation, float)
            rep.append(p)
            phys.append(scene.physical_tcp())
            ts.append(snap.time_s)
            target = np.clip(p + np.asarray(a) * MAX_EE_DELTA_M, WORKSPACE_LOW_M, WORKSPACE_HIGH_M)
            pose = franky.RobotPose(franky.Affine(target, quat))
            arm.move(franky.CartesianMotion(pose, franky.ReferenceType.Absolute), asynchronous=True)
        arm.move(franky.CartesianStopMotion())
    finally:
        del arm
    return Path(np.array(rep), np.array(phys), np.array(ts))


def compare_motion(steps: int = 60, seed: int = 0, rate_hz: float = 25.0) -> dict[str, dict[str, float]]:
    """Per sequence: per-step position error (median, p90, max; mm) of the reported and of the physical tcp, the
    path length on each side (m) and franky-sim's median simulated time per control period (ms). Prints a table."""
    scene = FrankySimScene(loopback_host(), with_object=True)
    out: dict[str, dict[str, float]] = {}
    try:
        for name, acts in action_sequences(steps, seed).items():
            ours, theirs = run_env(acts, seed), run_franky_sim(scene, acts, seed, rate_hz)
            rep = np.linalg.norm(ours.reported - theirs.reported, axis=1) * 1e3
            phys = np.linalg.norm(ours.physical - theirs.physical, axis=1) * 1e3
            out[name] = {
                "reported_err_mm_median": float(np.median(rep)), "reported_err_mm_p90": float(np.percentile(rep, 90)),
                "reported_err_mm_max": float(rep.max()), "physical_err_mm_median": float(np.median(phys)),
                "physical_err_mm_max": float(phys.max()),
                "path_env_m": float(np.linalg.norm(np.diff(ours.reported, axis=0), axis=1).sum()),
                "path_franky_sim_m": float(np.linalg.norm(np.diff(theirs.reported, axis=0), axis=1).sum()),
                "sim_ms_per_step": float(np.median(np.diff(theirs.time_s)) * 1e3),
            }  # fmt: skip
    finally:
        scene.close()
    print(f"TCP path, our env vs franky-sim: {steps} actions at {rate_hz:g} Hz from the reset pose of seed {seed}")
    print("| sequence | reported tcp error mm (median / p90 / max) | physical tcp error mm (median / max) "
          "| path env / franky-sim m | franky-sim ms per step |")
    print("|---|---|---|---|---|")
    for name, r in out.items():
        print(f"| {name} | {r['reported_err_mm_median']:.1f} / {r['reported_err_mm_p90']:.1f} / "
              f"{r['reported_err_mm_max']:.1f} | {r['physical_err_mm_median']:.1f} / {r['physical_err_mm_max']:.1f} | "
              f"{r['path_env_m']:.3f} / {r['path_franky_sim_m']:.3f} | {r['sim_ms_per_step']:.1f} |")
    return out
