"""The fixed-rate controller loop: read -> check -> infer -> filter -> write, on absolute monotonic deadlines.

Timing rules (see docs/faults.md): deadlines are t0 + k * period on time.monotonic (never the wall clock);
the loop sleeps until ~spin_s before the deadline, then spins; when a cycle overruns it skips to the next
period in the future (never a catch-up burst) and counts it; repeated overruns or an inference time-out
end in a controlled stop. An action that is ready after the cycle's deadline is dropped for a hold.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from robo_hybrid.spec import SpecMismatchError

from .config import check_rate_hz
from .policy import Policy, PolicyOutput
from .robot import Observation, Robot, RobotError
from .safety import SafetyConfig, SafetyFilter
from .telemetry import Telemetry

now = time.monotonic  # the one clock of the runtime: CLOCK_MONOTONIC, shared by processes on this machine
LATCHING_ENDS = ("estop", "policy_error", "hardware_error", "overrun_stop", "inference_timeout")


def sleep_until(deadline_s: float, spin_s: float = 0.0003) -> float:
    """Sleep until ~spin_s before `deadline_s` (monotonic), spin the rest; returns the wake time."""
    remaining = deadline_s - now()
    if remaining > spin_s:
        time.sleep(remaining - spin_s)  # wakes ~0.2 ms late at p99 on a stock kernel, hence the spin margin
    t = now()
    while t < deadline_s:
        t = now()
    return t


@dataclass
class LoopConfig:
    """Controller loop settings."""

    rate_hz: float | None = None
    """Loop rate; None = the model's spec rate. Another rate changes what one action step means: warned."""
    max_steps: int = 0
    """Cycles per episode; 0 = spec.episode_steps (or 250 when the spec has none)."""
    spin_s: float = 0.0003
    """Busy-wait this long before each deadline instead of sleeping (sleep wakes late by ~0.2 ms)."""
    deadline_fraction: float = 0.9
    """An action not ready within this fraction of the period after the scheduled wake is dropped (hold)."""
    max_consecutive_overruns: int = 5
    """This many overrunning cycles in a row -> controlled stop."""
    inference_timeout_s: float | None = None
    """One inference longer than this -> controlled stop; None = max(3 periods, 50 ms) (a hang, not a hiccup)."""
    temporal_ensemble_m: float | None = None
    """ACT temporal ensembling of action chunks with weights exp(-m * i), i = 0 the oldest; None = off."""
    seed: int = 0
    """Episode e resets the simulator with seed + e."""
    handle_signals: bool = True
    """Install SIGINT/SIGTERM (hold, then exit cleanly) and SIGUSR1 (e-stop) handlers when in the main thread."""
    allow_other_task: bool = False
    """Run a model whose spec names another task than the robot's (refused by default)."""

    def __post_init__(self) -> None:
        check_rate_hz(self.rate_hz, "loop rate_hz")
        if self.max_steps < 0:
            raise ValueError(f"loop max_steps={self.max_steps}: must be >= 0 (0 = the spec's episode length)")
        if not 0.1 <= self.deadline_fraction <= 1.0:
            raise ValueError("loop deadline_fraction must be within 0.1..1.0")
        if self.max_consecutive_overruns < 1:
            raise ValueError("loop max_consecutive_overruns must be >= 1")


class TemporalEnsembler:
    """ACT temporal ensembling: average every stored chunk's prediction for now, weights exp(-m * i), oldest i=0."""

    def __init__(self, horizon: int, m: float) -> None:
        self.horizon, self.m = int(horizon), float(m)
        self._chunks: list[np.ndarray] = []

    def reset(self) -> None:
        """Forget stored chunks (after a hold: they predicted motion that did not happen)."""
        self._chunks.clear()

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        """Add the newest chunk (H, A) and return the ensembled action (A,) for this step."""
        self._chunks.append(np.asarray(chunk, dtype=np.float64))
        if len(self._chunks) > self.horizon:
            self._chunks.pop(0)
        n = len(self._chunks)
        preds = np.stack([c[n - 1 - i] for i, c in enumerate(self._chunks)])  # (n, A); chunk i is n-1-i steps old
        w = np.exp(-self.m * np.arange(n))  # w_0 = oldest prediction (ACT, Zhao et al. 2023)
        return (w[:, None] * preds).sum(0).astype(np.float32) / np.float32(w.sum())


