"""A simulated camera for tests and sim-to-sim runs: renders the scene of a franky-sim simulator embedded in this
process (`MujocoSimulator.model` / `.data`) at a fixed rate and delivers frames like a real camera driver.

The simulator thread never waits on rendering: a post-step callback copies qpos into a snapshot only when the
camera asks for one (a flag check per 1 ms tick otherwise), and the camera thread renders the snapshot with its
own MjData and GL context.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from .base import CameraError, ThreadedCamera


def kinematics_for_rendering(model, data) -> None:
    """Body, site, camera and light poses of data.qpos: mj_kinematics alone leaves the cameras where they were (their
    poses come from mj_camlight, which needs the centres of mass of mj_comPos), so a frame would show a stale view."""
    import mujoco

    mujoco.mj_kinematics(model, data)
    mujoco.mj_comPos(model, data)
    mujoco.mj_camlight(model, data)


class SimSceneCamera(ThreadedCamera):
    """Renders camera `camera` of an embedded (started) franky-sim MujocoSimulator at `rate_hz`."""

    def __init__(self, sim, camera: str, size: int = 84, rate_hz: float = 25.0) -> None:
        super().__init__(size, f"sim:{camera}")
        self.sim, self.camera, self.rate_hz = sim, camera, float(rate_hz)
        self._want = threading.Event()
        self._have = threading.Event()
        self._qpos: np.ndarray | None = None
        self._snap_stamp = 0.0
        self.render_s: list[float] = []  # time per render, for the starvation measurement
        self._registered = False
        self._renderer = None

    def _on_step(self, sim) -> None:  # simulator thread, every 1 ms tick
        if self._want.is_set():
            self._qpos = np.array(sim.data.qpos)
            self._snap_stamp = time.monotonic()
            self._want.clear()
            self._have.set()

    def _open(self) -> None:
        os.environ.setdefault("MUJOCO_GL", "egl")
        import mujoco

        if self.sim.model is None:
            raise CameraError("the simulator is not started (sim.model is None)")
        self._data = mujoco.MjData(self.sim.model)
        self._renderer = mujoco.Renderer(self.sim.model, self.size, self.size)
        if not self._registered:
            self.sim.register_post_step_callback(self._on_step)
            self._registered = True
        self._next_t = time.monotonic()

    def _grab(self) -> tuple[np.ndarray, float] | None:
        self._next_t += 1.0 / self.rate_hz
        time.sleep(max(0.0, self._next_t - time.monotonic()))
        self._have.clear()
        self._want.set()
        if not self._have.wait(1.0):
            raise CameraError("the simulator stopped stepping (no snapshot within 1 s)")
        t0 = time.monotonic()
        self._data.qpos[:] = self._qpos
        kinematics_for_rendering(self.sim.model, self._data)
        renderer = self._renderer
        assert renderer is not None  # made by _open in this thread
        renderer.update_scene(self._data, camera=self.camera)
        frame = renderer.render()
        self.render_s.append(time.monotonic() - t0)
        return frame, self._snap_stamp

    def _close(self) -> None:
        renderer = getattr(self, "_renderer", None)
        if renderer is not None:
            renderer.close()
            self._renderer = None
