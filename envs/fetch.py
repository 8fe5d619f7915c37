"""Fetch adapters: gymnasium-robotics FetchReach / FetchPush / FetchPickAndPlace (v4) behind the robo-hybrid contract.

The wrapped env keeps its own physics, goal sampling and action handling (mocap xyz delta of 0.05 m per unit,
gripper +1 open / -1 close); this adapter only re-packs observations into the shared I/O spec
(`image`, `proprio`, `goal`, `privileged`), applies our reward and episode conventions, and owns the renderer.
"""

from __future__ import annotations

import os

# Headless rendering must be chosen before mujoco is first imported (EGL: Mesa on CPU, NVIDIA on GPU).
os.environ.setdefault("MUJOCO_GL", "egl")

import dataclasses  # noqa: E402
from types import MappingProxyType  # noqa: E402
from typing import Any  # noqa: E402

import gymnasium as gym  # noqa: E402
import gymnasium_robotics  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from robo_hybrid.constants import TASK_IDS  # noqa: E402
from robo_hybrid.spec import assemble_proprio  # noqa: E402

from . import rewards  # noqa: E402
from .common import PRIVILEGED_DIM, EnvConfig, build_io_spec, spaces_from_spec  # noqa: E402

gym.register_envs(gymnasium_robotics)  # makes the Fetch*-v4 ids known to gym.make (idempotent)


@dataclasses.dataclass(frozen=True)
class FetchTask:
    """One wrapped Fetch task."""

    name: str
    """Our short task name (a key of robo_hybrid.constants.TASK_IDS)."""
    fetch_id: str
    """gymnasium-robotics id that is wrapped."""
    has_object: bool
    """Whether the scene has the block `object0` (privileged state is zeros otherwise)."""
    reward_kind: str
    """Which reward terms of envs/rewards.py apply: 'reach', 'push' or 'pickplace' (the rh6 tasks' terms)."""

    @property
    def task_id(self) -> str:
        """Our id (gymnasium registry id and I/O spec task_id), from robo_hybrid.constants.TASK_IDS."""
        return TASK_IDS[self.name]


FETCH_TASKS: MappingProxyType[str, FetchTask] = MappingProxyType(
    {
        "fetch_reach": FetchTask("fetch_reach", "FetchReach-v4", has_object=False, reward_kind="reach"),
        "fetch_push": FetchTask("fetch_push", "FetchPush-v4", has_object=True, reward_kind="push"),
        "fetch_pickplace": FetchTask("fetch_pickplace", "FetchPickAndPlace-v4", has_object=True,
                                     reward_kind="pickplace"),
    }
)

FETCH_JOINT_NAMES = (
    "robot0:shoulder_pan_joint",
    "robot0:shoulder_lift_joint",
    "robot0:upperarm_roll_joint",
    "robot0:elbow_flex_joint",
    "robot0:forearm_roll_joint",
    "robot0:wrist_flex_joint",
    "robot0:wrist_roll_joint",
)
FETCH_FINGER_JOINTS = ("robot0:l_gripper_finger_joint", "robot0:r_gripper_finger_joint")
FETCH_GRIP_SITE = "robot0:grip"
FETCH_OBJECT_JOINT = "object0:joint"

FETCH_MAX_EE_DELTA_M = 0.05  # Fetch's _set_action scales the xyz action by 0.05 m per control step
FETCH_SIM_DT_S = 0.002  # timestep in the Fetch XML
FETCH_N_SUBSTEPS = 20
FETCH_CONTROL_RATE_HZ = 1.0 / (FETCH_SIM_DT_S * FETCH_N_SUBSTEPS)  # 25 Hz
FETCH_EPISODE_STEPS = 50  # gymnasium-robotics' registered max_episode_steps
FETCH_SUCCESS_THRESHOLD_M = 0.05  # distance_threshold of all three tasks
# Table top is the box 1.3 +- 0.25, 0.75 +- 0.35 at z 0.4. Goals: Reach within initial grip (1.34, 0.75, 0.53)
# +- 0.15 (z down to 0.385), Push on the table, PickAndPlace up to 0.45 m above it (z <= 0.875).
FETCH_WORKSPACE_LOW_M = (1.05, 0.40, 0.38)
FETCH_WORKSPACE_HIGH_M = (1.55, 1.10, 0.90)
# The render camera: a free camera looking down at the table from the far side (distance m, azimuth / elevation
# deg). gymnasium-robotics' default sits 2.5 m away, where the 5 cm block is ~3 pixels at 84 x 84; this one puts
# the block at ~8 pixels, enough to learn from.
FETCH_CAMERA = {"distance_m": 1.05, "azimuth_deg": 180.0, "elevation_deg": -50.0, "lookat_m": (1.3, 0.75, 0.42)}


