"""franky-sim running our FR3 task scene in a child process, reset and read through the simulator's own API.

The child builds franky-sim's `MujocoSimulator` scene (its FR3, its ground as the table's contact surface) plus our
table, cube, goal and cameras (`envs/fr3_scene.py`: the same objects as our env) and our env's lighting, then serves
libfranka's protocol in real time at 1 kHz. Between ticks it answers a pipe: `reset` places the arm, fingers, cube
and goal through `sim.data` / `sim.model` (the franky-sim server then holds the new joint positions), `snapshot`
returns qpos and the simulator's time. This process compiles the same MJCF into a mirror model: the cube's state
for the success judge and the camera images are read from snapshots, so nothing here shares franky-sim's GIL.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from robo_hybrid.deploy.cameras.base import Camera, CameraError
from robo_hybrid.deploy.cameras.sim import kinematics_for_rendering
from robo_hybrid.envs.fr3_scene import (
    FINGER_JOINTS,
    FR3_JOINTS,
    add_materials,
    add_task_objects,
    add_wrist_camera,
    draw_collision_meshes,
)

PREFIX = "robot0_"  # franky-sim prefixes the names of its first robot
START_TIMEOUT_S = 60.0
REPLY_TIMEOUT_S = 5.0


def build_scene(sim, with_object: bool = True) -> None:
    """Add our task objects, wrist camera and lighting to a franky-sim MujocoSimulator before its server starts."""
    world, scene = sim.worldbody, sim.scene
    for light in world.findall("light"):
        world.remove(light)  # our env's lighting, so the cameras see what the policy was trained on
    ground = world.find("geom[@name='ground']")
    if ground is not None:  # stays the contact surface (z = 0, our table top); not drawn (group 3 is hidden)
        ground.attrib.pop("material", None)
        ground.set("group", "3")
    headlight = scene.find("visual/headlight")
    if headlight is not None:
        headlight.attrib.update(ambient="0.35 0.35 0.35", diffuse="0.4 0.4 0.4", specular="0.5 0.5 0.5")
    ET.SubElement(world, "light", name="key", pos="1.5 -1.0 2.5", dir="-0.5 0.4 -1", directional="true",
                  diffuse="0.7 0.7 0.65", castshadow="false")  # fmt: skip
    ET.SubElement(world, "geom", name="floor", type="plane", pos="0 0 -0.04", size="3 3 0.1", rgba="0.3 0.35 0.4 1",
                  contype="0", conaffinity="0")  # fmt: skip
    asset = scene.find("asset")
    assert asset is not None  # franky-sim's scene always has one
    add_materials(asset)
    add_task_objects(world, with_object, table_visual_only=True)
    draw_collision_meshes(world)  # as our env draws the arm
    hand = world.find(f".//body[@name='{PREFIX}hand']")
    assert hand is not None, "franky-sim's FR3 has no hand body"
    add_wrist_camera(hand)


def _addresses(model, names: tuple[str, ...]) -> list[int]:
    import mujoco

    return [int(model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, PREFIX + n)]) for n in names]


def _serve(conn, host: str, with_object: bool, slowdown: float = 1.0) -> None:
    """Child process: franky-sim with our scene on `host`, serving reset / snapshot requests between ticks; the 1 ms
    ticks run on absolute wall-clock deadlines `slowdown` ms apart."""
    import franky_sim
    import mujoco
    from franky_sim.mujoco_simulator import MujocoSimulator

    sim = MujocoSimulator()
    sim.init()
    robot = sim.add_robot()
    build_scene(sim, with_object)
    srv = franky_sim.SimulationServer(sim, hostname_candidates=[host])
    srv.init()
    m, d = sim.model, sim.data
    assert m is not None and d is not None  # set by srv.init() (it starts the simulator)
    arm, fingers = _addresses(m, FR3_JOINTS), _addresses(m, FINGER_JOINTS)
    obj = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, "object")
    goal_site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, "goal")
    conn.send(("ready", ET.tostring(sim.scene, encoding="unicode")))
    tick_s, next_t = 0.001 * slowdown, time.perf_counter()
    try:
        while True:
            srv.run_once(realtime=False)
            # absolute deadlines, as an FR3's 1 kHz clock: franky-sim's own pacing (a 1 ms sleep after each tick's
            # work) runs at ~900 ticks/s here, so the arm would cover 10% less per control period than in our env
            next_t += tick_s
            delay = next_t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.05:  # a stall of more than 50 ticks: carry on from now instead of racing to catch up
                next_t = time.perf_counter()
            if not conn.poll():
                continue
            msg = conn.recv()
            if msg[0] == "snapshot":
                conn.send((float(d.time), d.qpos.copy()))
            elif msg[0] == "reset":
                _, q_arm, width, obj_pose, goal = msg
                d.qpos[arm], d.qpos[fingers] = q_arm, width / 2
                if obj >= 0:
                    d.qpos[m.jnt_qposadr[obj] : m.jnt_qposadr[obj] + 7] = obj_pose
                d.qvel[:], d.qfrc_applied[:] = 0.0, 0.0
                m.site_pos[goal_site] = goal
                mujoco.mj_forward(m, d)
                srv.robot_servers[0]._reset_state()  # the idle server now holds the new joint positions
                robot.set_hand_goal(width, 0.05, 70.0)
                conn.send("ok")
            elif msg[0] == "close":
                break
    finally:
        srv.cleanup()


@dataclass
class Snapshot:
    """One read of franky-sim's MuJoCo state: simulator time (s) and qpos."""

    time_s: float
    qpos: np.ndarray


