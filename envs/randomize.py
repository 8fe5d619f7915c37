"""Domain randomization of the rh6 scenes: lighting, colours, camera pose, object mass and friction, latency."""

from __future__ import annotations

import mujoco
import numpy as np

from .common import RandomizationConfig


class Randomizer:
    """Re-samples scene parameters at each reset from the model's nominal values (off unless enabled)."""

    def __init__(self, model: mujoco.MjModel, cfg: RandomizationConfig):
        self.model, self.cfg = model, cfg
        self._nominal = {
            "light_dir": model.light_dir.copy(),
            "light_diffuse": model.light_diffuse.copy(),
            "headlight_ambient": model.vis.headlight.ambient.copy(),
            "geom_rgba": model.geom_rgba.copy(),
            "mat_rgba": model.mat_rgba.copy(),
            "cam_pos": model.cam_pos.copy(),
            "cam_quat": model.cam_quat.copy(),
            "body_mass": model.body_mass.copy(),
            "geom_friction": model.geom_friction.copy(),
        }
        obj = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "object")
        self._obj_body = obj if obj >= 0 else None
        self._obj_geom = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "object")
        self._materials = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_MATERIAL, n) for n in ("table", "object")]

    def apply(self, rng: np.random.Generator) -> None:
        """Restore nominal values, then randomize what the config enables."""
        m, nom, cfg = self.model, self._nominal, self.cfg
        m.light_dir[:] = nom["light_dir"]
        m.light_diffuse[:] = nom["light_diffuse"]
        m.vis.headlight.ambient[:] = nom["headlight_ambient"]
        m.mat_rgba[:] = nom["mat_rgba"]
        m.cam_pos[:] = nom["cam_pos"]
        m.cam_quat[:] = nom["cam_quat"]
        m.body_mass[:] = nom["body_mass"]
        m.geom_friction[:] = nom["geom_friction"]
        if not cfg.enabled:
            return
        if cfg.lighting:
            d = nom["light_dir"] + rng.uniform(-0.3, 0.3, nom["light_dir"].shape)
            m.light_dir[:] = d / np.linalg.norm(d, axis=-1, keepdims=True)
            m.light_diffuse[:] = nom["light_diffuse"] * rng.uniform(0.6, 1.4)
            m.vis.headlight.ambient[:] = np.clip(nom["headlight_ambient"] * rng.uniform(0.6, 1.4), 0, 1)
        if cfg.colors:
            for mat in self._materials:
                if mat >= 0:
                    m.mat_rgba[mat, :3] = np.clip(nom["mat_rgba"][mat, :3] + rng.uniform(-0.15, 0.15, 3), 0, 1)
        if m.ncam:
            m.cam_pos[:] = nom["cam_pos"] + rng.uniform(-1, 1, nom["cam_pos"].shape) * cfg.camera_pos_jitter_m
            for i in range(m.ncam):
                dq = np.empty(4)
                mujoco.mju_axisAngle2Quat(dq, rng.normal(size=3) + 1e-9, rng.uniform(0, cfg.camera_rot_jitter_rad))
                q = np.empty(4)
                mujoco.mju_mulQuat(q, dq, nom["cam_quat"][i])
                m.cam_quat[i] = q
        if self._obj_body is not None:
            m.body_mass[self._obj_body] = nom["body_mass"][self._obj_body] * rng.uniform(*cfg.object_mass_range)
            m.geom_friction[self._obj_geom, 0] = nom["geom_friction"][self._obj_geom, 0] * rng.uniform(
                *cfg.friction_range
            )

    def sample_latency(self, rng: np.random.Generator) -> int:
        """Action latency in control steps for the next episode."""
        if not self.cfg.enabled:
            return 0
        lo, hi = self.cfg.action_latency_steps
        return int(rng.integers(lo, hi + 1))
