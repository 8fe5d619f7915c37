"""robo_hybrid.deploy: the torch-free runtime (numpy + onnxruntime + pyzmq) that runs an exported policy on a robot.

Public names load on first use, so `python -m robo_hybrid.deploy.sim_server` does not pay for onnxruntime and
nothing here imports MuJoCo unless the sim backend is asked for.

    from robo_hybrid.deploy import run_deploy
    run_deploy("policy.onnx", robot="sim", episodes=10, log_dir="runs/deploy")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # static names for type checkers; at runtime they load lazily via __getattr__
    from .bench import bench_latency
    from .config import DeployConfig
    from .loop import Controller, LoopConfig, TemporalEnsembler, sleep_until
    from .mock import Fault, MockRobot, mock_io_spec
    from .policy import CallablePolicy, ModelLoadError, OnnxPolicy, PolicyOutput
    from .robot import Observation, Robot, RobotDisconnected, RobotError, RobotLimits, RobotReadError, RobotWriteError
    from .run import run_deploy
    from .safety import EStop, SafetyConfig, SafetyFilter, stale_limit_s
    from .server_process import SimServerProcess
    from .sim_backend import MujocoRobot
    from .sim_server import SimServerConfig
    from .telemetry import Telemetry
    from .zmq_robot import ZmqRobot

_EXPORTS = {
    "OnnxPolicy": "policy", "ModelLoadError": "policy", "PolicyOutput": "policy", "CallablePolicy": "policy",
    "Robot": "robot", "Observation": "robot", "RobotError": "robot", "RobotReadError": "robot",
    "RobotWriteError": "robot", "RobotDisconnected": "robot",
    "MockRobot": "mock", "Fault": "mock", "mock_io_spec": "mock",
    "SafetyFilter": "safety", "SafetyConfig": "safety", "EStop": "safety", "stale_limit_s": "safety",
    "Controller": "loop", "LoopConfig": "loop", "TemporalEnsembler": "loop", "sleep_until": "loop",
    "Telemetry": "telemetry",
    "bench_latency": "bench",
    "run_deploy": "run",
    "ZmqRobot": "zmq_robot",
    "SimServerConfig": "sim_server", "SimServerProcess": "server_process", "RobotLimits": "robot",
    "DeployConfig": "config",
    "MujocoRobot": "sim_backend",
}  # fmt: skip

__all__ = [
    "CallablePolicy",
    "Controller",
    "DeployConfig",
    "EStop",
    "Fault",
    "LoopConfig",
    "MockRobot",
    "ModelLoadError",
    "MujocoRobot",
    "Observation",
    "OnnxPolicy",
    "PolicyOutput",
    "Robot",
    "RobotDisconnected",
    "RobotError",
    "RobotLimits",
    "RobotReadError",
    "RobotWriteError",
    "SafetyConfig",
    "SafetyFilter",
    "SimServerConfig",
    "SimServerProcess",
    "Telemetry",
    "TemporalEnsembler",
    "ZmqRobot",
    "bench_latency",
    "mock_io_spec",
    "run_deploy",
    "sleep_until",
    "stale_limit_s",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
