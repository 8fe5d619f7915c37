"""rh6 arm tasks on MuJoCo: Cartesian end-effector control through damped-least-squares IK, camera + proprio."""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from robo_hybrid.constants import TASK_IDS  # noqa: E402
from robo_hybrid.spec import TensorSpec  # noqa: E402

from . import rewards  # noqa: E402
from .common import PRIVILEGED_DIM, EnvConfig, build_io_spec, spaces_from_spec  # noqa: E402
from .randomize import Randomizer  # noqa: E402
from .scene import MujocoScene  # noqa: E402

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
ARM_JOINTS = ("joint1", "joint2", "joint3", "joint4", "joint5", "joint6")
FINGER_JOINTS = ("finger_left", "finger_right")
FINGER_OPEN_M = 0.04
# Tool frame pointing down, fingers opening along world y: R = R_y(pi).
TOOL_DOWN = np.diag([-1.0, 1.0, -1.0])
# Seed for the home-pose IK (elbow up, tool down).
HOME_SEED_RAD = np.array([0.0, 0.3, 1.9, 0.0, 0.95, 0.0])
HOME_TCP_M = np.array([-0.1, 0.0, 0.25])


@dataclass(frozen=True)
class TaskDef:
    """What distinguishes one task: scene, horizon, sampling ranges, success threshold."""

    name: str
    scene: str
    episode_steps: int
    has_object: bool
    success_threshold_m: float
    object_xy_low: tuple[float, float] = (-0.12, -0.15)
    object_xy_high: tuple[float, float] = (0.12, 0.15)
    goal_low: tuple[float, float, float] = (-0.15, -0.2, 0.05)
    goal_high: tuple[float, float, float] = (0.15, 0.2, 0.25)
    min_goal_dist_m: float = 0.0
    goal_xy_only: bool = False  # success measured on the table plane (push)
    # a second free cube ('base_cube', at a random table position) that the object is stacked on: the goal is the
    # object's centre resting on top of it, followed as it moves; success_threshold_m is then the xy tolerance
    base_object: bool = False

    @property
    def gym_id(self) -> str:
        """The gymnasium id (robo_hybrid.constants.TASK_IDS is the one task list)."""
        return TASK_IDS[self.name]


TASKS: dict[str, TaskDef] = {
    "reach": TaskDef("reach", "reach.xml", 50, False, 0.03),
    "push": TaskDef(
        "push", "push.xml", 100, True, 0.05,
        goal_low=(-0.15, -0.18, 0.025), goal_high=(0.15, 0.18, 0.025), min_goal_dist_m=0.1, goal_xy_only=True,
    ),
    "pickplace": TaskDef(
        "pickplace", "pickplace.xml", 100, True, 0.05,
        goal_low=(-0.15, -0.18, 0.02), goal_high=(0.15, 0.18, 0.2), min_goal_dist_m=0.1,
    ),
    # cube A on cube B, centred within 1.5 cm (xy), resting, released (see ArmEnv._stack_success)
    "stack": TaskDef("stack", "stack.xml", 100, True, 0.015, min_goal_dist_m=0.1, base_object=True),
}

# Workspace box of the tool centre point (world frame, metres): the IK target is clipped into it.
WORKSPACE_LOW_M = (-0.25, -0.3, 0.012)
WORKSPACE_HIGH_M = (0.25, 0.3, 0.4)
MAX_EE_DELTA_M = 0.02  # per control step at |action| = 1 (0.5 m/s at 25 Hz)
IK_DAMPING = 0.05
IK_ROT_WEIGHT = 0.5
# stack success, besides the xy tolerance: the object's centre within this of its height resting on the base cube,
# slower than this (resting, not falling through), and the fingers opened this much wider than the cube (released)
STACK_Z_TOL_M = 0.005
STACK_REST_SPEED_M_S = 0.05
STACK_RELEASE_MARGIN_M = 0.006


def rotation_error(r_current: np.ndarray, r_target: np.ndarray) -> np.ndarray:
    """Axis-angle vector (world frame) that rotates r_current onto r_target."""
    r_err = r_target @ r_current.T
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, r_err.ravel())
    vel = np.empty(3)
    mujoco.mju_quat2Vel(vel, quat, 1.0)
    return vel


