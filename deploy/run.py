"""`run_deploy`: the entry the CLI and the main job call (`robo-hybrid deploy model=policy.onnx robot=sim ...`)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator

from robo_hybrid.fileio import atomic_write_json

from .config import DeployConfig
from .loop import LATCHING_ENDS, Controller, LoopConfig
from .policy import OnnxPolicy
from .realtime import realtime
from .robot import Robot
from .safety import SafetyConfig
from .telemetry import format_summary

ROBOTS = ("sim", "sim_server", "mock", "franka")


class Terminated(BaseException):
    """SIGTERM arrived before the loop took over signal handling (start-up): unwind and clean up."""


def make_robot(robot: str, policy: OnnxPolicy, cfg: DeployConfig, task: str | None,
               env_cfg: dict) -> tuple[Robot, object | None]:  # fmt: skip
    """Build the robot backend (and, for sim_server, the server process it talks to)."""
    spec = policy.spec
    if robot == "mock":
        from .mock import MockRobot

        return MockRobot(spec, seed=cfg.seed), None
    if robot == "franka":  # a real FR3 / Panda (or franky-sim) through franky-control
        from .franka import make_franka

        return make_franka(spec, cfg.host, cfg.dynamics_factor, cfg.cameras, cfg.realtime), None
    if robot == "sim_server" and cfg.sim_backend == "mock":
        return _sim_server(cfg, backend="mock", task="", env_kwargs={}, spec_json=spec.to_json())
    from .sim_backend import env_kwargs_for_spec

    kwargs = {**env_kwargs_for_spec(spec), **env_cfg}
    if robot == "sim":
        from .sim_backend import MujocoRobot

        return MujocoRobot(task or spec.task_id, seed=cfg.seed, **kwargs), None
    if robot == "sim_server":
        return _sim_server(cfg, backend="sim", task=task or spec.task_id, env_kwargs=kwargs, spec_json=None)
    raise ValueError(f"robot={robot!r}: choose one of {ROBOTS}")


def _sim_server(cfg: DeployConfig, backend: str, task: str, env_kwargs: dict, spec_json: str | None):
    from .auth import ensure_keys
    from .server_process import SimServerProcess
    from .sim_server import SimServerConfig
    from .zmq_robot import ZmqRobot

    ensure_keys(cfg.keys_dir)  # first start: both sides find the same key files
    tmp, endpoint = None, cfg.endpoint
    if not endpoint:  # a private ipc endpoint: no port clashes with other runs
        tmp = tempfile.mkdtemp(prefix="robo_hybrid_")
        endpoint = "ipc://" + os.path.join(tmp, "sim")
    scfg = SimServerConfig(endpoint=endpoint, backend=backend, task=task, env_kwargs=env_kwargs, seed=cfg.seed,
                           spec_json=spec_json, keys_dir=cfg.keys_dir)  # fmt: skip
    server = SimServerProcess(scfg, cleanup_dir=tmp)
    try:
        server.start()
        robot = ZmqRobot(endpoint, connect_timeout_s=60.0, keys_dir=cfg.keys_dir,
                         link_refused_max=cfg.link_refused_max, link_window_s=cfg.link_window_s)  # fmt: skip
    except BaseException:
        server.stop()
        raise
    return robot, server


@contextlib.contextmanager
def _terminate_raises() -> Iterator[None]:
    """During start-up SIGTERM unwinds (finally blocks stop the server, remove temp folders) instead of killing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise Terminated(f"signal {signum} during start-up")

    prev = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, prev)