@dataclass
class EpisodeResult:
    """Outcome of one episode."""

    end: str  # "done" | "max_steps" | "shutdown" | one of LATCHING_ENDS | "latched"
    steps: int
    success: bool
    detail: str = ""


@dataclass
class _Cycle:
    """Scratch state of one cycle (timings and outcome)."""

    wake: float
    timings: dict[str, float] = field(default_factory=dict)
    status: str = "action"
    end: str | None = None
    success: bool = False


class Controller:
    """Runs a policy on a robot at a fixed rate behind the safety filter, with telemetry."""

    def __init__(
        self,
        policy: Policy,
        robot: Robot,
        config: LoopConfig | None = None,
        safety: SafetyConfig | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.policy, self.robot = policy, robot
        self.cfg = config or LoopConfig()
        self.spec = policy.spec
        self.period_s = 1.0 / (self.cfg.rate_hz or self.spec.control_rate_hz)
        self.safety = SafetyFilter(self.spec, safety, self.period_s)
        self.telemetry = telemetry if telemetry is not None else Telemetry(self.period_s)
        self.max_steps = self.cfg.max_steps or self.spec.episode_steps or 250
        self.inference_timeout_s = self.cfg.inference_timeout_s or max(3.0 * self.period_s, 0.05)
        horizon = getattr(policy, "chunk_horizon", 0)
        m = self.cfg.temporal_ensemble_m
        self.ensembler = TemporalEnsembler(horizon, m) if (m is not None and horizon) else None
        self._shutdown = False
        self._started = False
        self.warnings: list[str] = []

    # ----- start-up -----
    def startup(self) -> None:
        """Connect and check the model's spec against the robot's before any command; raises SpecMismatchError."""
        self.robot.connect()
        check_rate = self.cfg.rate_hz is None
        self.spec.require_compatible(self.robot.io_spec, what="robot", check_rate=check_rate,
                                     check_task=not self.cfg.allow_other_task)  # fmt: skip
        self.safety.set_robot_limits(self.robot.limits)  # the robot's own limits, intersected with the model's
        if not check_rate and not math.isclose(1.0 / self.period_s, self.spec.control_rate_hz):
            self.warnings.append(
                f"loop rate {1.0 / self.period_s:g} Hz differs from the model's {self.spec.control_rate_hz:g} Hz: "
                "each action is a per-step end-effector delta, so the arm moves at a different speed"
            )
        self._started = True

    def rearm(self) -> None:
        """Explicit re-arm after a latch (e-stop, fault, stop): reconnect, read the measured state, clear the latch."""
        self.robot.connect()
        self.safety.rearm(self.robot.read(), now())
        if self.ensembler is not None:
            self.ensembler.reset()

    # ----- episodes -----
    def run(self, episodes: int = 1) -> dict:
        """Run `episodes` episodes (reset between them when the robot can); stop early on a latch or signal."""
        if not self._started:
            self.startup()
        results: list[EpisodeResult] = []
        with _Signals(self) if self.cfg.handle_signals else _NoSignals():
            try:
                for e in range(episodes):
                    results.append(self.run_episode(e))
                    if results[-1].end in LATCHING_ENDS + ("shutdown", "latched"):
                        break
            except BaseException:  # a bug or an interrupt outside the handlers: never leave a motion command
                self._safe_hold()
                raise
            if results and results[-1].end == "max_steps":
                self._safe_hold()  # leave the robot holding, not on its last motion command
        n_ok = sum(r.success for r in results)
        return {
            "episodes": len(results),
            "successes": n_ok,
            "success_rate": n_ok / max(len(results), 1),
            "ends": [r.end for r in results],
            "results": results,
            "latched": self.safety.latched,
            "counters": dict(self.safety.counters),
            "telemetry": self.telemetry.summary(),
            "warnings": list(self.warnings),
        }

    def run_episode(self, episode: int = 0) -> EpisodeResult:
        """One episode on absolute deadlines; returns how it ended."""
        if self.safety.estop.poll():
            self.safety.latch("estop")
        if self.safety.latched:
            return EpisodeResult("latched", 0, False, f"latched ({self.safety.latched}); call rearm() first")
        if self.robot.supports_reset:
            try:
                self.robot.reset(seed=self.cfg.seed + episode)
            except RobotError as e:
                self._hardware_fault(f"reset: {e}")
                return EpisodeResult("hardware_error", 0, False, str(e))
        self.safety.reset_motion()
        if self.ensembler is not None:
            self.ensembler.reset()
        if callable(getattr(self.policy, "reset", None)):
            self.policy.reset()  # type: ignore[attr-defined]  # observation history starts empty
        T, t0 = self.period_s, now()
        k, step, success, consecutive, prev_wake = 0, 0, False, 0, math.nan
        while step < self.max_steps:
            wake = sleep_until(t0 + k * T, self.cfg.spin_s)
            cyc = _Cycle(wake, {"wake_late_s": wake - (t0 + k * T), "period_s": wake - prev_wake})
            prev_wake = wake
            self._cycle(cyc, t0 + k * T)
            success = success or cyc.success
            end_t = now()
            cyc.timings["cycle_s"] = end_t - wake
            k_next = k + 1
            if end_t > t0 + k_next * T:  # overrun: skip to the next period in the future, never burst
                k_next = int(math.floor((end_t - t0) / T)) + 1
                consecutive += 1
            else:
                consecutive = 0
            self.telemetry.record(episode, step, cyc.status, cyc.timings, skipped=k_next - k - 1)
            step, k = step + 1, k_next
            if cyc.end is None and consecutive >= self.cfg.max_consecutive_overruns:
                self._controlled_stop("overrun_stop")
                cyc.end = "overrun_stop"
            if cyc.end is not None:
                return EpisodeResult(cyc.end, step, success, self.safety.latched or "")
        return EpisodeResult("max_steps", step, success)

    # ----- one cycle -----
    def _cycle(self, cyc: _Cycle, t_sched: float) -> None:
        """read -> check -> infer -> filter -> write, filling `cyc` with timings and the outcome."""
        if self._shutdown:
            self._safe_hold()
            cyc.end, cyc.status = "shutdown", "hold"
            return
        if self.safety.estop.poll():
            self._estop()
            cyc.end, cyc.status = "estop", "latched"
            return
        try:
            obs = self.robot.read()
        except RobotError as e:
            self._hardware_fault(f"read: {e}")
            cyc.end, cyc.status = "hardware_error", "latched"
            return
        t_read = now()
        cyc.timings["read_s"] = t_read - cyc.wake
        cyc.success = bool(obs.info.get("is_success", False))
        if obs.info.get("terminated") or obs.info.get("truncated"):
            cyc.end, cyc.status = "done", "end"  # the simulator ended the episode: send nothing more
            return
        cmd, is_hold = self._decide(cyc, obs, t_read, t_sched)
        if cyc.end is not None:
            return
        t_w = now()
        try:
            if is_hold:
                self.robot.hold()
            else:
                self.robot.write(cmd)
        except RobotError as e:
            self._hardware_fault(f"write: {e}")
            cyc.end, cyc.status = "hardware_error", "latched"
        cyc.timings["write_s"] = now() - t_w

    def _decide(self, cyc: _Cycle, obs: Observation, t_read: float, t_sched: float) -> tuple[np.ndarray, bool]:
        """The command for this cycle: a filtered policy action, or a hold with its reason counted."""
        problem = self.safety.check_obs(obs, t_read)
        if problem is not None:
            return self._hold(cyc, problem)
        try:
            out: PolicyOutput = self.policy.infer(obs.arrays)
        except SpecMismatchError:
            return self._hold(cyc, "bad_obs")
        except Exception as e:  # any policy failure: hold, latch, wait for an explicit re-arm
            self.telemetry.event(now(), "policy_error", repr(e))
            self.safety.latch("policy_error")
            self._safe_hold()
            cyc.end, cyc.status = "policy_error", "latched"
            return self._hold(cyc, "policy_error")
        t_inf = now()
        cyc.timings["infer_s"] = t_inf - t_read
        if t_inf - t_read > self.inference_timeout_s:
            self.telemetry.event(t_inf, "inference_timeout", f"{(t_inf - t_read) * 1e3:.1f} ms")
            self._controlled_stop("inference_timeout")
            cyc.end, cyc.status = "inference_timeout", "latched"
            return self._hold(cyc, "inference_timeout")
        if t_inf > t_sched + self.cfg.deadline_fraction * self.period_s:
            cmd, is_hold = self._hold(cyc, "deadline_miss")
            cyc.status = "deadline_miss"
            return cmd, is_hold
        action = out.action
        if self.ensembler is not None and out.chunk is not None:
            action = self.ensembler(out.chunk)
        cmd, is_hold = self.safety.filter(action, obs)
        cyc.timings["filter_s"] = now() - t_inf
        if is_hold:
            cyc.status = "hold"
            if self.ensembler is not None:
                self.ensembler.reset()
        return cmd, is_hold

    def _hold(self, cyc: _Cycle, reason: str) -> tuple[np.ndarray, bool]:
        cyc.status = "hold"
        if self.ensembler is not None:
            self.ensembler.reset()
        return self.safety.hold(reason), True

    # ----- stops -----
    def _safe_hold(self) -> None:
        """Best-effort hold (the link may be the thing that failed)."""
        try:
            self.robot.hold()
        except RobotError as e:
            self.telemetry.event(now(), "hold_failed", repr(e))

    def _controlled_stop(self, reason: str) -> None:
        """Hold, then stop the robot, then latch."""
        self._safe_hold()
        try:
            self.robot.stop()
        except RobotError as e:
            self.telemetry.event(now(), "stop_failed", repr(e))
        self.safety.latch(reason)
        self.telemetry.event(now(), "controlled_stop", reason)

    def _estop(self) -> None:
        """E-stop: stop the robot and latch until an explicit re-arm."""
        try:
            self.robot.stop()
        except RobotError as e:
            self.telemetry.event(now(), "stop_failed", repr(e))
        self.safety.latch("estop")
        self.safety.counters["estop"] += 1
        self.telemetry.event(now(), "estop", self.safety.estop.reason)

    def _hardware_fault(self, detail: str) -> None:
        """Read/write error: go inactive, send nothing more until re-armed (the robot's watchdog stops it)."""
        self.safety.latch("hardware_error")
        self.safety.counters["hardware_error"] += 1
        self.telemetry.event(now(), "hardware_error", detail)

    def request_shutdown(self) -> None:
        """Ask the loop to hold and return at the next cycle (what SIGINT / SIGTERM do)."""
        self._shutdown = True


class _NoSignals:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


class _Signals:
    """SIGINT/SIGTERM -> hold then exit cleanly; SIGUSR1 -> e-stop. Main thread only; restores old handlers."""

    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self.prev: dict[int, object] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.prev[sig] = signal.signal(sig, lambda s, f: self.ctl.request_shutdown())
            self.ctl.safety.estop.install()
        return self

    def __exit__(self, *exc) -> None:
        for sig, h in self.prev.items():
            signal.signal(sig, h)  # type: ignore[arg-type]
        self.ctl.safety.estop.uninstall()