class FrankySimScene:
    """franky-sim + our task scene in a child process on `host`; a mirror model here for judging and rendering.

    `slowdown` > 1 runs franky-sim slower than real time by that factor (a loop driving it then runs at the policy
    rate / slowdown): on a loaded machine it cannot keep 1 kHz, and a slower but steady clock keeps the ratio of
    simulated time per control period exact.
    """

    def __init__(self, host: str, with_object: bool = True, slowdown: float = 1.0) -> None:
        import mujoco

        ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited GL context or threads
        self._conn, child = ctx.Pipe()
        self.host = host
        self.slowdown = float(slowdown)
        self._proc = ctx.Process(target=_serve, args=(child, host, with_object, self.slowdown), daemon=True)
        self._proc.start()
        if not self._conn.poll(START_TIMEOUT_S):
            self.close()
            raise RuntimeError(f"franky-sim did not start on {host} within {START_TIMEOUT_S:.0f} s")
        tag, xml = self._conn.recv()
        assert tag == "ready"
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        oj = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, "object")
        self.obj_qadr = int(self.model.jnt_qposadr[oj]) if oj >= 0 else -1
        self.arm_qadr = _addresses(self.model, FR3_JOINTS)
        self._goal_site = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, "goal")
        self._tcp = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, "tcp")
        self.last: Snapshot | None = None

    def _call(self, msg: tuple):
        self._conn.send(msg)
        if not self._conn.poll(REPLY_TIMEOUT_S):
            raise RuntimeError("franky-sim's process stopped answering")
        return self._conn.recv()

    def reset(self, q_arm: np.ndarray, obj_pose: np.ndarray | None, goal: np.ndarray, width_m: float = 0.08) -> None:
        """Place arm joints, the fingers (opening), cube pose (pos + quat wxyz) and the goal site."""
        pose = np.zeros(7) if obj_pose is None else np.asarray(obj_pose, float)
        assert self._call(("reset", np.asarray(q_arm, float), float(width_m), pose, np.asarray(goal, float))) == "ok"
        self.model.site_pos[self._goal_site] = goal

    def snapshot(self) -> Snapshot:
        """franky-sim's state now; also kept as `last` and loaded into the mirror's data (poses for rendering)."""
        t, qpos = self._call(("snapshot",))
        self.last = Snapshot(t, qpos)
        self.data.qpos[:] = qpos
        kinematics_for_rendering(self.model, self.data)
        return self.last

    def object_pos(self) -> np.ndarray:
        """The cube's position in the last snapshot."""
        assert self.last is not None and self.obj_qadr >= 0
        return self.last.qpos[self.obj_qadr : self.obj_qadr + 3].copy()

    def physical_tcp(self) -> np.ndarray:
        """The tool centre point of the simulated arm's joints in the last snapshot (not franky's reported pose)."""
        return self.data.site_xpos[self._tcp].copy()

    def close(self) -> None:
        """Stop the child process."""
        try:
            if self._proc.is_alive():
                self._conn.send(("close",))
            self._proc.join(5.0)
        finally:
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5.0)


class MirrorCamera(Camera):
    """Renders camera `camera` of a FrankySimScene's mirror model at its last snapshot (taken by the robot's read)."""

    def __init__(self, scene: FrankySimScene, camera: str, size: int = 84) -> None:
        self.scene, self.camera, self.size = scene, camera, int(size)
        self._renderer = None

    def start(self) -> None:
        """Open the renderer (its GL context)."""
        os.environ.setdefault("MUJOCO_GL", "egl")
        import mujoco

        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.scene.model, self.size, self.size)

    def latest(self) -> tuple[np.ndarray, float]:
        """The frame of the last snapshot, stamped now (it is as fresh as the state read)."""
        if self._renderer is None or self.scene.last is None:
            raise CameraError(f"sim camera {self.camera}: not started or no snapshot yet")
        self._renderer.update_scene(self.scene.data, camera=self.camera)
        return self._renderer.render().copy(), time.monotonic()

    def stop(self) -> None:
        """Close the renderer."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


class BlankCamera(Camera):
    """A grey frame stamped now, for controllers that read no image (the scripted expert): rendering the FR3's meshes
    in software costs tens of milliseconds per frame, which would starve franky-sim of the CPU."""

    def __init__(self, size: int = 84) -> None:
        self.size = int(size)
        self._frame = np.full((self.size, self.size, 3), 128, np.uint8)

    def start(self) -> None:
        """Nothing to open."""

    def latest(self) -> tuple[np.ndarray, float]:
        """The grey frame, stamped now."""
        return self._frame, time.monotonic()

    def stop(self) -> None:
        """Nothing to close."""
