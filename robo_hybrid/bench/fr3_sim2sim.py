"""Sim-to-sim: one controller on franky-sim through `robot=franka` and in our FR3 env, on the same seeds.

franky-sim side: the deploy loop (`Controller`, safety filter) drives `FrankySimRobot`, the real franky driver
(`deploy/franka.py`, libfranka's protocol, real time) plus what only a simulator has: a reset between episodes that
places arm, fingers, cube and goal as our env's reset does for that seed (through franky-sim's own `sim.data`), the
cube for the success judge (our env's rule: the cube within the task's threshold of the goal) and camera frames
rendered from franky-sim's state. Env side: the same controller in `make_env(task)` on the same seeds.

Controllers: the scripted expert (privileged: it reads the cube), or an exported ONNX policy. Torch-free.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from robo_hybrid.deploy.franka import FrankaRobot
from robo_hybrid.deploy.loop import Controller, LoopConfig
from robo_hybrid.deploy.policy import CallablePolicy
from robo_hybrid.deploy.robot import Observation
from robo_hybrid.deploy.safety import SafetyConfig
from robo_hybrid.envs.fr3 import FR3_TASKS, WORKSPACE_HIGH_M, WORKSPACE_LOW_M
from robo_hybrid.stats import wilson_interval

from .fr3_motion import loopback_host
from .franky_sim_scene import BlankCamera, FrankySimScene, MirrorCamera

SETTLE_S = 0.5  # after a reset: franky-sim's finite-difference velocity estimates forget the jump


@dataclass
class SeedState:
    """Our env's reset of one seed: arm joints, cube pose (pos + quat wxyz), goal."""

    seed: int
    q_arm: np.ndarray
    obj_pose: np.ndarray
    goal: np.ndarray


def seed_state(env, seed: int) -> SeedState:
    """Reset `env` (an FR3 env) with `seed` and read back what it placed."""
    e = env.unwrapped
    env.reset(seed=seed)
    pose = e.data.qpos[e._obj_qadr : e._obj_qadr + 7].copy() if e.task.has_object else np.zeros(7)
    return SeedState(seed, e.data.qpos[e._arm_qadr].copy(), pose, e.goal.copy())


class FrankySimRobot(FrankaRobot):
    """robot=franka on franky-sim, plus a seeded scene reset and our env's success rule in `Observation.info`."""

    supports_reset = True

    def __init__(self, spec, scene: FrankySimScene, task: str, states: dict[int, SeedState],
                 terminate_on_success: bool = True, render: bool = True, **kw) -> None:  # fmt: skip
        cams: dict = {}
        for key, cam in (("image", "front"), ("image_wrist", "wrist")):
            if key in spec.image_keys:
                size = spec_image_size(spec, key)
                cams[key] = MirrorCamera(scene, cam, size) if render else BlankCamera(size)
        super().__init__(spec, scene.host, cameras=cams, workspace=(WORKSPACE_LOW_M, WORKSPACE_HIGH_M), **kw)
        self.scene, self.task, self.states = scene, FR3_TASKS[task], states
        self.terminate_on_success = terminate_on_success
        self.sim_period_s: list[float] = []  # franky-sim time between successive reads (real time: the loop period)
        self._last_t: float | None = None

    def reset(self, seed: int | None = None) -> Observation:
        """Bring the arm to rest, then place everything as our env's reset of `seed` does."""
        st = self.states[int(seed or 0)]
        self.hold()
        if self._arm is not None:
            self._arm.join_motion(5.0)
        if self._grip_future is not None:
            self._grip_future.wait(3.0 * self.scene.slowdown)
        self.scene.reset(st.q_arm, st.obj_pose if self.task.has_object else None, st.goal)
        self.goal = st.goal.astype(np.float32)
        self._grip_open = None  # the fingers were reopened in the simulator: the first gripper command goes out
        self._holding = False
        time.sleep(SETTLE_S * self.scene.slowdown)
        self._last_t = None
        return self.read()

    def read(self) -> Observation:
        """franky's state and the cameras at one franky-sim snapshot; is_success / terminated as our env judges."""
        snap = self.scene.snapshot()
        if self._last_t is not None:
            self.sim_period_s.append(snap.time_s - self._last_t)
        self._last_t = snap.time_s
        obs = super().read()
        # our env's rule: the cube, or (reach) the tcp the robot reports, within the threshold of the goal
        pos = self.scene.object_pos() if self.task.has_object else obs.arrays["proprio"][14:17].astype(np.float64)
        success = bool(np.linalg.norm(pos - self.goal) < self.task.success_threshold_m)
        obs.info = {"is_success": success, "terminated": success and self.terminate_on_success}
        return obs