def fetch_task_names() -> tuple[str, ...]:
    """Task names accepted by FetchAdapter / make_fetch."""
    return tuple(FETCH_TASKS)


def _check_cfg(cfg: EnvConfig) -> None:
    """Reject config options that Fetch cannot honour, each with what to change."""
    if not np.isclose(cfg.control_rate_hz, FETCH_CONTROL_RATE_HZ):
        raise ValueError(
            f"control_rate_hz={cfg.control_rate_hz}: Fetch steps at {FETCH_CONTROL_RATE_HZ:g} Hz "
            f"(n_substeps {FETCH_N_SUBSTEPS} x {FETCH_SIM_DT_S} s); set control_rate_hz=25 for Fetch tasks"
        )
    if cfg.camera not in ("front", "external"):
        raise ValueError(f"camera={cfg.camera!r}: Fetch has only its external camera; use 'external' (or 'front')")
    if cfg.wrist_camera:
        raise ValueError("wrist_camera=True: Fetch has no wrist camera; set wrist_camera=False for Fetch tasks")
    if cfg.randomization.enabled:
        raise ValueError(
            "randomization.enabled=True: domain randomization is not supported on Fetch; "
            "disable it for Fetch tasks (it is implemented for the own-arm tasks only)"
        )


def _joint_id(model: mujoco.MjModel, name: str, joint_type: mujoco.mjtJoint) -> int:
    """Id of joint `name`, checking its type (compared by value: see DESIGN.md)."""
    jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
    if jid < 0:
        raise KeyError(f"joint '{name}' is not in the Fetch model")
    if int(model.jnt_type[jid]) != int(joint_type):
        raise TypeError(f"joint '{name}' has type {int(model.jnt_type[jid])}, expected {int(joint_type)}")
    return jid


