"""What the MuJoCo task envs share: the observation dict, camera rendering, the flat state and closing.

A task class lists this first among its bases (before gymnasium.Env) and provides what is annotated below:
`model` / `data`, its EnvConfig `cfg`, the `goal`, its arm joints' qpos / qvel addresses, the tool-centre site id
`_tcp`, the finger joints' qpos addresses and `privileged_state()`; its constructor sets `self._renderer = None`.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

from robo_hybrid.spec import assemble_proprio

from .common import EnvConfig, image_keys


class MujocoScene:
    """Observation assembly and off-screen rendering on top of a task's MuJoCo model and data."""

    model: Any
    data: Any
    cfg: EnvConfig
    goal: np.ndarray
    _arm_qadr: np.ndarray
    _arm_dadr: np.ndarray
    _tcp: int
    _finger_qadr: np.ndarray
    _renderer: Any

    @property
    def tcp_pos(self) -> np.ndarray:
        """Tool centre point (between the fingertips; franky's end-effector frame on the FR3), world frame, metres."""
        return self.data.site_xpos[self._tcp].copy()

    @property
    def gripper_opening_m(self) -> float:
        """Distance between the finger inner faces (franky's Gripper.width on the FR3), metres."""
        return float(self.data.qpos[self._finger_qadr].sum())

    def privileged_state(self) -> np.ndarray:
        """Object state for the critic and the reward model (the task class defines it)."""
        raise NotImplementedError

    def get_state(self) -> np.ndarray:
        """Flat simulator state (time, qpos, qvel) for the demo files' `states`."""
        return np.concatenate([[self.data.time], self.data.qpos, self.data.qvel]).astype(np.float64)

    def _obs(self) -> dict[str, np.ndarray]:
        d = self.data
        obs = {
            "proprio": assemble_proprio(d.qpos[self._arm_qadr], d.qvel[self._arm_dadr], self.tcp_pos,
                                        self.gripper_opening_m),  # fmt: skip
            "goal": self.goal.astype(np.float32),
            "privileged": self.privileged_state(),
        }
        cams = {"image": self.cfg.camera, "image_wrist": "wrist"}
        for key in image_keys(self.cfg):
            obs[key] = self._camera_image(cams[key])
        return obs

    def _camera_image(self, camera: str) -> np.ndarray:
        n = self.cfg.image_size
        if not self.cfg.render:
            return np.zeros((n, n, 3), np.uint8)
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, n, n)
        self._renderer.update_scene(self.data, camera=camera)
        return self._renderer.render().copy()

    def render(self):
        """The policy camera image (rgb_array)."""
        return self._camera_image(self.cfg.camera)

    def close(self) -> None:
        """Free the renderer (its GL context)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