def run_deploy(model: str, robot: str = "sim", cfg: DeployConfig | None = None, task: str | None = None,
               env_cfg: dict | None = None, **overrides) -> dict:  # fmt: skip
    """Load the ONNX policy, check it against the robot, run cfg.episodes episodes; print and return a summary.

    robot: "sim" (in-process MuJoCo), "sim_server" (its own process over ZeroMQ, real timing; cfg.sim_backend
    picks MuJoCo or the mock), or "mock" (MockRobot; no MuJoCo). `overrides` replace DeployConfig fields
    (run_deploy(path, "mock", episodes=3)). env_cfg goes to robo_hybrid.envs.make_env, defaulting to the model's
    image size, wrist camera and rate. Raises ModelLoadError / SpecMismatchError before any command when the
    model cannot run on this robot; result["latched"] names a latch the run ended in.
    """
    if robot not in ROBOTS:
        raise ValueError(f"robot={robot!r}: choose one of {ROBOTS}")
    cfg = dataclasses.replace(cfg or DeployConfig(), **overrides)
    policy = OnnxPolicy(model)
    print(f"[deploy] policy: {policy.describe()} (warm-up {policy.warmup_s * 1e3:.1f} ms)", flush=True)
    loop_cfg = LoopConfig(rate_hz=cfg.rate_hz, max_steps=cfg.max_steps, seed=cfg.seed,
                          temporal_ensemble_m=cfg.temporal_ensemble_m, allow_other_task=cfg.allow_other_task)
    safety = SafetyConfig(enabled=cfg.safety, estop_file=cfg.estop_file or None)  # fmt: skip
    t0 = time.monotonic()
    backend, server = None, None
    try:
        with _terminate_raises():
            backend, server = make_robot(robot, policy, cfg, task, env_cfg or {})
            ctl = Controller(policy, backend, loop_cfg, safety)
            ctl.startup()
        for w in ctl.warnings:
            print(f"[deploy] warning: {w}")
        with realtime(cfg.realtime, cfg.realtime_priority, cfg.realtime_cpu) as rt:
            if rt.refused:
                print(f"[deploy] warning: {rt.line()}", flush=True)
            result = ctl.run(cfg.episodes)
        result["realtime"] = rt.line()
    finally:
        if backend is not None:
            backend.close()
        if server is not None:
            server.stop()  # type: ignore[attr-defined]
    result["wall_s"] = time.monotonic() - t0
    result["model"] = {"path": policy.path, "model_hash": policy.model_hash, "config_hash": policy.config_hash,
                       "task_id": policy.spec.task_id}  # fmt: skip
    result["results"] = [vars(r) for r in result["results"]]
    result["latch_reason"] = latch_reason(result)
    if cfg.log_dir:
        result["files"] = ctl.telemetry.write(cfg.log_dir)
        if cfg.plot:
            png = ctl.telemetry.plot_histogram(os.path.join(cfg.log_dir, "latency_hist.png"))
            if png:
                result["files"]["histogram"] = png
        atomic_write_json(os.path.join(cfg.log_dir, "deploy_result.json"), result)
    print(format_result(result))
    return result


def latch_reason(result: dict) -> str | None:
    """One line naming the latch a run ended in (e-stop, hardware error, overrun stop...), or None."""
    if not result.get("latched"):
        return None
    last = result["results"][-1] if result.get("results") else {}
    end = last.get("end", result["latched"]) if isinstance(last, dict) else result["latched"]
    detail = last.get("detail", "") if isinstance(last, dict) else ""
    events = [e for e in result.get("telemetry", {}).get("events", []) if e.get("kind") in LATCHING_ENDS]
    why = events[-1]["detail"] if events and events[-1].get("detail") else detail
    return " ".join(f"latched ({result['latched']}, episode end {end}): {why}".split())


def format_result(result: dict) -> str:
    """Readable multi-line summary of a run_deploy result."""
    counters = {k: v for k, v in sorted(result["counters"].items()) if v}
    lines = [
        f"[deploy] episodes={result['episodes']} success_rate={result['success_rate']:.2f} "
        f"({result['successes']}/{result['episodes']}) ends={result['ends']} wall={result['wall_s']:.1f}s",
        f"[deploy] latched={result['latched']} safety counters={counters}",
        format_summary(result["telemetry"]),
    ]
    if result.get("files"):
        lines.append(f"[deploy] logs: {result['files']}")
    return "\n".join(lines)
