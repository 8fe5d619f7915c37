"""FR3 tasks on the Menagerie FR3 model (from franky-sim): the action means what franky's Cartesian motions do.

Action (shared layout, `common.ACTION_MEANING`): xyz in [-1, 1] times `MAX_EE_DELTA_M` added to the reported tool
centre point is a Cartesian pose target (tool pointing down), sent once per control period; like franky's
`CartesianMotion`, the target is reached by Ruckig under franky's per-axis velocity, acceleration and jerk limits
scaled by the dynamics factor (axes time-synchronised), and a new target takes over from the commanded velocity the
robot reports. The arm
follows that trajectory as franky-sim's does (1 kHz: its IK from the measured joints to joint targets q_d, its
joint PD with gravity and Coriolis compensation), and the tcp in the observation is the one franky reports: on
franky-sim the pose at q_d, which leads the simulated joints by the PD's tracking error while moving
(`tcp_measured_pos` is the tcp of the joints). `robo-hybrid bench sim2sim motion=true` prints both paths.
Gripper: > 0 opens (franky `Gripper.move` to the full width), <= 0 grasps (franky `Gripper.grasp`), at the Franka
Hand's speed and the grasp force below; the fingers follow franky-sim's hand controller, and each command runs until
the hand has settled, as robot=franka issues them (`HandCommands`).
"""

from __future__ import annotations

import os
import warnings
from collections import deque
from dataclasses import dataclass

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from robo_hybrid.constants import TASK_IDS  # noqa: E402

from . import rewards  # noqa: E402
from .common import PRIVILEGED_DIM, EnvConfig, build_io_spec, spaces_from_spec  # noqa: E402
from .fr3_scene import CUBE_HALF_M, FINGER_JOINTS, FR3_JOINTS, HOME_Q_RAD, build_scene_xml  # noqa: E402
from .randomize import Randomizer  # noqa: E402
from .scene import MujocoScene  # noqa: E402

MAX_EE_DELTA_M = 0.02  # per control step at |action| = 1
WORKSPACE_LOW_M = (0.3, -0.3, 0.015)
WORKSPACE_HIGH_M = (0.75, 0.3, 0.55)
# franky 2.0's default Cartesian translation limits per axis (Robot.translation_velocity_limit, _acceleration_limit,
# _jerk_limit, read from the robot; franky-sim reports the same), scaled by the dynamics factor (m/s, m/s^2, m/s^3).
FR3_MAX_TRANSLATION_VEL_M_S = 1.7
FR3_MAX_TRANSLATION_ACC_M_S2 = 13.0
FR3_MAX_TRANSLATION_JERK_M_S3 = 6500.0
DEFAULT_DYNAMICS_FACTOR = 0.15
FRANKY_SIM_VELOCITY_FILTER = 0.95  # see CartesianTrajectory (0 = an FR3's exact commanded velocity)
GRIPPER_MAX_WIDTH_M = 0.08  # Franka Hand
GRIPPER_SPEED_M_S = 0.05  # franky-sim's hand velocity limit per finger (FRANKA_HAND_VELOCITY_LIMIT)
GRASP_FORCE_N = 40.0
# franky-sim's hand controller (mujoco_simulator.FrankaMujocoRobot._pre_step): per-finger PD on the half width
_HAND_KP, _HAND_KV, _HAND_OPEN_FORCE_N = 1000.0, 50.0, 70.0
# franky-sim's arm (franky_sim.base_simulator.BaseRobot.cartesian_position_control / joint_position_control): each
# 1 ms tick the commanded pose is solved for joint targets q_d by damped least squares from the measured joints (up to
# 5 iterations, tool frame error, damping added to J J^T), and a joint PD torque with the FR3 model's position gains
# (fr3.xml: kp 4500 .. 2000, kv 450 .. 200) plus gravity / Coriolis compensation drives the joints to q_d.
IK_DAMPING = 1e-4
IK_ITERATIONS = 5
IK_TOLERANCE = 1e-4