class FetchAdapter(gym.Env):
    """A gymnasium-robotics Fetch task with the robo-hybrid observation, action, reward and spec conventions."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": int(FETCH_CONTROL_RATE_HZ)}

    def __init__(self, task: str, cfg: EnvConfig | None = None, render_mode: str | None = None):
        if task not in FETCH_TASKS:
            raise ValueError(f"unknown Fetch task {task!r}; choose one of {fetch_task_names()}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}: FetchAdapter supports None or 'rgb_array'")
        self.cfg: EnvConfig = cfg if cfg is not None else EnvConfig(camera="external")
        _check_cfg(self.cfg)
        cfg = self.cfg
        self.task = self.task_name = task  # task_name: what envs.experts.make_expert looks up
        self.task_spec = FETCH_TASKS[task]
        self.render_mode = render_mode
        self.episode_steps = cfg.episode_steps or FETCH_EPISODE_STEPS

        # The Fetch renderer only makes a GL context on its first render() call, so render_mode=None creates none.
        self._renders = cfg.render or render_mode == "rgb_array"
        n = cfg.image_size
        # typed Any: the Fetch class is built by a factory and its attributes (model, data, goal) are not declared
        self._fetch: Any = gym.make(
            self.task_spec.fetch_id,
            render_mode="rgb_array" if self._renders else None,
            width=n,
            height=n,
            reward_type="sparse",
            disable_env_checker=True,
            default_camera_config={
                "distance": FETCH_CAMERA["distance_m"],
                "azimuth": FETCH_CAMERA["azimuth_deg"],
                "elevation": FETCH_CAMERA["elevation_deg"],
                "lookat": np.array(FETCH_CAMERA["lookat_m"]),
            },
        ).unwrapped
        assert np.isclose(self._fetch.dt, 1.0 / FETCH_CONTROL_RATE_HZ), self._fetch.dt

        model = self.model
        hinge, slide, free = mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE, mujoco.mjtJoint.mjJNT_FREE
        arm_ids = [_joint_id(model, j, hinge) for j in FETCH_JOINT_NAMES]
        self._arm_qpos_adr = np.array([model.jnt_qposadr[j] for j in arm_ids])
        self._arm_qvel_adr = np.array([model.jnt_dofadr[j] for j in arm_ids])
        self._finger_qpos_adr = np.array([model.jnt_qposadr[_joint_id(model, j, slide)] for j in FETCH_FINGER_JOINTS])
        self._grip_site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, FETCH_GRIP_SITE)
        if self.task_spec.has_object:
            obj = _joint_id(model, FETCH_OBJECT_JOINT, free)
            self._obj_qpos_adr, self._obj_qvel_adr = int(model.jnt_qposadr[obj]), int(model.jnt_dofadr[obj])

        spec_cfg = dataclasses.replace(cfg, camera="external")  # 'front' and 'external' are the same camera here
        self.io_spec = build_io_spec(
            self.task_spec.task_id,
            spec_cfg,
            FETCH_JOINT_NAMES,
            max_ee_delta_m=FETCH_MAX_EE_DELTA_M,
            workspace_low_m=FETCH_WORKSPACE_LOW_M,
            workspace_high_m=FETCH_WORKSPACE_HIGH_M,
            episode_steps=self.episode_steps,
            extras={
                "robot": "fetch",
                "fetch_env_id": self.task_spec.fetch_id,
                "camera": dict(FETCH_CAMERA),
                "sim_dt_s": FETCH_SIM_DT_S,
                "n_substeps": FETCH_N_SUBSTEPS,
                "success_threshold_m": FETCH_SUCCESS_THRESHOLD_M,
                "has_object": self.task_spec.has_object,
                "reward": cfg.reward,
            },
        )
        self.observation_space, self.action_space = spaces_from_spec(self.io_spec)
        self._elapsed_steps = 0
        self._closed = False

    # ----- simulator access (for tests, experts and demo recording) -----
    @property
    def model(self) -> mujoco.MjModel:
        """The wrapped env's MjModel."""
        return self._fetch.model

    @property
    def data(self) -> mujoco.MjData:
        """The wrapped env's MjData."""
        return self._fetch.data

    @property
    def fetch_env(self) -> Any:
        """The wrapped (unwrapped) gymnasium-robotics env."""
        return self._fetch

    def get_state(self) -> np.ndarray:
        """Flat float64 simulator state (qpos, qvel) for the demo files' `states` dataset."""
        return np.concatenate([self.data.qpos, self.data.qvel]).astype(np.float64)

    def set_state(self, state: np.ndarray) -> None:
        """Restore a state from get_state (the goal is not part of it)."""
        state = np.asarray(state, dtype=np.float64)
        nq, nv = self.model.nq, self.model.nv
        if state.shape != (nq + nv,):
            raise ValueError(f"state has shape {state.shape}, expected ({nq + nv},) = qpos ({nq}) + qvel ({nv})")
        self.data.qpos[:] = state[:nq]
        self.data.qvel[:] = state[nq:]
        mujoco.mj_forward(self.model, self.data)

    def grip_pos_m(self) -> np.ndarray:
        """World position of the gripper site (between the fingertips)."""
        return self.data.site_xpos[self._grip_site].copy()

    def object_pos_m(self) -> np.ndarray:
        """World position of the object (privileged; zeros on Reach)."""
        if not self.task_spec.has_object:
            return np.zeros(3)
        return self.data.qpos[self._obj_qpos_adr : self._obj_qpos_adr + 3].copy()

    # ----- observations -----
    def _privileged(self) -> np.ndarray:
        """Object pos (3), quat wxyz (4), linear vel (3), angular vel (3); zeros without an object."""
        out = np.zeros(PRIVILEGED_DIM, dtype=np.float32)
        if self.task_spec.has_object:
            q, v = self._obj_qpos_adr, self._obj_qvel_adr
            out[:7] = self.data.qpos[q : q + 7]  # free joint qpos: position, then quaternion w x y z
            out[7:] = self.data.qvel[v : v + 6]  # free joint qvel: linear (world), then angular velocity
        return out

    def _image(self) -> np.ndarray:
        """Camera image, or zeros when rendering is off (no GL context is made then)."""
        n = self.cfg.image_size
        if not self.cfg.render:
            return np.zeros((n, n, 3), dtype=np.uint8)
        return self._render_frame()

    def _render_frame(self) -> np.ndarray:
        """One frame from the Fetch external camera (copied: the renderer reuses its buffer)."""
        return np.ascontiguousarray(self._fetch.render(), dtype=np.uint8)

    def get_obs(self) -> dict[str, np.ndarray]:
        """Observation dict of the current simulator state, without stepping."""
        data = self.data
        proprio = assemble_proprio(
            joint_pos_rad=data.qpos[self._arm_qpos_adr],
            joint_vel_rad_s=data.qvel[self._arm_qvel_adr],
            ee_pos_m=data.site_xpos[self._grip_site],
            gripper_opening_m=float(data.qpos[self._finger_qpos_adr].sum()),
        )
        return {
            "image": self._image(),
            "proprio": proprio,
            "goal": np.asarray(self._fetch.goal, dtype=np.float32).copy(),
            "privileged": self._privileged(),
        }

    # ----- gym API -----
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Reset the wrapped env (deterministic given `seed`) and return (obs, info)."""
        super().reset(seed=seed)
        fetch_obs, _ = self._fetch.reset(seed=seed)
        self._elapsed_steps = 0
        success = bool(self._fetch._is_success(fetch_obs["achieved_goal"], self._fetch.goal))
        return self.get_obs(), {"is_success": success}

    def step(self, action: np.ndarray):
        """Apply a 4-D action (xyz delta in units of 0.05 m, gripper +1 open / -1 close) for one 25 Hz step."""
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (4,):
            raise ValueError(f"action must have shape (4,) = {self.io_spec.action_meaning}, got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action has non-finite values: {action}")
        _, _, _, _, fetch_info = self._fetch.step(np.clip(action, -1.0, 1.0))
        self._elapsed_steps += 1
        success = bool(fetch_info["is_success"])
        # the same terms and weights as the rh6 tasks (envs/rewards.py); the object rests at Fetch's height_offset
        has_object = self.task_spec.has_object
        reward, weighted, terms = rewards.step_reward(
            self.task_spec.reward_kind, self.cfg.reward, self.cfg.reward_weights, success, self.grip_pos_m(),
            np.asarray(self._fetch.goal), self.object_pos_m() if has_object else None,
            rest_z_m=float(self._fetch.height_offset) if has_object else 0.0,
        )
        terminated = success and self.cfg.terminate_on_success
        truncated = self._elapsed_steps >= self.episode_steps
        info = {"is_success": success, "reward_terms": weighted, "reward_metrics": terms}
        return self.get_obs(), reward, terminated, truncated, info

    def render(self):
        """The external camera frame at image_size (render_mode 'rgb_array'), else None."""
        if self.render_mode != "rgb_array":
            return None
        return self._render_frame()

    def close(self):
        """Close the wrapped env and its renderer (frees the GL context)."""
        if not self._closed:
            self._fetch.close()
            self._closed = True
        super().close()


def make_fetch(task: str, cfg: EnvConfig | None = None, render_mode: str | None = None) -> FetchAdapter:
    """Factory for a Fetch task by name (see fetch_task_names())."""
    return FetchAdapter(task, cfg=cfg, render_mode=render_mode)

