"""Wall clocks of `bench learn`: a training budget that evaluations do not count against, and the schedule of
held-out evaluations along it (every system evaluated by the same Evaluator on the same seeds)."""

from __future__ import annotations

import contextlib
import math
import time


class WallClock:
    """Training time of one system against its budget; time spent inside `paused()` (evaluation) does not count."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = float(budget_s)
        self._t0: float | None = None
        self._paused_s, self._pause_t0, self._depth = 0.0, 0.0, 0

    def start(self) -> None:
        """Start (or restart) the clock at 0."""
        self._t0, self._paused_s, self._depth = time.perf_counter(), 0.0, 0

    def elapsed(self) -> float:
        """Seconds of counted time since start()."""
        if self._t0 is None:
            return 0.0
        now = self._pause_t0 if self._depth else time.perf_counter()
        return now - self._t0 - self._paused_s

    def expired(self) -> bool:
        """The budget is spent."""
        return self.elapsed() >= self.budget_s

    @contextlib.contextmanager
    def paused(self):
        """Stop counting inside the block (re-entrant)."""
        if self._depth == 0:
            self._pause_t0 = time.perf_counter()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._paused_s += time.perf_counter() - self._pause_t0




class EvalSchedule:
    """Held-out evaluations of one system every `every_s` of its training time, with its clock paused."""

    def __init__(self, clock: WallClock, evaluator, every_s: float, label: str) -> None:
        self.clock, self.evaluator, self.every_s, self.label = clock, evaluator, float(every_s), label
        self.points: list[dict] = []
        self._next_s, self._last_t = self.every_s, -1.0

    def due(self) -> bool:
        """A checkpoint time has been passed since the last evaluation."""
        return self.clock.elapsed() >= self._next_s

    def needs_final(self) -> bool:
        """No evaluation at the end of the budget yet (the loops train until the budget is spent, so an evaluation
        at or after the budget is the final one)."""
        return self._last_t < min(self.clock.budget_s, self.clock.elapsed())

    def evaluate(self, act, history: int = 1, keys: tuple[str, ...] = (), phase: str = "") -> dict[str, float]:
        """Evaluate now (clock paused), record and print the point; returns the metrics."""
        with self.clock.paused():
            t, t0 = self.clock.elapsed(), time.perf_counter()
            m = self.evaluator.run(act, history, keys).metrics()  # one thread while it runs (Evaluator.run)
            self._last_t = t
            point = {"t_s": round(t, 2), **m, "episodes": len(self.evaluator.seeds),
                     "eval_s": round(time.perf_counter() - t0, 2), "phase": phase}
            self.points.append(point)
            self._next_s = (math.floor(t / self.every_s) + 1) * self.every_s
            lo, hi, n = m["success_ci95_low"], m["success_ci95_high"], len(self.evaluator.seeds)
            print(f"[bench learn] {self.label:<14} t={t:7.0f} s  success {m['success_rate']:6.1%} "
                  f"[{lo:.0%}, {hi:.0%}] n={n}  {phase}  "
                  f"(eval {point['eval_s']:.0f} s, not counted)", flush=True)
        return m

    def evaluate_policy(self, policy, phase: str = "") -> dict[str, float]:
        """Evaluate one of our MultimodalPolicy objects."""
        from robo_hybrid.evaluation import policy_act_fn  # noqa: PLC0415

        return self.evaluate(policy_act_fn(policy), policy.cfg.history, tuple(policy.spec.policy_keys), phase)

    def finish(self, act, history: int = 1, keys: tuple[str, ...] = (), phase: str = "") -> None:
        """The evaluation at the end of the budget (skipped when nothing was trained since the last one)."""
        if self.needs_final():
            self.evaluate(act, history, keys, phase)