@dataclass(frozen=True)
class FR3TaskDef:
    """One FR3 task: horizon, sampling ranges, success threshold."""

    name: str
    kind: str  # reward kind in envs/rewards.py
    episode_steps: int
    has_object: bool
    success_threshold_m: float
    object_xy_low: tuple[float, float] = (0.42, -0.15)
    object_xy_high: tuple[float, float] = (0.62, 0.15)
    goal_low: tuple[float, float, float] = (0.4, -0.2, 0.05)
    goal_high: tuple[float, float, float] = (0.65, 0.2, 0.35)
    min_goal_dist_m: float = 0.0

    @property
    def gym_id(self) -> str:
        """The gymnasium id (robo_hybrid.constants.TASK_IDS)."""
        return TASK_IDS[self.name]


FR3_TASKS: dict[str, FR3TaskDef] = {
    "fr3_reach": FR3TaskDef("fr3_reach", "reach", 100, False, 0.03),
    "fr3_pickplace": FR3TaskDef("fr3_pickplace", "pickplace", 250, True, 0.05,
                                goal_low=(0.42, -0.18, CUBE_HALF_M), goal_high=(0.62, 0.18, 0.2),
                                min_goal_dist_m=0.1),  # fmt: skip
}


class HandCommands:
    """Open / close as robot=franka gives them to franky's gripper (deploy/franka.py `_gripper_command`): a command
    (Gripper.move to the full width, or Gripper.grasp) runs until the hand has settled, which franky-sim declares after
    100 consecutive 1 ms ticks with the width changing by under 10 um (franka_gripper_server); while one runs, a
    changed open / close wish waits and goes out at the first control period after it finished. The policy's wish
    flipping for a step or two therefore commits the hand to a whole close (or open), as on the robot."""

    SETTLE_M = 1e-5
    SETTLE_TICKS = 100

    def __init__(self, width_m: float = 0.0) -> None:
        self.reset(width_m)

    def reset(self, width_m: float) -> None:
        """No command given yet (the driver's first write always sends one), the hand at `width_m`."""
        self.issued: bool | None = None
        self.running = False
        self._prev, self._settled = float(width_m), 0

    def command(self, want_open: bool) -> bool | None:
        """At a control period: the command that goes out now (True open, False close), or None."""
        if self.running or want_open == self.issued:
            return None
        self.issued, self.running, self._settled = want_open, True, 0
        return want_open

    def tick(self, width_m: float) -> None:
        """After each physics tick: a running command ends once the hand has settled."""
        self._settled = self._settled + 1 if abs(width_m - self._prev) < self.SETTLE_M else 0
        self._prev = float(width_m)
        if self._settled >= self.SETTLE_TICKS:
            self.running = False


