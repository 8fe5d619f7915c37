"""Latency bench: batch-1 onnxruntime inference (pinned to one core) and the full controller cycle on a MockRobot.

A measurement, not a test: `python -m robo_hybrid.deploy.bench policy.onnx --iters 1000`.
Extra callables (e.g. the torch-eager policy, added by the training side) are timed side by side on the
same observations: `bench_latency(path, extra={"torch_eager": fn})` with fn(obs_dict) -> anything.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator

import numpy as np

from .loop import Controller, LoopConfig
from .mock import MockRobot
from .policy import OnnxPolicy
from .safety import SafetyConfig
from .telemetry import Telemetry, percentiles


@contextlib.contextmanager
def pinned_to_one_core(cpu: int | None = None) -> Iterator[int | None]:
    """Pin this process to one CPU (the last allowed one by default) and restore the old mask afterwards."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    old = os.sched_getaffinity(0)
    target = cpu if cpu is not None else max(old)
    try:
        os.sched_setaffinity(0, {target})
    except OSError:
        yield None
        return
    try:
        yield target
    finally:
        os.sched_setaffinity(0, old)


def random_obs(policy: OnnxPolicy, seed: int = 0) -> dict[str, np.ndarray]:
    """A random raw observation matching the policy's spec."""
    rng = np.random.default_rng(seed)
    out = {}
    for t in policy.spec.observations:
        if t.dtype == "uint8":
            out[t.name] = rng.integers(0, 256, size=t.shape, dtype=np.uint8)
        else:
            out[t.name] = rng.standard_normal(t.shape).astype(t.dtype) * 0.1
    return out


def time_callable(fn: Callable[[dict], object], obs: dict, iters: int, warmup: int = 20) -> dict[str, float]:
    """p50 / p99 / p99.9 / max (ms) of fn(obs) over `iters` calls after `warmup` calls."""
    for _ in range(warmup):
        fn(obs)
    t = np.empty(iters)
    for i in range(iters):
        t0 = time.perf_counter()
        fn(obs)
        t[i] = time.perf_counter() - t0
    return {k: (v * 1e3 if k != "n" else v) for k, v in percentiles(t).items()}


def bench_cycle(policy: OnnxPolicy, cycles: int = 200, rate_hz: float | None = None) -> dict:
    """Run the real controller loop against a MockRobot for `cycles` cycles; returns the telemetry summary."""
    rate = rate_hz or max(policy.spec.control_rate_hz, 100.0)
    # no task horizon and no end on success: one episode of exactly `cycles` cycles
    robot = MockRobot(dataclasses.replace(policy.spec, episode_steps=0), terminate_on_success=False)
    cfg = LoopConfig(rate_hz=rate, max_steps=cycles, handle_signals=False, max_consecutive_overruns=10**9)
    tel = Telemetry(1.0 / rate, capacity=cycles + 8)
    # workspace/frozen checks would hold when the mock's ee drifts out: the cycle cost is what is measured
    ctl = Controller(policy, robot, cfg, SafetyConfig(frozen_check=False, estop_signal=False), tel)
    ctl.startup()
    ctl.run_episode(0)
    return tel.summary()


def bench_latency(
    model_path: str,
    iters: int = 1000,
    cycles: int = 200,
    cycle_rate_hz: float | None = None,
    pin_cpu: int | None = None,
    extra: dict[str, Callable[[dict], object]] | None = None,
    verbose: bool = True,
) -> dict:
    """Batch-1 latency of the ONNX policy (and of `extra` callables) plus the full cycle; prints a table."""
    policy = OnnxPolicy(model_path)
    obs = random_obs(policy)
    results: dict = {"model": model_path, "iters": iters}
    with pinned_to_one_core(pin_cpu) as core:
        results["pinned_cpu"] = core
        results["onnxruntime"] = time_callable(policy, obs, iters)
        for name, fn in (extra or {}).items():
            results[name] = time_callable(fn, obs, iters)
        if cycles:
            results["cycle"] = bench_cycle(policy, cycles, cycle_rate_hz)
    if verbose:
        print(format_bench(results))
    return results


def format_bench(r: dict) -> str:
    """A table of bench_latency results."""
    lines = [f"latency, batch 1, pinned cpu={r.get('pinned_cpu')}, {r['iters']} iters: {r['model']}",
             f"{'[ms]':<22}{'p50':>9}{'p99':>9}{'p99.9':>9}{'max':>9}"]  # fmt: skip
    for name, d in r.items():
        if isinstance(d, dict) and "p50" in d:
            lines.append(f"{name:<22}{d['p50']:>9.3f}{d['p99']:>9.3f}{d['p999']:>9.3f}{d['max']:>9.3f}")
    if "cycle" in r:
        c = r["cycle"]
        lines.append(f"controller cycle on MockRobot at {1e3 / c['nominal_period_ms']:g} Hz, {c['cycles']} cycles:")
        for k in ("read_ms", "infer_ms", "filter_ms", "write_ms", "cycle_ms", "wake_late_ms", "period_jitter_ms"):
            d = c[k]
            if d.get("n"):
                lines.append(f"  {k[:-3]:<20}{d['p50']:>9.3f}{d['p99']:>9.3f}{d['p999']:>9.3f}{d['max']:>9.3f}")
        lines.append(f"  overruns={c['overruns']} deadline_misses={c['deadline_misses']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI for the bench."""
    p = argparse.ArgumentParser(description="batch-1 onnxruntime + controller-cycle latency")
    p.add_argument("model")
    p.add_argument("--iters", type=int, default=1000)
    p.add_argument("--cycles", type=int, default=500)
    p.add_argument("--cycle-rate-hz", type=float, default=None)
    p.add_argument("--cpu", type=int, default=None)
    a = p.parse_args(argv)
    bench_latency(a.model, a.iters, a.cycles, a.cycle_rate_hz, a.cpu)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
