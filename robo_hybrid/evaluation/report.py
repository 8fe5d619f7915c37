"""The one evaluation report: success with a 95% Wilson interval, mean return and length, the seeds, JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from robo_hybrid.fileio import atomic_write_json
from robo_hybrid.stats import wilson_interval


@dataclass
class EvalReport:
    """Summary of one evaluation: every command and trainer reports with this type and these names."""

    task: str
    episodes: int
    successes: int
    success_rate: float
    ci95_low: float
    ci95_high: float
    episode_return: float
    """Mean undiscounted return per episode."""
    episode_length: float
    """Mean episode length in control steps."""
    seeds: list[int] = field(default_factory=list)
    wall_s: float = 0.0
    video: str | None = None
    action_noise: float = 0.0
    """Std of the noise added to the mean action (normalized units); 0: the mean action."""

    @classmethod
    def from_episodes(cls, task: str, seeds: list[int], successes: list[bool], returns: list[float],
                      lengths: list[int], wall_s: float = 0.0) -> EvalReport:
        """Aggregate per-episode outcomes (in seed order)."""
        n = len(successes)
        wins = int(sum(bool(s) for s in successes))
        lo, hi = wilson_interval(wins, n)
        return cls(task, n, wins, wins / max(1, n), lo, hi, sum(returns) / max(1, n), sum(lengths) / max(1, n),
                   list(seeds), wall_s)

    def metrics(self) -> dict[str, float]:
        """The scalars trainers log (metrics.jsonl, TensorBoard)."""
        return {"success_rate": self.success_rate, "success_ci95_low": self.ci95_low,
                "success_ci95_high": self.ci95_high, "episode_return": self.episode_return,
                "episode_length": self.episode_length}

    def line(self) -> str:
        """One human-readable line."""
        return (f"{self.task}: success {self.success_rate:.1%} [{self.ci95_low:.1%}, {self.ci95_high:.1%}] "
                f"(95% Wilson, n={self.episodes}, seeds {self.seeds[0] if self.seeds else '-'}+), "
                f"mean length {self.episode_length:.1f}, mean return {self.episode_return:.2f}"
                + (f", action noise {self.action_noise:g}" if self.action_noise else ""))

    def write_json(self, path: str | Path) -> None:
        """The report as JSON, written atomically."""
        atomic_write_json(path, asdict(self))
