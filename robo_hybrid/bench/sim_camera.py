"""Does the simulated camera starve franky-sim? Its 1 kHz loop timed with and without rendering, side by side.

Each arm embeds franky-sim (the FR3 scene with the task objects, front and wrist cameras) in this process, runs
the controller with `robot=franka` over libfranka's protocol on a loopback address at the policy rate, and times
every franky-sim tick with a post-step callback. The "render" arm adds the simulated cameras (front + wrist,
`size` px at `rate_hz`) rendering that scene in their own threads, as a test harness does; the "no render" arm
delivers constant frames instead. Rendering is software GL here (Mesa llvmpipe), so what a frame costs depends on
the scene's look: franky-sim's own (its visual meshes, 241 k triangles, three lights, a 4096 px shadow map, 8x
multisampling; what tests/deploy/test_franka_sim.py renders) or our env's (`bench/franky_sim_scene.build_scene`:
the arm's collision meshes, our lighting without shadows; what the policy was trained on). Each arm is a fresh
process; arms alternate (A B C A B C ...) so a load change on the machine hits all of them. Torch-free.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time

import numpy as np

from robo_hybrid.deploy.cameras.sim import SimSceneCamera
from robo_hybrid.deploy.franka import FrankaRobot
from robo_hybrid.deploy.loop import Controller, LoopConfig
from robo_hybrid.deploy.policy import CallablePolicy
from robo_hybrid.deploy.safety import SafetyConfig

_HOSTS = itertools.count(1)
MISSED_MS = 2.0  # a tick period over this: at least one whole 1 ms tick was lost
# arm name -> (render, scene look)
ARMS = {"no render": (False, "franky"), "render, franky-sim look": (True, "franky"), "render, env look": (True, "env")}


class ConstantCamera:
    """A camera delivering one constant frame stamped now (the arm without rendering)."""

    def __init__(self, size: int) -> None:
        self.size, self.frames = size, 0
        self._frame = np.full((size, size, 3), 128, np.uint8)

    def start(self) -> None:
        """Nothing to open."""

    def latest(self) -> tuple[np.ndarray, float]:
        """The constant frame, stamped now."""
        self.frames += 1
        return self._frame.copy(), time.monotonic()

    def stop(self) -> None:
        """Nothing to close."""


def _host() -> str:
    """A fresh loopback address per embedded server (libfranka's port 1337 is fixed; a closed one lingers)."""
    n = next(_HOSTS)
    return f"127.{os.getpid() % 250 + 1}.{(time.monotonic_ns() // 1000) % 250 + 1}.{n % 250 + 2}"


def _embedded_server(look: str = "franky"):
    """franky-sim in this process with our task scene (table, cube, goal, front + wrist cameras); not yet running.

    look="franky" keeps franky-sim's meshes and lights; look="env" draws it like our env (build_scene)."""
    import franky_sim
    from franky_sim.mujoco_simulator import MujocoSimulator

    from robo_hybrid.bench.franky_sim_scene import build_scene
    from robo_hybrid.envs.fr3_scene import add_materials, add_task_objects, add_wrist_camera

    sim = MujocoSimulator()
    sim.init()
    sim.add_robot()
    if look == "env":
        build_scene(sim)
    else:
        asset = sim.scene.find("asset")
        assert asset is not None  # franky-sim's scene always has one
        add_materials(asset)
        add_task_objects(sim.worldbody, table_visual_only=True)
        hand = next(b for b in sim.worldbody.iter("body") if str(b.get("name", "")).endswith("hand"))
        add_wrist_camera(hand)
    host = _host()
    srv = franky_sim.SimulationServer(sim, hostname_candidates=[host])
    srv.init()
    return sim, srv, host


def _sweep_policy(spec, steps_per_leg: int):
    """Sweeps the tool left and right (y) and a little up and down: the arm keeps moving for the whole arm."""
    count = itertools.count()

    def act(obs):
        leg = (next(count) // steps_per_leg) % 2
        return np.array([0.0, 0.6 if leg == 0 else -0.6, 0.2 if leg == 0 else -0.2, 1.0], np.float32)

    return CallablePolicy(spec, act)


def tick_stats(ticks: list[float]) -> dict:
    """franky-sim tick periods in ms (p50 / p99 / max), ticks per second, periods over MISSED_MS."""
    t = np.asarray(ticks, float)
    if t.size < 3:
        return {"ticks": int(t.size), "rate_hz": float("nan"), "p50_ms": float("nan"), "p99_ms": float("nan"),
                "max_ms": float("nan"), "missed": 0, "missed_frac": float("nan")}  # fmt: skip
    d = np.diff(t) * 1e3  # (n-1,) ms between consecutive ticks
    return {"ticks": int(t.size), "rate_hz": float((t.size - 1) / (t[-1] - t[0])),
            "p50_ms": float(np.percentile(d, 50)), "p99_ms": float(np.percentile(d, 99)), "max_ms": float(d.max()),
            "missed": int((d > MISSED_MS).sum()), "missed_frac": float((d > MISSED_MS).mean())}  # fmt: skip


def run_arm(spec, render: bool, seconds: float, size: int, rate_hz: float, look: str = "franky") -> dict:
    """One arm: embedded franky-sim + controller for `seconds`, cameras rendering or constant; its tick stats."""
    sim, srv, host = _embedded_server(look)
    ticks: list[float] = []
    recording = [False]
    sim.register_post_step_callback(lambda s: ticks.append(time.monotonic()) if recording[0] else None)
    srv.run_async()
    if render:
        cams = {"image": SimSceneCamera(sim, "front", size, rate_hz),
                "image_wrist": SimSceneCamera(sim, "wrist", size, rate_hz)}  # fmt: skip
    else:
        cams = {"image": ConstantCamera(size), "image_wrist": ConstantCamera(size)}
    cams = {k: v for k, v in cams.items() if k in spec.image_keys}
    robot = FrankaRobot(spec, host, cameras=cams)  # type: ignore[arg-type]  # ConstantCamera is duck-typed
    steps = max(1, int(seconds * spec.control_rate_hz))
    ctl = Controller(_sweep_policy(spec, int(spec.control_rate_hz)), robot,
                     LoopConfig(max_steps=steps, handle_signals=False), SafetyConfig(estop_signal=False))  # fmt: skip
    try:
        ctl.startup()  # connect, cameras' first frames: not part of the measured span
        frames0, t0 = sum(getattr(c, "frames", 0) for c in cams.values()), time.monotonic()
        recording[0] = True
        res = ctl.run(1)
        recording[0] = False
        span = time.monotonic() - t0
        frames = sum(getattr(c, "frames", 0) for c in cams.values()) - frames0
    finally:
        robot.close()
        srv.cleanup()
    out = tick_stats(ticks)
    render_ms = [s * 1e3 for c in cams.values() for s in getattr(c, "render_s", [])]
    out.update(latched=res["latched"], actions=res["counters"].get("actions", 0), cycles=res["telemetry"]["cycles"],
               fps=frames / len(cams) / span if render else rate_hz,
               render_p50_ms=float(np.median(render_ms)) if render_ms else float("nan"))  # fmt: skip
    return out


def _median(rows: list[dict], key: str) -> float:
    return float(np.median([r[key] for r in rows]))


def _spec(size: int, rate_hz: float):
    from robo_hybrid.envs import make_env

    env = make_env("fr3_pickplace", render=False, image_size=size, wrist_camera=True, control_rate_hz=rate_hz)
    spec = env.unwrapped.io_spec  # type: ignore[attr-defined]  # our FR3 env declares it
    env.close()
    return spec


def arm_main(argv: list[str]) -> None:
    """Child process of one arm: argv = [name, seconds, size, rate_hz]; prints its figures as one JSON line."""
    name, seconds, size, rate_hz = argv[0], float(argv[1]), int(argv[2]), float(argv[3])
    render, look = ARMS[name]
    out = run_arm(_spec(size, rate_hz), render, seconds, size, rate_hz, look)
    print("ARM " + json.dumps(dict(out, arm=name)), flush=True)


def _run_child(name: str, seconds: float, size: int, rate_hz: float) -> dict:
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    code = "import sys; from robo_hybrid.bench.sim_camera import arm_main; arm_main(sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", code, name, str(seconds), str(size), str(rate_hz)], env=env,
                          capture_output=True, text=True, timeout=seconds * 10 + 120)  # fmt: skip
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ARM ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"arm {name!r} failed (exit {proc.returncode}): {tail}")
    return json.loads(lines[-1][4:])


