"""`run_deploy`: the entry the CLI calls (`robo-hybrid deploy model=policy.onnx robot=sim ...`)."""

from __future__ import annotations

import json
import os
import tempfile
import time

from .loop import Controller, LoopConfig
from .policy import OnnxPolicy
from .robot import Robot
from .safety import SafetyConfig
from .telemetry import format_summary

ROBOTS = ("sim", "sim_server", "mock")


def make_robot(robot: str, policy: OnnxPolicy, task: str | None, seed: int, endpoint: str | None,
               env_kwargs: dict) -> tuple[Robot, object | None]:  # fmt: skip
    """Build the robot backend (and, for sim_server, the server process it talks to)."""
    spec = policy.spec
    if robot == "mock":
        from .mock import MockRobot

        return MockRobot(spec, seed=seed), None
    from .sim_backend import env_kwargs_for_spec

    kwargs = {**env_kwargs_for_spec(spec), **env_kwargs}
    if robot == "sim":
        from .sim_backend import MujocoRobot

        return MujocoRobot(task or spec.task_id, seed=seed, **kwargs), None
    if robot == "sim_server":
        from .sim_server import SimServerConfig, SimServerProcess
        from .zmq_robot import ZmqRobot

        tmp = None
        if endpoint is None:  # a private ipc endpoint: no port clashes with other runs
            tmp = tempfile.mkdtemp(prefix="robo_hybrid_")
            endpoint = "ipc://" + os.path.join(tmp, "sim")
        cfg = SimServerConfig(endpoint=endpoint, backend="sim", task=task or spec.task_id, env_kwargs=kwargs,
                              seed=seed)  # fmt: skip
        server = SimServerProcess(cfg, cleanup_dir=tmp).start()
        return ZmqRobot(endpoint, connect_timeout_s=60.0), server
    raise ValueError(f"robot={robot!r}: choose one of {ROBOTS}")


def run_deploy(
    model: str,
    robot: str = "sim",
    episodes: int = 10,
    rate_hz: float | None = None,
    task: str | None = None,
    seed: int = 0,
    log_dir: str | None = None,
    max_steps: int = 0,
    safety: bool = True,
    estop_file: str | None = None,
    temporal_ensemble_m: float | None = None,
    endpoint: str | None = None,
    plot: bool = True,
    **env_kwargs,
) -> dict:
    """Load the ONNX policy, check it against the robot, run `episodes` episodes; print and return a summary.

    robot: "sim" (in-process MuJoCo), "sim_server" (MuJoCo in its own process over ZeroMQ, real timing),
    or "mock" (MockRobot mirroring commands; no MuJoCo). env_kwargs go to robo_hybrid.envs.make_env and
    default to the model's image size, wrist camera and control rate. Raises ModelLoadError /
    SpecMismatchError before any command when the model cannot run on this robot.
    """
    if robot not in ROBOTS:
        raise ValueError(f"robot={robot!r}: choose one of {ROBOTS}")
    episodes, max_steps, seed = _as(int, episodes, "episodes"), _as(int, max_steps, "max_steps"), _as(int, seed, "seed")
    rate_hz = None if rate_hz in (None, "", "null", "None") else _as(float, rate_hz, "rate_hz")
    policy = OnnxPolicy(model)
    print(f"[deploy] policy: {policy.describe()} (warm-up {policy.warmup_s * 1e3:.1f} ms)")
    backend, server = make_robot(robot, policy, task, seed, endpoint, env_kwargs)
    loop_cfg = LoopConfig(rate_hz=rate_hz, max_steps=max_steps, seed=seed, temporal_ensemble_m=temporal_ensemble_m)
    ctl = Controller(policy, backend, loop_cfg, SafetyConfig(enabled=safety, estop_file=estop_file))
    t0 = time.monotonic()
    try:
        ctl.startup()
        for w in ctl.warnings:
            print(f"[deploy] warning: {w}")
        result = ctl.run(episodes)
    finally:
        backend.close()
        if server is not None:
            server.stop()  # type: ignore[attr-defined]
    result["wall_s"] = time.monotonic() - t0
    result["model"] = {"path": policy.path, "model_hash": policy.model_hash, "config_hash": policy.config_hash,
                       "task_id": policy.spec.task_id}  # fmt: skip
    result["results"] = [vars(r) for r in result["results"]]
    if log_dir:
        result["files"] = ctl.telemetry.write(log_dir)
        if plot:
            png = ctl.telemetry.plot_histogram(os.path.join(log_dir, "latency_hist.png"))
            if png:
                result["files"]["histogram"] = png
        with open(os.path.join(log_dir, "deploy_result.json"), "w") as f:
            json.dump(result, f, indent=2, default=str)
    print(format_result(result))
    return result


def _as(kind: type, value, name: str):
    """Coerce a CLI string (e.g. episodes='10') to `kind`, with an error naming the argument."""
    try:
        return kind(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"deploy {name}={value!r}: expected {kind.__name__}") from e


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
