"""`bench learn` results: time to a threshold on synthetic curves, the summary over seeds, winners, the table."""

from __future__ import annotations

import pytest

from robo_hybrid.bench import learn_report as bm


def _pts(*pairs: tuple[float, float]) -> list[dict]:
    return [{"t_s": t, "success_rate": s} for t, s in pairs]


# ------------------------------------------------------------------------------------------------ pure parts
def test_time_to_threshold_on_synthetic_curves():
    curve = _pts((30, 0.0), (60, 0.45), (90, 0.5), (120, 0.85), (150, 0.95))
    assert bm.time_to(curve, 0.5) == 90  # the first checkpoint at or above the threshold, not an interpolation
    assert bm.time_to(curve, 0.9) == 150
    assert bm.time_to(list(reversed(curve)), 0.5) == 90  # order of the points does not matter
    assert bm.time_to(_pts((30, 0.2), (60, 0.4)), 0.5) is None
    assert bm.time_to([], 0.5) is None


def test_summary_table_and_winners_over_seeds():
    curves = {
        "bc": {0: _pts((10, 0.6), (20, 0.9)), 1: _pts((10, 0.4), (20, 0.95))},
        "sb3_ppo": {0: _pts((10, 0.0), (20, 0.55)), 1: _pts((10, 0.1), (20, 0.2))},
    }
    rows = {r["system"]: r for r in bm.summarize(curves)}
    assert rows["bc"]["time_to_50_s"] == pytest.approx(15.0)  # mean of 10 and 20
    assert rows["bc"]["time_to_90_s"] == pytest.approx(20.0)
    assert rows["bc"]["final_success"] == pytest.approx(0.925)
    assert rows["sb3_ppo"]["time_to_50_s"] is None and rows["sb3_ppo"]["reached_50"] == 1  # one seed of two
    assert bm.winners(list(rows.values())) == {"time_to_50_s": "bc", "time_to_90_s": "bc", "final_success": "bc"}
    table = bm.format_learn_table(list(rows.values()), 20)
    assert "not reached (1/2 seeds)" in table and "15 s" in table and "92.5%" in table
    nobody = bm.winners(bm.summarize({"a": {0: _pts((5, 0.0))}, "b": {0: _pts((5, 0.0))}}))
    assert nobody == {"time_to_50_s": None, "time_to_90_s": None, "final_success": None}