def spec_image_size(spec, key: str) -> int:
    """Side of the spec's square image `key`."""
    return int(next(t.shape[0] for t in spec.observations if t.name == key))


class ExpertView:
    """What the scripted expert reads from an env, served from the robot's observation and franky-sim's state."""

    def __init__(self, robot: FrankySimRobot, task: str) -> None:
        self.robot, self.unwrapped, self.task = robot, self, FR3_TASKS[task]
        self.proprio = np.zeros(18, np.float32)

    @property
    def tcp_pos(self) -> np.ndarray:
        """The tcp franky reports (proprio)."""
        return self.proprio[14:17].astype(np.float64)

    @property
    def tcp_measured_pos(self) -> np.ndarray:
        """The tcp of franky-sim's simulated joints."""
        return self.robot.scene.physical_tcp()

    @property
    def gripper_opening_m(self) -> float:
        """franky's gripper width (proprio)."""
        return float(self.proprio[17])

    @property
    def goal(self) -> np.ndarray:
        """This episode's goal."""
        return self.robot.goal.astype(np.float64)

    def privileged_state(self) -> np.ndarray:
        """The cube's position (the expert reads nothing else of it)."""
        return np.concatenate([self.robot.scene.object_pos(), np.zeros(10)]).astype(np.float32)


@dataclass
class SideResult:
    """One side's episodes: success per seed, steps per episode."""

    successes: list[bool] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)

    def line(self, name: str) -> str:
        """'name: k/n = p% [lo, hi]'."""
        k, n = sum(self.successes), len(self.successes)
        lo, hi = wilson_interval(k, n)
        return f"{name}: {k}/{n} = {100 * k / max(n, 1):.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def _env_side(task: str, seeds: list[int], controller: str, model: str, env_kw: dict) -> SideResult:
    from robo_hybrid.envs import make_env
    from robo_hybrid.envs.experts_fr3 import make_fr3_expert

    render = controller != "expert"
    env = make_env(task, render=render, **env_kw)
    policy = _onnx(model) if controller == "onnx" else None
    out = SideResult()
    try:
        for seed in seeds:
            expert = make_fr3_expert(env)
            obs, _ = env.reset(seed=seed)
            if policy is not None:
                policy.reset()
            ok, steps, done = False, 0, False
            while not done:
                act = expert.act(obs, env) if policy is None else policy.infer(obs).action
                obs, _, term, trunc, info = env.step(act)
                ok, steps, done = ok or bool(info["is_success"]), steps + 1, term or trunc
            out.successes.append(ok)
            out.steps.append(steps)
    finally:
        env.close()
    return out


def _onnx(model: str):
    from robo_hybrid.deploy.policy import OnnxPolicy

    return OnnxPolicy(model)


def _franky_sim_side(task: str, states: dict[int, SeedState], controller: str, model: str, spec, safety: bool,
                     episode_steps: int, slowdown: float) -> tuple[SideResult, dict]:  # fmt: skip
    scene = FrankySimScene(loopback_host(), with_object=FR3_TASKS[task].has_object, slowdown=slowdown)
    robot = FrankySimRobot(spec, scene, task, states, render=controller != "expert")  # the expert reads no image
    if controller == "expert":
        from robo_hybrid.envs.experts_fr3 import FR3PickPlaceExpert, FR3ReachExpert

        view = ExpertView(robot, task)
        expert = FR3PickPlaceExpert() if FR3_TASKS[task].has_object else FR3ReachExpert()

        def act(obs: dict) -> np.ndarray:
            view.proprio = obs["proprio"]
            return expert.act(obs, view)  # type: ignore[arg-type]  # reads only what ExpertView serves

        policy = CallablePolicy(spec, act)
    else:
        policy = _onnx(model)
    seeds = sorted(states)
    # franky-sim slowed down by `slowdown`: the loop slows by as much, so each period is 1 / rate of simulated time
    loop = LoopConfig(rate_hz=spec.control_rate_hz / slowdown, max_steps=episode_steps, seed=seeds[0],
                      handle_signals=False)  # fmt: skip
    ctl = Controller(policy, robot, loop, SafetyConfig(enabled=safety, estop_signal=False))
    out = SideResult()
    try:
        result = ctl.run(len(seeds))
    finally:
        robot.close()
        scene.close()
    for r in result["results"]:
        out.successes.append(bool(r.success))
        out.steps.append(int(r.steps))
    periods = np.asarray(robot.sim_period_s) * 1e3
    reason = next((r.detail for r in result["results"] if r.detail), "")
    extra = {"ends": result["ends"], "counters": result["counters"], "latched": result["latched"],
             "telemetry": result["telemetry"],
             "latch_reason": reason,
             "sim_ms_per_period_median": float(np.median(periods)) if len(periods) else float("nan"),
             "sim_ms_per_period_p10": float(np.percentile(periods, 10)) if len(periods) else float("nan")}  # fmt: skip
    return out, extra


