"""Learning-curve PNGs of a PPO run from its metrics.jsonl records: success, return, KL, entropy, value loss."""

from __future__ import annotations

from pathlib import Path

# file name -> [(record kind, metric, label)]
CURVES: dict[str, list[tuple[str, str, str]]] = {
    "success": [("eval", "success_rate", "held-out success (deterministic)"),
                ("train", "success_rate", "training rollouts (stochastic)")],
    "return": [("eval", "episode_return", "held-out return"), ("train", "episode_return", "training return")],
    "kl": [("train", "approx_kl", "approx KL(old || new)"), ("train", "bc_reg", "BC regularizer (KL to BC / NLL)")],
    "entropy": [("train", "entropy", "policy entropy"), ("train", "std", "policy std (normalized units)")],
    "value_loss": [("train", "value_loss", "value loss"), ("critic", "value_loss", "value loss"),
                   ("train", "value/explained_variance", "explained variance")],
}


def _series(records: list[dict], kind: str, metric: str) -> list[tuple[float, float]]:
    return [(r.get("env_steps", r["step"]), r[metric]) for r in records
            if r.get("kind") == kind and metric in r and r[metric] == r[metric]]  # drop NaN


def plot_learning_curves(records: list[dict], out_dir: str | Path, title: str = "") -> list[Path]:
    """One PNG per curve plus learning_curves.png with all panels; returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    fig_all, axes = plt.subplots(1, len(CURVES), figsize=(4.2 * len(CURVES), 3.4))
    for ax_all, (name, series) in zip(axes, CURVES.items(), strict=True):
        fig, ax = plt.subplots(figsize=(6, 4))
        for target in (ax, ax_all):
            for kind, metric, label in series:
                pts = _series(records, kind, metric)
                if pts:
                    target.plot(*zip(*pts, strict=True), marker="o" if len(pts) < 30 else None, label=label)
            target.set_xlabel("env steps")
            target.set_title(name.replace("_", " "))
            target.grid(alpha=0.3)
            if target.get_legend_handles_labels()[0]:
                target.legend(fontsize=7)
        ax.set_title(f"{title}: {name.replace('_', ' ')}" if title else name)
        written.append(_save(fig, out_dir / f"{name}.png"))
        plt.close(fig)
    fig_all.suptitle(title)
    fig_all.tight_layout()
    written.append(_save(fig_all, out_dir / "learning_curves.png"))
    plt.close(fig_all)
    return written


def _save(fig, path: Path) -> Path:
    from robo_hybrid.fileio import atomic_path  # noqa: PLC0415

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return path


def plot_ablation(curves: dict[str, list[tuple[float, float]]], out: str | Path, title: str = "") -> Path:
    """Held-out success against training wall-clock, one line per variant: {label: [(seconds, success)]}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.4))
    lowest = 1.0
    for label, points in curves.items():
        if points:
            xs, ys = zip(*sorted(points), strict=True)
            ax.plot([x / 60 for x in xs], ys, marker="o", ms=3, label=label)
            lowest = min(lowest, *ys)
    # the axis starts a little under the lowest point (curves of fine-tuned policies differ by a few points)
    bottom = max(-0.02, (int(lowest * 10) - 1) / 10)
    ax.set(xlabel="training wall-clock (min)", ylabel="held-out success", ylim=(bottom, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    fig.tight_layout()
    path = _save(fig, Path(out))
    plt.close(fig)
    return path
