"""Loop benchmarks (measurements, not tests): real-time settings on/off under load, and a clean link run.

`bench_loop`: the controller loop on a MockRobot at `rate_hz`, first without and then with the real-time
settings (SCHED_FIFO, mlockall, one pinned CPU), both while `load` busy-loop processes started here compete
for the CPUs; p99 period jitter and wake-up lateness side by side.
`bench_link`: a clean controller session against a sim server (mock backend, CURVE, 100 Hz): how many
refused / stale / bogus messages the robot side reports, against the controller's latch threshold.
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import numpy as np

from .config import DeployConfig
from .loop import Controller, LoopConfig
from .mock import MockRobot, mock_io_spec
from .policy import CallablePolicy
from .realtime import realtime
from .safety import SafetyConfig


@contextlib.contextmanager
def busy_load(n: int) -> Iterator[list[subprocess.Popen]]:
    """`n` busy-loop processes (a fixed background load) for the block."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _reach_policy(spec):
    ee = list(spec.proprio_layout).index("ee.x_m")

    def act(obs):
        err = obs["goal"] - obs["proprio"][ee : ee + 3]
        return np.r_[np.clip(err / spec.max_ee_delta_m, -1, 1), 1.0].astype(np.float32)

    return CallablePolicy(spec, act)


def _flee_policy(spec):
    """Moves away from the goal (then along the workspace wall): a long session that never ends in success."""
    ee = list(spec.proprio_layout).index("ee.x_m")

    def act(obs):
        err = obs["goal"] - obs["proprio"][ee : ee + 3]
        return np.r_[-0.5 * np.sign(err), 1.0].astype(np.float32)

    return CallablePolicy(spec, act)


def loop_arm(seconds: float, rate_hz: float, mode: str, priority: int, cpu: int | None) -> dict:
    """One arm: `seconds` of the loop at `rate_hz` with realtime `mode`; p99 jitter / lateness in ms."""
    spec = mock_io_spec(image_size=32, control_rate_hz=rate_hz, episode_steps=0)
    robot = MockRobot(spec, terminate_on_success=False)
    robot.supports_reset = False
    cycles = int(seconds * rate_hz)
    ctl = Controller(_reach_policy(spec), robot, LoopConfig(max_steps=cycles, handle_signals=False),
                     SafetyConfig(estop_signal=False), )  # fmt: skip
    ctl.telemetry = type(ctl.telemetry)(ctl.period_s, capacity=cycles + 16)  # no growth inside the loop
    with realtime(mode, priority, cpu) as rep:
        res = ctl.run()
    tel = res["telemetry"]
    return {"realtime": rep.line(), "cycles": tel["cycles"], "jitter_p99_ms": tel["period_jitter_ms"]["p99"],
            "jitter_max_ms": tel["period_jitter_ms"]["max"], "wake_late_p99_ms": tel["wake_late_ms"]["p99"],
            "wake_late_max_ms": tel["wake_late_ms"]["max"], "overruns": tel["overruns"]}  # fmt: skip


def bench_loop(seconds: float = 20.0, rate_hz: float = 100.0, load: int = 2, priority: int = 80,
               cpu: int | None = None, mode: str = "require") -> dict:  # fmt: skip
    """Both arms under the same background load; prints a side-by-side table and returns the figures."""
    with busy_load(load):
        off = loop_arm(seconds, rate_hz, "off", priority, cpu)
        on = loop_arm(seconds, rate_hz, mode, priority, cpu)
    print(f"controller loop at {rate_hz:g} Hz, {seconds:g} s per arm, {load} busy-loop processes running")
    print(f"{'[ms]':<28}{'jitter p99':>12}{'jitter max':>12}{'late p99':>10}{'late max':>10}{'overruns':>10}")
    for name, r in (("realtime off", off), (f"realtime {mode}", on)):
        print(f"{name:<28}{r['jitter_p99_ms']:>12.3f}{r['jitter_max_ms']:>12.3f}{r['wake_late_p99_ms']:>10.3f}"
              f"{r['wake_late_max_ms']:>10.3f}{r['overruns']:>10d}")  # fmt: skip
    print(f"with: {on['realtime']}")
    return {"off": off, "on": on, "rate_hz": rate_hz, "seconds": seconds, "load": load}


def bench_link(seconds: float = 60.0, rate_hz: float = 100.0, load: int = 0) -> dict:
    """A clean controller session over the authenticated link; the robot side's refused / stale / bogus counts."""
    from .server_process import SimServerProcess
    from .sim_server import SimServerConfig
    from .zmq_robot import ZmqRobot

    defaults = DeployConfig()
    spec = dataclasses.replace(mock_io_spec(image_size=32, control_rate_hz=rate_hz, episode_steps=0),
                               extras={"gripper_open_m": 0.08})  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="robo_hybrid_link_") as tmp, busy_load(load):
        keys, ep = f"{tmp}/keys", f"ipc://{tmp}/sim"
        server = SimServerProcess(SimServerConfig(endpoint=ep, backend="mock", spec_json=spec.to_json(),
                                                  keys_dir=keys)).start()  # fmt: skip
        robot = ZmqRobot(ep, connect_timeout_s=30.0, keys_dir=keys, link_refused_max=defaults.link_refused_max,
                         link_window_s=defaults.link_window_s)  # fmt: skip
        try:
            ctl = Controller(_flee_policy(spec), robot, LoopConfig(max_steps=int(seconds * rate_hz)),
                             SafetyConfig(estop_signal=False))  # fmt: skip
            res = ctl.run()
            st = robot.stats()
        finally:
            robot.close()
            server.stop()
    out = {k: st[k] for k in ("refused", "stale", "bogus", "cmd_rx", "ticks", "overruns", "zap_refused")}
    out.update(latched=res["latched"], threshold=f"> {defaults.link_refused_max} in {defaults.link_window_s:g} s",
               cycles=res["telemetry"]["cycles"])  # fmt: skip
    print(f"clean link run, {seconds:g} s at {rate_hz:g} Hz ({load} busy loops): refused={out['refused']} "
          f"stale={out['stale']} bogus={out['bogus']} (latch threshold {out['threshold']}); commands applied "
          f"{out['cmd_rx']} / {out['cycles']} cycles; latched={out['latched']}")
    return out