def run_sim2sim(task: str = "fr3_pickplace", episodes: int = 50, seed_base: int = 1_000_000, controller: str = "expert",
                model: str = "", safety: bool = True, image_size: int = 84, slowdown: float = 1.0,
                episode_steps: int = 0) -> dict:  # fmt: skip
    """Both sides on seeds seed_base .. seed_base + episodes - 1; prints both success rates with Wilson intervals.

    franky-sim runs at 1 / slowdown of real time and the deploy loop at the policy rate / slowdown (see
    FrankySimScene); the printed simulated time per period says whether franky-sim kept that pace."""
    from robo_hybrid.envs import make_env

    if controller not in ("expert", "onnx") or (controller == "onnx" and not model):
        raise ValueError("controller=expert, or controller=onnx with model=<policy.onnx>")
    seeds = list(range(seed_base, seed_base + episodes))
    env_kw: dict = {"image_size": image_size, "episode_steps": episode_steps}  # 0 = the task's episode length
    if controller == "onnx":  # the env the policy was trained on: its cameras and image size
        pspec = _onnx(model).spec
        env_kw.update(image_size=spec_image_size(pspec, "image"), wrist_camera="image_wrist" in pspec.image_keys)
    env = make_env(task, render=False, **env_kw)
    states = {s: seed_state(env, s) for s in seeds}
    steps, spec = env.unwrapped.episode_steps, env.unwrapped.io_spec
    env.close()
    t0 = time.monotonic()
    ours = _env_side(task, seeds, controller, model, env_kw)
    t1 = time.monotonic()
    theirs, extra = _franky_sim_side(task, states, controller, model, spec, safety, steps, slowdown)
    t2 = time.monotonic()
    # the loop stops early on a latch (its reason is printed below): compare the seeds both sides ran
    both = sum(a == b for a, b in zip(ours.successes, theirs.successes, strict=False))
    print(f"{task}, {controller if controller == 'expert' else model}, seeds {seeds[0]}..{seeds[-1]}:")
    print("  " + ours.line("our env    "), f"(median {np.median(ours.steps):.0f} steps, {t1 - t0:.0f} s)")
    print("  " + theirs.line("franky-sim "), f"(median {np.median(theirs.steps):.0f} steps, {t2 - t1:.0f} s, "
          f"robot=franka, franky-sim at 1/{slowdown:g} real time; simulated ms per period: median "
          f"{extra['sim_ms_per_period_median']:.1f}, p10 {extra['sim_ms_per_period_p10']:.1f})")  # fmt: skip
    if extra["latched"]:
        print(f"  franky-sim side stopped after {len(theirs.successes)} of {len(seeds)} episodes: latched "
              f"({extra['latched']}): {extra['latch_reason']}")
    tel = extra["telemetry"]
    print("  loop on franky-sim (ms, p50 / p99): " + ", ".join(
        f"{k} {tel[k + '_ms']['p50']:.2f} / {tel[k + '_ms']['p99']:.2f}" for k in ("read", "infer", "write", "cycle"))
        + f", period {tel['period_ms']['p50']:.1f} / {tel['period_ms']['p99']:.1f}; deadline misses "
        f"{tel['deadline_misses']} of {tel['cycles']} cycles")  # fmt: skip
    print(f"  same outcome on {both}/{len(theirs.successes)} seeds; loop ends {dict(_count(extra['ends']))}; "
          f"safety counters {extra['counters']}")
    return {"env": ours, "franky_sim": theirs, **extra}


def _count(items: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out
