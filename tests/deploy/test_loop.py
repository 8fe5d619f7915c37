"""The controller loop's temporal ensembling (ACT): a chunk policy's commands are the weighted mean of every stored
chunk's prediction for the current step, computed here by hand; without ensembling they are the chunk's first row."""

from __future__ import annotations

import numpy as np
import pytest

from robo_hybrid.deploy.loop import Controller, LoopConfig
from robo_hybrid.deploy.mock import MockRobot
from robo_hybrid.deploy.policy import PolicyOutput
from robo_hybrid.deploy.safety import SafetyConfig

H, M, STEPS = 3, 0.5, 6


class ChunkPolicy:
    """Step s predicts 0.01 * (s + 2k) on x for step s + k: the chunks disagree about every step (small values: no
    clamp or rate limit rewrites them)."""

    chunk_horizon = H

    def __init__(self, spec) -> None:
        self.spec, self.t = spec, 0

    def infer(self, obs: dict[str, np.ndarray]) -> PolicyOutput:
        chunk = np.zeros((H, 4), np.float32)
        chunk[:, 0] = 0.01 * (self.t + 2 * np.arange(H))
        self.t += 1
        return PolicyOutput(chunk[0].copy(), chunk)


def _expected_x(t: int) -> float:
    # predictions for step t came from the chunks of steps t-k (row k), k < H; weight exp(-M * i), i = 0 the oldest
    preds = [0.01 * ((t - k) + 2 * k) for k in range(min(t, H - 1), -1, -1)]  # oldest first
    w = np.exp(-M * np.arange(len(preds)))
    return float((w * np.array(preds)).sum() / w.sum())


@pytest.mark.parametrize("ensemble", [True, False])
def test_temporal_ensembling_averages_the_stored_chunks(spec100, ensemble):
    robot = MockRobot(spec100)
    cfg = LoopConfig(max_steps=STEPS, temporal_ensemble_m=M if ensemble else None)
    ctl = Controller(ChunkPolicy(spec100), robot, cfg, SafetyConfig(estop_signal=False))
    res = ctl.run()
    assert res["ends"] == ["max_steps"] and res["counters"].get("holds", 0) == 0
    x = robot.actions("action")[:, 0]
    assert len(x) == STEPS
    first_rows = 0.01 * np.arange(STEPS)  # each chunk's own prediction for its step
    assert not np.allclose([_expected_x(t) for t in range(1, STEPS)], first_rows[1:])  # the two cases differ
    np.testing.assert_allclose(x, [_expected_x(t) for t in range(STEPS)] if ensemble else first_rows, atol=1e-6)
