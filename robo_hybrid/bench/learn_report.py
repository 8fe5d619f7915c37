"""`bench learn` results: time to a success threshold, the summary table, per-checkpoint curves and their PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robo_hybrid.fileio import atomic_path

THRESHOLDS = (0.5, 0.9)


def time_to(points: list[dict], threshold: float) -> float | None:
    """Training time of the first checkpoint with success >= threshold (None: not reached)."""
    for p in sorted(points, key=lambda p: p["t_s"]):
        if p["success_rate"] >= threshold - 1e-9:
            return float(p["t_s"])
    return None


def summarize(curves: dict[str, dict[int, list[dict]]]) -> list[dict]:
    """One row per system: time to each threshold (mean over seeds, None unless every seed got there), final success."""
    rows = []
    for system, by_seed in curves.items():
        runs = [pts for pts in by_seed.values() if pts]
        if not runs:
            continue
        row: dict[str, Any] = {"system": system, "seeds": len(runs)}
        for th in THRESHOLDS:
            ts = [time_to(pts, th) for pts in runs]
            got = [t for t in ts if t is not None]
            key = f"time_to_{round(th * 100)}_s"
            row[key] = sum(got) / len(got) if len(got) == len(ts) else None
            row[f"{key}_per_seed"], row[f"reached_{round(th * 100)}"] = ts, len(got)
        finals = [pts[-1]["success_rate"] for pts in runs]
        row["final_success"], row["final_success_per_seed"] = sum(finals) / len(finals), finals
        rows.append(row)
    return rows


def winners(rows: list[dict]) -> dict[str, str | None]:
    """Best system per column (fastest time to X, highest final success); ties joined by '='; None when nobody."""
    out: dict[str, str | None] = {}
    for th in THRESHOLDS:
        key = f"time_to_{round(th * 100)}_s"
        times = [r[key] for r in rows if r[key] is not None]
        out[key] = "=".join(r["system"] for r in rows if r[key] is not None and r[key] == min(times)) if times else None
    best = max((r["final_success"] for r in rows), default=0.0)
    out["final_success"] = "=".join(r["system"] for r in rows if r["final_success"] == best) if best > 0 else None
    return out


def format_learn_table(rows: list[dict], budget_s: float) -> str:
    """The README table: time to 50% / 90% success and the final success at the budget."""

    def cell(row: dict, th: float) -> str:
        pct = round(th * 100)
        t = row[f"time_to_{pct}_s"]
        if t is not None:
            return f"{t:.0f} s"
        k = row[f"reached_{pct}"]
        return "not reached" + (f" ({k}/{row['seeds']} seeds)" if k else "")

    lines = [f"{'system':<10}{'time to 50%':>24}{'time to 90%':>24}{f'success at {budget_s:.0f} s':>22}"]
    for r in rows:
        lines.append(f"{r['system']:<10}{cell(r, 0.5):>24}{cell(r, 0.9):>24}{r['final_success']:>22.1%}")
    w = winners(rows)
    lines.append("best: " + ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} -> {v or 'nobody'}"
                                      for k, v in w.items()))
    return "\n".join(lines)


def format_curves(curves: dict[str, dict[int, list[dict]]]) -> str:
    """Success vs training wall-clock, one line per system and seed."""
    lines = ["success vs training wall-clock (evaluation time excluded):"]
    for system, by_seed in curves.items():
        for seed, pts in by_seed.items():
            cells = "  ".join(f"{p['t_s']:.0f}s:{p['success_rate']:.0%}" for p in pts)
            lines.append(f"  {system:<8} s{seed}  {cells}")
    return "\n".join(lines)


def plot_curves(curves: dict[str, dict[int, list[dict]]], path: str | Path, title: str) -> None:
    """One PNG: success vs training wall-clock, one line (colour) per system, one line style per seed."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = ["-", "--", ":", "-."]
    last = max((p["t_s"] for by_seed in curves.values() for pts in by_seed.values() for p in pts), default=0.0)
    unit, scale = ("min", 60.0) if last >= 600 else ("s", 1.0)
    for i, (system, by_seed) in enumerate(curves.items()):
        for j, pts in enumerate(by_seed.values()):
            if pts:
                ax.plot([p["t_s"] / scale for p in pts], [p["success_rate"] for p in pts], styles[j % 4], marker="o",
                        ms=3, color=f"C{i}", label=system if j == 0 else None)
    for th in THRESHOLDS:
        ax.axhline(th, color="grey", lw=0.6, ls=":")
    ax.set(xlabel=f"training wall-clock [{unit}] (evaluation excluded)", ylabel="held-out success rate",
           ylim=(-0.03, 1.03), title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