def bench_sim_camera(seconds: float = 10.0, repeats: int = 2, size: int = 84, rate_hz: float = 25.0) -> dict:
    """Alternating arms without / with the simulated cameras; prints franky-sim's tick figures side by side."""
    arms: dict[str, list[dict]] = {name: [] for name in ARMS}
    for _ in range(repeats):
        for name in ARMS:
            r = _run_child(name, seconds, size, rate_hz)
            arms[name].append(r)
            print(f"  {name:<30} ticks/s {r['rate_hz']:6.1f} period p50 {r['p50_ms']:.3f} p99 {r['p99_ms']:.2f} "
                  f"max {r['max_ms']:.1f} ms, > {MISSED_MS:g} ms: {r['missed']}; actions {r['actions']}/{r['cycles']}"
                  f" latched={r['latched']} fps {r['fps']:.1f}", flush=True)  # fmt: skip
    cores = len(os.sched_getaffinity(0))
    print(f"franky-sim embedded with the controller (robot=franka, {rate_hz:g} Hz), {seconds:g} s per arm x {repeats} "
          f"(medians), {cores} cores; render = front + wrist {size} px at {rate_hz:g} Hz each")  # fmt: skip
    print(f"{'arm':<32}{'ticks/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'>2 ms':>7}{'% ticks':>8}"
          f"{'render ms':>10}{'fps/cam':>8}{'actions':>9}")  # fmt: skip
    for name, rows in arms.items():
        acts = f"{_median(rows, 'actions'):.0f}/{_median(rows, 'cycles'):.0f}"
        print(f"{name:<32}{_median(rows, 'rate_hz'):>8.1f}{_median(rows, 'p50_ms'):>8.3f}"
              f"{_median(rows, 'p99_ms'):>8.2f}{_median(rows, 'max_ms'):>8.1f}{_median(rows, 'missed'):>7.0f}"
              f"{100 * _median(rows, 'missed_frac'):>8.1f}{_median(rows, 'render_p50_ms'):>10.1f}"
              f"{_median(rows, 'fps'):>8.1f}{acts:>9}")  # fmt: skip
    base = _median(arms["no render"], "rate_hz")
    print("tick rate / no render: " + ", ".join(f"{n} {_median(r, 'rate_hz') / base:.3f}"
                                                for n, r in arms.items() if n != "no render"))  # fmt: skip
    return {"arms": arms, "seconds": seconds, "repeats": repeats, "size": size, "rate_hz": rate_hz}