class ArmEnv(MujocoScene, gym.Env):
    """One rh6 task. Observation: image(s), proprio, goal (policy) and privileged (critic only)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(self, task: str = "push", cfg: EnvConfig | None = None, render_mode: str | None = None, **cfg_kw):
        if task not in TASKS:
            raise ValueError(f"unknown task '{task}'; choose one of {sorted(TASKS)}")
        self.task = TASKS[task]
        self.cfg = cfg if cfg is not None else EnvConfig(**cfg_kw)
        if self.cfg.camera not in ("front", "wrist"):
            raise ValueError(f"camera={self.cfg.camera!r}: the rh6 scene has cameras 'front' and 'wrist'")
        self.render_mode = render_mode
        self.model = mujoco.MjModel.from_xml_path(str(ASSETS_DIR / self.task.scene))
        self.data = mujoco.MjData(self.model)
        self.n_substeps = max(1, round(1.0 / (self.cfg.control_rate_hz * self.model.opt.timestep)))
        self.episode_steps = self.cfg.episode_steps or self.task.episode_steps
        self._ids()
        self.io_spec = build_io_spec(
            self.task.gym_id, self.cfg, ARM_JOINTS, MAX_EE_DELTA_M, WORKSPACE_LOW_M, WORKSPACE_HIGH_M,
            self.episode_steps, extras={"robot": "rh6", "physics_dt_s": float(self.model.opt.timestep),
                                        "n_substeps": self.n_substeps,
                                        # gripper command +1 -> this opening, -1 -> closed (position target)
                                        "gripper_open_m": 2 * FINGER_OPEN_M},
        )
        if self.task.base_object:  # two cubes: the privileged vector is the object's 13 values, then the base's
            priv = TensorSpec("privileged", (2 * PRIVILEGED_DIM,), "float32", "mixed_si",
                              description="object pose and twist, then the base cube's (pos 3, quat 4, linvel 3, "
                                          "angvel 3 each)")  # fmt: skip
            self.io_spec = replace(self.io_spec, privileged=(priv,))
        self.observation_space, self.action_space = spaces_from_spec(self.io_spec)
        self.randomizer = Randomizer(self.model, self.cfg.randomization)
        self._home_qpos = self._solve_home()
        self._renderer: mujoco.Renderer | None = None
        self._action_queue: deque[np.ndarray] = deque()
        self._latency = 0
        self._t = 0
        self.goal = np.zeros(3)

    # ----- model bookkeeping -----
    def _ids(self) -> None:
        m = self.model
        jid = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in ARM_JOINTS]
        self._arm_qadr = np.array([m.jnt_qposadr[j] for j in jid])
        self._arm_dadr = np.array([m.jnt_dofadr[j] for j in jid])
        self._arm_range = m.jnt_range[jid].copy()
        fid = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in FINGER_JOINTS]
        self._finger_qadr = np.array([m.jnt_qposadr[j] for j in fid])
        self._tcp = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, "tcp")
        self._goal_site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, "goal")
        if self.task.has_object:
            oj = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, "object")
            self._obj_qadr = int(m.jnt_qposadr[oj])
            self._obj_dadr = int(m.jnt_dofadr[oj])
            self._obj_geom = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "object")
            self.object_half_size_m = float(m.geom_size[self._obj_geom][2])
        if self.task.base_object:
            bj = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, "base_cube")
            self._base_qadr, self._base_dadr = int(m.jnt_qposadr[bj]), int(m.jnt_dofadr[bj])
            bg = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "base_cube")
            self.base_half_size_m = float(m.geom_size[bg][2])
            m.site_rgba[self._goal_site, 3] = 0.0  # the base cube itself shows the goal; no marker inside the stack
        self._jacp = np.zeros((3, m.nv))
        self._jacr = np.zeros((3, m.nv))

    def _solve_home(self) -> np.ndarray:
        """Joint angles that put the tool above the table, pointing down (IK from a fixed seed)."""
        d = self.data
        mujoco.mj_resetData(self.model, d)
        d.qpos[self._arm_qadr] = HOME_SEED_RAD
        for _ in range(200):
            mujoco.mj_kinematics(self.model, d)
            mujoco.mj_comPos(self.model, d)
            d.qpos[self._arm_qadr] = self._ik_step(HOME_TCP_M)
        return d.qpos[self._arm_qadr].copy()

    # ----- kinematics -----
    def _ik_step(self, target_pos: np.ndarray) -> np.ndarray:
        """One damped-least-squares step: joint angles that move the tcp to target_pos, tool down."""
        m, d = self.model, self.data
        mujoco.mj_jacSite(m, d, self._jacp, self._jacr, self._tcp)
        jac = np.vstack([self._jacp[:, self._arm_dadr], self._jacr[:, self._arm_dadr]])  # (6, 6)
        err_pos = target_pos - d.site_xpos[self._tcp]
        err_rot = rotation_error(d.site_xmat[self._tcp].reshape(3, 3), TOOL_DOWN)
        err = np.concatenate([err_pos, IK_ROT_WEIGHT * err_rot])
        jac[3:] *= IK_ROT_WEIGHT
        # dq = J^T (J J^T + lambda^2 I)^-1 e  (damped least squares, robust near singularities)
        dq = jac.T @ np.linalg.solve(jac @ jac.T + IK_DAMPING**2 * np.eye(6), err)
        q = d.qpos[self._arm_qadr] + dq
        return np.clip(q, self._arm_range[:, 0], self._arm_range[:, 1])

    # ----- gym API -----
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Home pose, new object and goal (deterministic given `seed`), randomization; returns (obs, info)."""
        super().reset(seed=seed)
        m, d, rng = self.model, self.data, self.np_random
        mujoco.mj_resetData(m, d)
        self.randomizer.apply(rng)
        d.qpos[self._arm_qadr] = self._home_qpos + rng.uniform(-0.02, 0.02, len(ARM_JOINTS))
        d.qpos[self._finger_qadr] = FINGER_OPEN_M
        d.ctrl[: len(ARM_JOINTS)] = d.qpos[self._arm_qadr]
        d.ctrl[len(ARM_JOINTS) :] = FINGER_OPEN_M
        obj_xy = None
        if self.task.has_object:
            obj_xy = rng.uniform(self.task.object_xy_low, self.task.object_xy_high)
            d.qpos[self._obj_qadr : self._obj_qadr + 3] = [*obj_xy, self.object_half_size_m + 0.001]
            d.qpos[self._obj_qadr + 3 : self._obj_qadr + 7] = [1, 0, 0, 0]
        if self.task.base_object:
            self._place_base(rng, obj_xy)
            self.goal = self._base_goal()
        else:
            self.goal = self._sample_goal(rng, obj_xy)
        m.site_pos[self._goal_site] = self.goal
        mujoco.mj_forward(m, d)
        self._latency = self.randomizer.sample_latency(rng)
        self._action_queue = deque(np.zeros(4, np.float32) for _ in range(self._latency))
        self._t = 0
        return self._obs(), {"is_success": False}

    def _sample_goal(self, rng: np.random.Generator, obj_xy: np.ndarray | None) -> np.ndarray:
        for _ in range(100):
            goal = rng.uniform(self.task.goal_low, self.task.goal_high)
            if obj_xy is None or np.linalg.norm(goal[:2] - obj_xy) >= self.task.min_goal_dist_m:
                break
        if self.task.name == "pickplace" and rng.uniform() < 0.5:
            goal[2] = self.object_half_size_m  # half the goals on the table, half in the air
        return goal

    def _place_base(self, rng: np.random.Generator, obj_xy: np.ndarray | None) -> None:
        """Base cube flat on the table, random yaw, at least min_goal_dist_m (xy) from the object."""
        for _ in range(100):
            xy = rng.uniform(self.task.object_xy_low, self.task.object_xy_high)
            if obj_xy is None or np.linalg.norm(xy - obj_xy) >= self.task.min_goal_dist_m:
                break
        yaw = rng.uniform(-np.pi / 4, np.pi / 4)
        q = self.data.qpos
        q[self._base_qadr : self._base_qadr + 3] = [*xy, self.base_half_size_m + 0.001]
        q[self._base_qadr + 3 : self._base_qadr + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]

    def _base_pos(self) -> np.ndarray:
        return self.data.qpos[self._base_qadr : self._base_qadr + 3].copy()

    def _base_goal(self) -> np.ndarray:
        """Where the object's centre rests when stacked centred on the base cube (the stack task's goal)."""
        return self._base_pos() + [0.0, 0.0, self.base_half_size_m + self.object_half_size_m]

    @property
    def object_released(self) -> bool:
        """The fingers are open wider than the object by STACK_RELEASE_MARGIN_M (stack success needs it)."""
        return self.gripper_opening_m >= 2 * self.object_half_size_m + STACK_RELEASE_MARGIN_M

    def _stack_success(self) -> bool:
        """Object centred on the base cube (xy within success_threshold_m), at rest on it, and released."""
        obj = self.data.qpos[self._obj_qadr : self._obj_qadr + 3]
        speed = float(np.linalg.norm(self.data.qvel[self._obj_dadr : self._obj_dadr + 3]))
        diff = obj - self.goal
        return bool(np.linalg.norm(diff[:2]) <= self.task.success_threshold_m and abs(diff[2]) <= STACK_Z_TOL_M
                    and speed <= STACK_REST_SPEED_M_S and self.object_released)  # fmt: skip

    def step(self, action):
        """One control step: Cartesian delta through IK, gripper target, physics substeps, reward terms."""
        action = np.clip(np.asarray(action, dtype=np.float32).reshape(4), -1.0, 1.0)
        if not np.all(np.isfinite(action)):
            raise ValueError(f"non-finite action {action}")
        if self._latency:
            self._action_queue.append(action)
            action = self._action_queue.popleft()
        m, d = self.model, self.data
        target = np.clip(self.tcp_pos + action[:3] * MAX_EE_DELTA_M, WORKSPACE_LOW_M, WORKSPACE_HIGH_M)
        d.ctrl[: len(ARM_JOINTS)] = self._ik_step(target)
        d.ctrl[len(ARM_JOINTS) :] = FINGER_OPEN_M * 0.5 * (float(action[3]) + 1.0)
        mujoco.mj_step(m, d, nstep=self.n_substeps)
        self._t += 1
        if self.task.base_object:  # the goal follows the base cube if it was pushed
            self.goal = self._base_goal()
            m.site_pos[self._goal_site] = self.goal
        success = self._is_success()
        reward, weighted, terms = rewards.step_reward(
            self.task.name, self.cfg.reward, self.cfg.reward_weights, success, self.tcp_pos, self.goal,
            self._object_pos(), rest_z_m=getattr(self, "object_half_size_m", 0.0),
        )
        terminated = bool(success and self.cfg.terminate_on_success)
        truncated = self._t >= self.episode_steps
        info = {"is_success": bool(success), "reward_terms": weighted, "reward_metrics": terms}
        return self._obs(), reward, terminated, truncated, info

    # ----- observations -----
    def _object_pos(self) -> np.ndarray | None:
        if not self.task.has_object:
            return None
        return self.data.qpos[self._obj_qadr : self._obj_qadr + 3].copy()

    def _is_success(self) -> bool:
        if not self.task.has_object:
            return bool(np.linalg.norm(self.tcp_pos - self.goal) < self.task.success_threshold_m)
        if self.task.base_object:
            return self._stack_success()
        obj = self._object_pos()
        assert obj is not None
        diff = (obj - self.goal)[:2] if self.task.goal_xy_only else obj - self.goal
        return bool(np.linalg.norm(diff) < self.task.success_threshold_m)

    def privileged_state(self) -> np.ndarray:
        """Object pose and velocity (simulator only): pos 3, quat wxyz 4, linvel 3, angvel 3; stack: then the base
        cube's, the same 13."""
        if not self.task.has_object:
            return np.zeros(PRIVILEGED_DIM, np.float32)
        q = self.data.qpos[self._obj_qadr : self._obj_qadr + 7]
        v = self.data.qvel[self._obj_dadr : self._obj_dadr + 6]
        if self.task.base_object:  # then the base cube's pose and twist, the same layout
            qb = self.data.qpos[self._base_qadr : self._base_qadr + 7]
            vb = self.data.qvel[self._base_dadr : self._base_dadr + 6]
            return np.concatenate([q, v, qb, vb]).astype(np.float32)
        return np.concatenate([q, v]).astype(np.float32)