class CartesianTrajectory:
    """franky's Cartesian pose motion (translation): Ruckig, the online trajectory generator franky runs, with the
    velocity, acceleration and jerk limits per axis and the axes time-synchronised (Ruckig's default), stepped once
    per 1 ms tick toward the target, each new target taking over from the commanded velocity the robot reports.

    Per-axis limits make a diagonal motion faster than a motion along one axis, and a small component of a motion
    slower than its share of a straight line (it is stretched to end with the limiting axis) - measured on franky-sim:
    actions (0, -1, -1) and (0, -0.3, -1) move the reported tcp 9.1 / 9.0 mm and 1.8 / 9.2 mm per 25 Hz step along
    y / z. franky starts each new motion from the robot state's commanded velocity (O_dP_EE_c) at zero acceleration;
    franky-sim reports that velocity as a low-pass finite difference of the commanded pose (`velocity_filter` per
    tick, 0.95 in franky_sim.base_simulator), so a new motion starts slower than the running one while accelerating
    and faster while braking. An FR3 reports the exact commanded velocity: `velocity_filter=0`.
    """

    def __init__(self, vel_m_s: float, acc_m_s2: float, velocity_filter: float = 0.0, jerk_m_s3: float = 0.0,
                 dt_s: float = 0.001) -> None:  # fmt: skip
        try:
            import ruckig
        except ImportError as e:  # an environment installed before the FR3 env needed it
            raise ImportError("the FR3 env needs ruckig: pip install -e '.[sim]'") from e
        if not 0.0 <= velocity_filter < 1.0:
            raise ValueError(f"velocity_filter={velocity_filter}: need 0 <= filter < 1 (0 = the exact velocity)")
        self.vel, self.acc, self.filter, self.dt_s = float(vel_m_s), float(acc_m_s2), float(velocity_filter), dt_s
        self.jerk = float(jerk_m_s3) if jerk_m_s3 > 0 else 500.0 * self.acc  # franky's ratio (6500 / 13)
        self._otg, self._inp, self._out = ruckig.Ruckig(3, dt_s), ruckig.InputParameter(3), ruckig.OutputParameter(3)
        self._inp.max_velocity, self._inp.max_acceleration = [self.vel] * 3, [self.acc] * 3
        self._inp.max_jerk = [self.jerk] * 3
        self._working, self._finished = ruckig.Result.Working, ruckig.Result.Finished
        self._warned = False
        self.reset(np.zeros(3))

    def reset(self, pos_m: np.ndarray) -> None:
        """At rest at `pos_m`."""
        self.pos, self.v, self.v_reported = np.asarray(pos_m, np.float64).copy(), np.zeros(3), np.zeros(3)
        self._restart(self.v)

    def _restart(self, v0: np.ndarray) -> None:
        self._inp.current_position, self._inp.current_velocity = list(self.pos), list(v0)
        self._inp.current_acceleration = [0.0, 0.0, 0.0]
        self._target: np.ndarray | None = None

    def new_motion(self) -> None:
        """A new target takes over: the motion continues from the reported commanded velocity."""
        self.v = self.v_reported.copy()
        self._restart(self.v)

    def step(self, target_m: np.ndarray, dt_s: float) -> np.ndarray:
        """Advance one tick toward target; returns the commanded position."""
        if abs(dt_s - self.dt_s) > 1e-12:
            raise ValueError(f"CartesianTrajectory steps {self.dt_s} s ticks, not {dt_s} s")
        prev = self.pos
        if self._target is None or not np.array_equal(target_m, self._target):
            self._target = np.asarray(target_m, np.float64).copy()
            self._inp.target_position = list(self._target)
        result = self._otg.update(self._inp, self._out)
        if result in (self._working, self._finished):
            self._out.pass_to_input(self._inp)
            self.pos, self.v = np.array(self._out.new_position), np.array(self._out.new_velocity)
        else:  # a numerical failure (not seen in practice): stop here rather than end a training run
            if not self._warned:
                warnings.warn(f"Ruckig: {result} toward {target_m} from {self.pos}; holding", stacklevel=2)
                self._warned = True
            self.v = np.zeros(3)
            self._restart(self.v)
        if self.filter > 0:  # franky-sim: a low-pass finite difference of the commanded pose
            self.v_reported = self.filter * self.v_reported + (1.0 - self.filter) * (self.pos - prev) / dt_s
        else:  # an FR3: the commanded velocity itself
            self.v_reported = self.v.copy()
        return self.pos


