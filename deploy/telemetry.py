"""Per-cycle timing telemetry: recorded into preallocated arrays in the loop, written to disk afterwards.

Nothing here does I/O inside the control loop; `write` (CSV per cycle + JSON summary) and `plot_histogram`
(PNG, matplotlib imported lazily) run after the loop has stopped.
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np

from robo_hybrid.fileio import atomic_write_json, atomic_write_text, atomic_write_with

# per-cycle columns, all seconds except the integer codes
TIMING_FIELDS = ("wake_late_s", "period_s", "read_s", "infer_s", "filter_s", "write_s", "cycle_s")
INT_FIELDS = ("episode", "step", "status", "skipped")
# status codes for the `status` column
STATUS_CODES = {"action": 0, "hold": 1, "latched": 2, "deadline_miss": 3, "end": 4}


def percentiles(x: np.ndarray) -> dict[str, float]:
    """p50 / p99 / p99.9 / max / mean of a sample, in the sample's units (NaNs ignored)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "p999": float("nan"), "max": float("nan")}
    p50, p99, p999 = np.percentile(x, [50, 99, 99.9])
    return {"n": int(x.size), "p50": float(p50), "p99": float(p99), "p999": float(p999), "max": float(x.max()),
            "mean": float(x.mean())}  # fmt: skip


def _ms(d: dict[str, float]) -> dict[str, float]:
    return {q: (v * 1e3 if q != "n" else v) for q, v in d.items()}


class Telemetry:
    """Records one row per control cycle; `summary()` gives percentiles and deadline-miss counts."""

    def __init__(self, period_s: float, capacity: int = 4096) -> None:
        self.period_s = period_s
        self._n = 0
        self._cap = max(int(capacity), 16)
        self._f = {k: np.full(self._cap, np.nan) for k in TIMING_FIELDS}
        self._i = {k: np.zeros(self._cap, dtype=np.int64) for k in INT_FIELDS}
        self.events: list[dict] = []  # rare events (latches, stops) with their time

    def __len__(self) -> int:
        return self._n

    def _grow(self) -> None:
        self._cap *= 2
        for d in (self._f, self._i):
            for k, v in d.items():
                new = np.full(self._cap, np.nan) if v.dtype.kind == "f" else np.zeros(self._cap, dtype=v.dtype)
                new[: self._n] = v[: self._n]
                d[k] = new

    def record(self, episode: int, step: int, status: str, timings: dict[str, float], skipped: int = 0) -> None:
        """Append one cycle (allocation-free until capacity doubles)."""
        if self._n == self._cap:
            self._grow()
        n = self._n
        for k, v in timings.items():
            self._f[k][n] = v
        self._i["episode"][n], self._i["step"][n] = episode, step
        self._i["status"][n], self._i["skipped"][n] = STATUS_CODES[status], skipped
        self._n += 1

    def event(self, t_s: float, kind: str, detail: str = "") -> None:
        """Record a rare event (not per cycle)."""
        self.events.append({"t_s": t_s, "kind": kind, "detail": detail})

    def column(self, name: str) -> np.ndarray:
        """One column of the recorded cycles."""
        src = self._f if name in self._f else self._i
        return src[name][: self._n].copy()

    def summary(self) -> dict:
        """Percentiles per timing field (in ms), deadline misses, overruns and status counts."""
        out: dict = {"cycles": self._n, "nominal_period_ms": self.period_s * 1e3}
        for k in TIMING_FIELDS:
            out[k[:-2] + "_ms"] = _ms(percentiles(self.column(k)))
        jitter = self.column("period_s") - self.period_s
        out["period_jitter_ms"] = _ms(percentiles(np.abs(jitter)))
        status = self.column("status")
        for name, code in STATUS_CODES.items():
            out[f"n_{name}"] = int((status == code).sum())
        out["deadline_misses"] = out["n_deadline_miss"]
        out["overruns"] = int((self.column("skipped") > 0).sum())
        out["skipped_periods"] = int(self.column("skipped").sum())
        out["events"] = list(self.events)
        return out

    def write(self, log_dir: str, prefix: str = "cycles") -> dict[str, str]:
        """Write `<prefix>.csv` (one row per cycle) and `<prefix>_summary.json`; returns the paths."""
        os.makedirs(log_dir, exist_ok=True)
        csv_path = os.path.join(log_dir, f"{prefix}.csv")
        cols = INT_FIELDS + TIMING_FIELDS
        data = [self.column(c) for c in cols]
        buf = io.StringIO(newline="")
        w = csv.writer(buf)
        w.writerow(cols)
        for i in range(self._n):
            w.writerow([int(d[i]) if c in INT_FIELDS else f"{d[i]:.7f}" for c, d in zip(cols, data, strict=True)])
        atomic_write_text(csv_path, buf.getvalue())  # a reader never sees half a log
        json_path = os.path.join(log_dir, f"{prefix}_summary.json")
        atomic_write_json(json_path, self.summary())
        return {"csv": csv_path, "summary": json_path}

    def plot_histogram(self, path: str) -> str | None:
        """PNG histogram of cycle time and wake lateness; returns None when matplotlib is not installed."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
        for ax, key in zip(axes, ("cycle_s", "infer_s", "wake_late_s"), strict=True):
            x = self.column(key)
            x = x[np.isfinite(x)] * 1e3
            if x.size:
                ax.hist(x, bins=60, color="tab:blue", alpha=0.8)
                for q, ls in ((50, "--"), (99, ":")):
                    ax.axvline(float(np.percentile(x, q)), color="k", ls=ls, label=f"p{q}")
            ax.set_title(key[:-2] + " [ms]")
            ax.set_yscale("log")
            ax.legend(fontsize=8)
        fig.suptitle(f"control loop @ {1.0 / self.period_s:g} Hz, {self._n} cycles")
        fig.tight_layout()
        atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"), suffix=".png")
        plt.close(fig)
        return path


def format_summary(s: dict) -> str:
    """A small readable table of a Telemetry summary."""
    lines = [f"cycles={s['cycles']} period={s['nominal_period_ms']:.2f} ms  overruns={s['overruns']} "
             f"(skipped {s['skipped_periods']})  deadline misses={s['deadline_misses']}  holds={s['n_hold']}",
             f"{'[ms]':<16}{'p50':>9}{'p99':>9}{'p99.9':>9}{'max':>9}"]  # fmt: skip
    for k in ("read_ms", "infer_ms", "filter_ms", "write_ms", "cycle_ms", "wake_late_ms", "period_jitter_ms"):
        d = s.get(k)
        if d and d.get("n"):
            lines.append(f"{k[:-3]:<16}{d['p50']:>9.3f}{d['p99']:>9.3f}{d['p999']:>9.3f}{d['max']:>9.3f}")
    return "\n".join(lines)
