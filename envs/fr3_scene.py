"""The FR3 scene: franky-sim's Menagerie FR3 model (read from the installed package) plus our table, cube, goal and
cameras. `add_task_objects` is shared by our env and by a franky-sim test harness, so both simulate one scene.

The FR3 model and its meshes are never copied into this repository: they are found in the installed `franky_sim`
package (franky-sim ships MuJoCo Menagerie's FR3, Apache-2.0) without importing it (its import pulls pinocchio).
"""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path

# franky-sim's start pose (franky_sim.constants.DEFAULT_INITIAL_JOINT_POS): tool pointing down above the table.
HOME_Q_RAD = (0.0, 0.0, 0.0, -1.57, 0.0, 1.57, 0.785)
FR3_JOINTS = tuple(f"fr3_joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("finger_joint1", "finger_joint2")
# franky's TCP (franky_sim RobotParameters.ee_tcp_xyz, the Franka Hand's default end effector): 0.1034 m along the
# flange z axis; the Menagerie `hand` body sits on the flange with the same -pi/4 yaw as franky's ee_tcp_rpy.
TCP_OFFSET_M = 0.1034
CUBE_HALF_M = 0.02
CUBE_MASS_KG = 0.05
TABLE_CENTER_XY_M = (0.5, 0.0)
TABLE_HALF_XY_M = (0.35, 0.45)


def franky_sim_assets() -> Path:
    """Folder of franky-sim's FR3 assets (fr3.xml, meshes/); a one-line error naming the fix when not installed."""
    spec = importlib.util.find_spec("franky_sim")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the FR3 tasks load the FR3 model from franky-sim: pip install franky-sim")
    folder = Path(next(iter(spec.submodule_search_locations))) / "assets"
    if not (folder / "fr3.xml").is_file():
        raise FileNotFoundError(f"franky-sim's FR3 model is missing ({folder / 'fr3.xml'}); reinstall franky-sim")
    return folder


def add_task_objects(worldbody: ET.Element, with_object: bool = True, table_visual_only: bool = False) -> None:
    """Append the table, cube ('object'), goal site and front camera to a worldbody (ours or franky-sim's)."""
    (cx, cy), (hx, hy) = TABLE_CENTER_XY_M, TABLE_HALF_XY_M
    # the table top is the z = 0 plane the robot stands on (franky-sim's ground is there too)
    table = ET.SubElement(worldbody, "geom", name="table", type="box", pos=f"{cx} {cy} -0.02",
                          size=f"{hx} {hy} 0.0199", material="table")  # fmt: skip
    if table_visual_only:
        table.set("contype", "0")
        table.set("conaffinity", "0")
    if with_object:
        body = ET.SubElement(worldbody, "body", name="object", pos=f"0.5 0 {CUBE_HALF_M}")
        ET.SubElement(body, "freejoint", name="object")
        ET.SubElement(body, "geom", name="object", type="box", size=f"{CUBE_HALF_M} {CUBE_HALF_M} {CUBE_HALF_M}",
                      mass=str(CUBE_MASS_KG), material="object", friction="1.0 0.005 0.0001", condim="4")
    ET.SubElement(worldbody, "site", name="goal", pos="0.5 0.1 0.1", size="0.02", rgba="0.1 0.9 0.2 0.4")
    # front camera: 1.35 m in front of the robot, looking back at the table and down (camera looks along -z)
    ET.SubElement(worldbody, "camera", name="front", pos="1.35 0 0.65", xyaxes="0 1 0 -0.42 0 0.91", fovy="45")


def draw_collision_meshes(tree: ET.Element) -> None:
    """Cameras draw the arm's collision meshes (3.2 k triangles) instead of its visual meshes (241 k): software
    rendering of the visual meshes costs ~25 ms per 84 px frame on 2 cores, 10x the physics of a control step.
    Only the drawn group changes (visual -> hidden group 5, collision -> group 2); physics is untouched."""
    for geom in tree.iter("geom"):
        cls = geom.get("class", "")
        if cls == "visual":
            geom.set("group", "5")
        elif "collision" in cls:
            geom.set("group", "2")


def add_materials(asset: ET.Element) -> None:
    """The table / object materials (named as the domain randomizer expects)."""
    ET.SubElement(asset, "material", name="table", rgba="0.55 0.42 0.3 1")
    ET.SubElement(asset, "material", name="object", rgba="0.85 0.15 0.1 1")


def add_wrist_camera(hand: ET.Element) -> None:
    """A camera on the hand looking along the fingers (the hand's +z; a MuJoCo camera looks along its -z)."""
    ET.SubElement(hand, "camera", name="wrist", pos="0.07 0 0.02", quat="0 1 0 0", fovy="70")
    ET.SubElement(hand, "site", name="tcp", pos=f"0 0 {TCP_OFFSET_M}", size="0.004", rgba="1 1 0 0.5", group="4")


def build_scene_xml(with_object: bool = True) -> str:
    """The complete MJCF of our FR3 task scene (robot from franky-sim's assets + task objects), as a string."""
    assets = franky_sim_assets()
    root = ET.parse(assets / "fr3.xml").getroot()
    root.set("model", "fr3_task")
    compiler = root.find("compiler")
    assert compiler is not None
    compiler.set("meshdir", str(assets / "meshes"))  # absolute: the meshes stay in the installed package
    option = root.find("option")
    assert option is not None
    option.set("timestep", "0.001")  # franky-sim's and libfranka's 1 kHz
    asset = root.find("asset")
    assert asset is not None
    add_materials(asset)
    worldbody = root.find("worldbody")
    assert worldbody is not None
    ET.SubElement(worldbody, "light", name="key", pos="1.5 -1.0 2.5", dir="-0.5 0.4 -1", directional="true",
                  diffuse="0.7 0.7 0.65", castshadow="false")
    ET.SubElement(worldbody, "geom", name="floor", type="plane", pos="0 0 -0.04", size="3 3 0.1",
                  rgba="0.3 0.35 0.4 1")
    add_task_objects(worldbody, with_object)
    draw_collision_meshes(worldbody)
    hand = root.find(".//body[@name='hand']")
    assert hand is not None
    add_wrist_camera(hand)
    keyframe = root.find("keyframe")
    if keyframe is not None:
        root.remove(keyframe)  # its qpos has no entries for the cube's free joint
    visual = root.find("visual")
    if visual is None:
        visual = ET.SubElement(root, "visual")
    ET.SubElement(visual, "headlight", ambient="0.35 0.35 0.35", diffuse="0.4 0.4 0.4")
    return ET.tostring(root, encoding="unicode")