class FR3Env(MujocoScene, gym.Env):
    """One FR3 task. Observation: image(s), proprio (7 joints, tcp, opening), goal (policy); privileged (critic)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(self, task: str = "fr3_pickplace", cfg: EnvConfig | None = None, render_mode: str | None = None,
                 dynamics_factor: float = DEFAULT_DYNAMICS_FACTOR,
                 velocity_filter: float = FRANKY_SIM_VELOCITY_FILTER, **cfg_kw):  # fmt: skip
        if task not in FR3_TASKS:
            raise ValueError(f"unknown FR3 task '{task}'; choose one of {sorted(FR3_TASKS)}")
        if not 0.0 < dynamics_factor <= 1.0:
            raise ValueError(f"dynamics_factor={dynamics_factor}: franky accepts (0, 1]")
        self.task = FR3_TASKS[task]
        self.cfg = cfg if cfg is not None else EnvConfig(**cfg_kw)
        if self.cfg.camera not in ("front", "wrist"):
            raise ValueError(f"camera={self.cfg.camera!r}: the FR3 scene has cameras 'front' and 'wrist'")
        self.render_mode = render_mode
        self.model = mujoco.MjModel.from_xml_string(build_scene_xml(self.task.has_object))
        self.data = mujoco.MjData(self.model)
        self.dt_s = float(self.model.opt.timestep)
        self.n_substeps = max(1, round(1.0 / (self.cfg.control_rate_hz * self.dt_s)))
        self.episode_steps = self.cfg.episode_steps or self.task.episode_steps
        self.dynamics_factor = float(dynamics_factor)
        self._ids()
        self.io_spec = build_io_spec(
            self.task.gym_id, self.cfg, FR3_JOINTS, MAX_EE_DELTA_M, WORKSPACE_LOW_M, WORKSPACE_HIGH_M,
            self.episode_steps, extras={"robot": "fr3", "physics_dt_s": self.dt_s, "n_substeps": self.n_substeps,
                                        "gripper_open_m": GRIPPER_MAX_WIDTH_M, "dynamics_factor": self.dynamics_factor,
                                        "action_target": "measured_tcp_plus_delta", "gripper": "binary_at_0"},
        )  # fmt: skip
        self.observation_space, self.action_space = spaces_from_spec(self.io_spec)
        self.randomizer = Randomizer(self.model, self.cfg.randomization)
        self.traj = CartesianTrajectory(FR3_MAX_TRANSLATION_VEL_M_S * dynamics_factor,
                                        FR3_MAX_TRANSLATION_ACC_M_S2 * dynamics_factor, velocity_filter,
                                        FR3_MAX_TRANSLATION_JERK_M_S3 * dynamics_factor, self.dt_s)  # fmt: skip
        self._renderer: mujoco.Renderer | None = None
        self._action_queue: deque[np.ndarray] = deque()
        self._latency = 0
        self._t = 0
        self._grip_width_goal, self._grip_force = GRIPPER_MAX_WIDTH_M, _HAND_OPEN_FORCE_N
        self.hand = HandCommands(GRIPPER_MAX_WIDTH_M)
        self.goal = np.zeros(3)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self._arm_qadr] = HOME_Q_RAD
        mujoco.mj_forward(self.model, self.data)
        self._tool_rot = self.data.site_xmat[self._tcp].reshape(3, 3).copy()  # tool down at home, kept throughout
        self._reported_tcp = self.data.site_xpos[self._tcp].copy()

    def _ids(self) -> None:
        m = self.model
        jid = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in FR3_JOINTS]
        self._arm_qadr = np.array([m.jnt_qposadr[j] for j in jid])
        self._arm_dadr = np.array([m.jnt_dofadr[j] for j in jid])
        self._arm_range = m.jnt_range[jid].copy()
        fid = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in FINGER_JOINTS]
        self._finger_qadr = np.array([m.jnt_qposadr[j] for j in fid])
        self._finger_dadr = np.array([m.jnt_dofadr[j] for j in fid])
        acts = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, j) for j in FR3_JOINTS]
        self._kp = m.actuator_gainprm[acts, 0].copy()  # the model's position gains = franky-sim's
        self._kv = -m.actuator_biasprm[acts, 2].copy()
        self._tau_max = m.jnt_actfrcrange[jid, 1].copy()
        hand = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, "hand")
        for a in [*acts, hand]:  # arm and fingers are driven like franky-sim's (torques on qfrc_applied)
            m.actuator_gainprm[a, :] = 0.0
            m.actuator_biasprm[a, :] = 0.0
        self._tcp = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, "tcp")
        self._goal_site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, "goal")
        if self.task.has_object:
            oj = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, "object")
            self._obj_qadr, self._obj_dadr = int(m.jnt_qposadr[oj]), int(m.jnt_dofadr[oj])
            self.object_half_size_m = CUBE_HALF_M
        self._jacp, self._jacr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
        self._ik_data = mujoco.MjData(m)  # scratch kinematics for the IK iterations

    # ----- kinematics and low-level control -----
    def _ik(self, target_pos: np.ndarray) -> np.ndarray:
        """franky-sim's IK: joint targets putting the tcp at target_pos, tool down, iterated from the measured joints.

        Also sets the reported tcp (franky-sim reports O_T_EE at the joint targets q_d, i.e. the commanded pose).
        """
        m, k, qa, da = self.model, self._ik_data, self._arm_qadr, self._arm_dadr
        q = self.data.qpos[qa].copy()
        quat, rot, err, jac = np.empty(4), np.empty(3), np.empty(6), np.empty((6, 7))
        chol, step = np.empty((6, 6)), np.empty(6)
        for i in range(IK_ITERATIONS + 1):
            k.qpos[qa] = q
            mujoco.mj_kinematics(m, k)
            r, p = k.site_xmat[self._tcp].reshape(3, 3), k.site_xpos[self._tcp]
            self._reported_tcp = p.copy()
            mujoco.mju_mat2Quat(quat, (r.T @ self._tool_rot).ravel())
            err[:3] = r.T @ (target_pos - p)  # tool frame, like franky-sim's LOCAL log6
            mujoco.mju_quat2Vel(rot, quat, 1.0)
            err[3:] = rot
            if i == IK_ITERATIONS or float(err @ err) < IK_TOLERANCE**2:
                break
            mujoco.mj_comPos(m, k)
            mujoco.mj_jacSite(m, k, self._jacp, self._jacr, self._tcp)
            jac[:3], jac[3:] = r.T @ self._jacp[:, da], r.T @ self._jacr[:, da]  # (6, 7) tool-frame Jacobian
            chol[:] = jac @ jac.T
            chol[np.diag_indices(6)] += IK_DAMPING
            mujoco.mju_cholFactor(chol, 0.0)
            mujoco.mju_cholSolve(step, chol, err)
            q += jac.T @ step
        return q

    def _arm_torques(self, q_d: np.ndarray) -> None:
        """franky-sim's joint PD toward q_d with gravity and Coriolis compensation, clipped to the torque limits."""
        d = self.data
        tau = self._kp * (q_d - d.qpos[self._arm_qadr]) - self._kv * d.qvel[self._arm_dadr]
        tau = tau + d.qfrc_bias[self._arm_dadr]
        d.qfrc_applied[self._arm_dadr] = np.clip(tau, -self._tau_max, self._tau_max)

    def _hand_forces(self) -> None:
        """franky-sim's hand: PD of each finger toward half the goal width, speed- and force-limited."""
        d = self.data
        q, dq = d.qpos[self._finger_qadr], d.qvel[self._finger_dadr]
        tau = _HAND_KP * (self._grip_width_goal / 2 - q) - _HAND_KV * dq
        fast = (np.abs(dq) > GRIPPER_SPEED_M_S) & (np.sign(dq) == np.sign(tau))
        tau = np.where(fast, -_HAND_KV * dq, tau)
        d.qfrc_applied[self._finger_dadr] = np.clip(tau, -self._grip_force, self._grip_force)

    # ----- gym API -----
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Home pose (franky-sim's start pose), new cube and goal (deterministic given `seed`); returns (obs, info)."""
        super().reset(seed=seed)
        m, d, rng = self.model, self.data, self.np_random
        mujoco.mj_resetData(m, d)
        self.randomizer.apply(rng)
        d.qpos[self._arm_qadr] = np.asarray(HOME_Q_RAD) + rng.uniform(-0.02, 0.02, 7)
        d.qpos[self._finger_qadr] = GRIPPER_MAX_WIDTH_M / 2
        obj_xy = None
        if self.task.has_object:
            obj_xy = rng.uniform(self.task.object_xy_low, self.task.object_xy_high)
            d.qpos[self._obj_qadr : self._obj_qadr + 3] = [*obj_xy, CUBE_HALF_M + 0.001]
            d.qpos[self._obj_qadr + 3 : self._obj_qadr + 7] = [1, 0, 0, 0]
        self.goal = self._sample_goal(rng, obj_xy)
        m.site_pos[self._goal_site] = self.goal
        mujoco.mj_forward(m, d)
        self._reported_tcp = d.site_xpos[self._tcp].copy()
        self.traj.reset(self._reported_tcp)
        self._grip_width_goal, self._grip_force = GRIPPER_MAX_WIDTH_M, _HAND_OPEN_FORCE_N
        self.hand.reset(GRIPPER_MAX_WIDTH_M)
        self._latency = self.randomizer.sample_latency(rng)
        self._action_queue = deque(np.array([0, 0, 0, 1], np.float32) for _ in range(self._latency))
        self._t = 0
        return self._obs(), {"is_success": False}

    def _sample_goal(self, rng: np.random.Generator, obj_xy: np.ndarray | None) -> np.ndarray:
        goal = rng.uniform(self.task.goal_low, self.task.goal_high)
        for _ in range(100):
            if obj_xy is None or np.linalg.norm(goal[:2] - obj_xy) >= self.task.min_goal_dist_m:
                break
            goal = rng.uniform(self.task.goal_low, self.task.goal_high)
        if self.task.has_object and rng.uniform() < 0.5:
            goal[2] = CUBE_HALF_M  # half the goals on the table, half in the air
        return goal

    def step(self, action):
        """One control period: pose target from the measured tcp, trajectory + IK each physics tick, gripper."""
        action = np.clip(np.asarray(action, dtype=np.float32).reshape(4), -1.0, 1.0)
        if not np.all(np.isfinite(action)):
            raise ValueError(f"non-finite action {action}")
        if self._latency:
            self._action_queue.append(action)
            action = self._action_queue.popleft()
        target = np.clip(self.tcp_pos + action[:3] * MAX_EE_DELTA_M, WORKSPACE_LOW_M, WORKSPACE_HIGH_M)
        cmd = self.hand.command(bool(action[3] > 0))
        if cmd is True:  # franky Gripper.move(max width) / Gripper.grasp(0, force)
            self._grip_width_goal, self._grip_force = GRIPPER_MAX_WIDTH_M, _HAND_OPEN_FORCE_N
        elif cmd is False:
            self._grip_width_goal, self._grip_force = 0.0, GRASP_FORCE_N
        m, d = self.model, self.data
        self.traj.new_motion()
        for _ in range(self.n_substeps):
            self._arm_torques(self._ik(self.traj.step(target, self.dt_s)))
            self._hand_forces()
            mujoco.mj_step(m, d)
            self.hand.tick(float(d.qpos[self._finger_qadr].sum()))
        self._t += 1
        success = self._is_success()
        reward, weighted, terms = rewards.step_reward(
            self.task.kind, self.cfg.reward, self.cfg.reward_weights, success, self.tcp_pos, self.goal,
            self._object_pos(), rest_z_m=CUBE_HALF_M,
        )
        terminated = bool(success and self.cfg.terminate_on_success)
        truncated = self._t >= self.episode_steps
        info = {"is_success": bool(success), "reward_terms": weighted, "reward_metrics": terms}
        return self._obs(), reward, terminated, truncated, info

    # ----- observations -----
    @property
    def tcp_pos(self) -> np.ndarray:
        """The tcp the robot reports (franky's O_T_EE): franky-sim's is the pose at the joint targets q_d, i.e. the
        commanded pose (an FR3 reports the measured pose, which tracks the command within a millimetre or so)."""
        return self._reported_tcp.copy()

    @property
    def tcp_measured_pos(self) -> np.ndarray:
        """The tcp of the simulated joints (lags the command by the joint PD's tracking error while moving)."""
        return self.data.site_xpos[self._tcp].copy()

    def _object_pos(self) -> np.ndarray | None:
        if not self.task.has_object:
            return None
        return self.data.qpos[self._obj_qadr : self._obj_qadr + 3].copy()

    def _is_success(self) -> bool:
        obj = self._object_pos()
        pos = self.tcp_pos if obj is None else obj
        return bool(np.linalg.norm(pos - self.goal) < self.task.success_threshold_m)

    def privileged_state(self) -> np.ndarray:
        """Cube pose and velocity (simulator only): pos 3, quat wxyz 4, linvel 3, angvel 3."""
        if not self.task.has_object:
            return np.zeros(PRIVILEGED_DIM, np.float32)
        q = self.data.qpos[self._obj_qadr : self._obj_qadr + 7]
        v = self.data.qvel[self._obj_dadr : self._obj_dadr + 6]
        return np.concatenate([q, v]).astype(np.float32)
