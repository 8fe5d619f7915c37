"""Vectorized rollouts: env construction (workers render), observation history, step-info parsing, episodes.

Training envs use gymnasium's SAME_STEP autoreset: when step t ends an episode the returned observation already
belongs to the next episode, and the last observation of the finished one is in `info["final_obs"]` (needed to
bootstrap truncated episodes). Evaluation envs use DISABLED autoreset and are reset one by one onto fixed seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robo_hybrid.envs.vector import HistoryStacker, make_vector_env  # noqa: F401  (re-exported)


def stack_final_obs(info: dict, done: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Indices of the envs whose episode ended and their final observations stacked (M, ...)."""
    idx = np.flatnonzero(done)
    if len(idx) == 0:
        return idx, {}
    finals = info["final_obs"]
    return idx, {k: np.stack([finals[i][k] for i in idx]) for k in finals[idx[0]]}


def step_outcome(info: dict, done: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-env success flag and named reward terms of the step just taken (from final_info where it ended)."""
    n = len(done)
    success = np.asarray(info.get("is_success", np.zeros(n, bool)), bool).copy()
    terms = {k: np.asarray(v, np.float64).copy() for k, v in info.get("reward_terms", {}).items()
             if not k.startswith("_")}
    final = info.get("final_info")
    if final is not None and np.any(done):
        success[done] = np.asarray(final["is_success"], bool)[done]
        for k, v in final.get("reward_terms", {}).items():
            if k.startswith("_"):
                continue
            terms.setdefault(k, np.zeros(n))[done] = np.asarray(v, np.float64)[done]
    return success, terms


@dataclass
class EpisodeTracker:
    """Running return / length per env and the finished episodes' statistics since the last `pop`."""

    num_envs: int
    returns: np.ndarray = field(init=False)
    lengths: np.ndarray = field(init=False)
    succeeded: np.ndarray = field(init=False)
    finished: list[tuple[float, int, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.returns = np.zeros(self.num_envs)
        self.lengths = np.zeros(self.num_envs, int)
        self.succeeded = np.zeros(self.num_envs, bool)

    def step(self, rewards: np.ndarray, done: np.ndarray, success: np.ndarray) -> None:
        """Accumulate one step; record the episodes that ended (successful if any step was)."""
        self.returns += rewards
        self.lengths += 1
        self.succeeded |= np.asarray(success, bool)
        for i in np.flatnonzero(done):
            self.finished.append((float(self.returns[i]), int(self.lengths[i]), bool(self.succeeded[i])))
            self.returns[i], self.lengths[i], self.succeeded[i] = 0.0, 0, False

    def pop(self) -> dict[str, float]:
        """Mean return, length and success of the finished episodes (empty dict if none), then forget them."""
        return pop_episodes([self])


def pop_episodes(trackers: list[EpisodeTracker]) -> dict[str, float]:
    """Mean return, length and success of the episodes the trackers finished (empty dict if none); forget them."""
    finished = [e for t in trackers for e in t.finished]
    for t in trackers:
        t.finished = []
    if not finished:
        return {}
    r, n, s = (np.asarray(x, float) for x in zip(*finished, strict=True))
    return {"episode_return": r.mean(), "episode_length": n.mean(), "success_rate": s.mean(),
            "episodes": float(len(r))}

