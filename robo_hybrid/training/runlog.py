"""Run logs shared by BC and PPO: metrics.jsonl (one JSON object per record), TensorBoard, PNG curves."""

from __future__ import annotations

import json
from pathlib import Path

from robo_hybrid.fileio import atomic_path, atomic_write_text


class RunLog:
    """metrics.jsonl (one JSON object per record, `kind` = train / val / eval) + TensorBoard + PNG curves."""

    def __init__(self, run_dir: Path, start_step: int, tensorboard: bool = True) -> None:
        self.run_dir, self.path = run_dir, run_dir / "metrics.jsonl"
        self.records: list[dict] = []
        if self.path.is_file():  # resume: drop what came after the checkpoint we restart from
            self.records = [r for r in _read_jsonl(self.path) if r["step"] <= start_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.records))
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=start_step if start_step > 0 else None)

    def add(self, kind: str, step: int, metrics: dict[str, float]) -> None:
        """Append a record and write its scalars to TensorBoard under `<kind>/<name>`."""
        rec = {"kind": kind, "step": step, **{k: float(v) for k, v in metrics.items()}}
        self.records.append(rec)
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.writer is not None:
            for k, v in metrics.items():
                self.writer.add_scalar(f"{kind}/{k}", float(v), step)

    def plot(self) -> None:
        """Write loss.png (train / val) and, when evaluations exist, success.png; atomically."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        curves = {
            "loss.png": [("train", "mse", "train MSE"), ("val", "mse", "val MSE"), ("train", "chunk_l1", "chunk L1")],
            "success.png": [("eval", "success_rate", "success rate")],
        }
        for name, series in curves.items():
            lines = [(lbl, [(r["step"], r[m]) for r in self.records if r["kind"] == k and m in r])
                     for k, m, lbl in series]
            lines = [(lbl, pts) for lbl, pts in lines if pts]
            if not lines:
                continue
            fig, ax = plt.subplots(figsize=(6, 4))
            for lbl, pts in lines:
                ax.plot(*zip(*pts, strict=True), marker="o" if len(pts) < 30 else None, label=lbl)
            ax.set_xlabel("gradient step")
            ax.set_yscale("log" if name == "loss.png" else "linear")
            ax.set_title(f"{self.run_dir.name}: {name[:-4]}")
            ax.grid(alpha=0.3)
            ax.legend()
            with atomic_path(self.run_dir / name, suffix=".png") as tmp:
                fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
            plt.close(fig)

    def close(self) -> None:
        """Flush and close TensorBoard."""
        if self.writer is not None:
            self.writer.close()


def _read_jsonl(path: Path) -> list[dict]:
    """Records of a JSON-lines file; a line cut short by a kill is skipped."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
