"""bench camera's tick statistics (the benchmark itself prints figures; it is not a test)."""

from __future__ import annotations

import pytest

from robo_hybrid.bench.sim_camera import MISSED_MS, tick_stats


def test_tick_stats_counts_lost_ticks_and_the_rate():
    ticks = [i * 1e-3 for i in range(1001)]  # 1 kHz for 1 s
    ticks[500:] = [t + 0.004 for t in ticks[500:]]  # one 5 ms period: four ticks lost
    s = tick_stats(ticks)
    assert s["missed"] == 1 and s["max_ms"] == pytest.approx(5.0)
    assert s["p50_ms"] == pytest.approx(1.0)
    assert s["rate_hz"] == pytest.approx(1000 / 1.004)
    assert MISSED_MS < 5.0


def test_tick_stats_of_too_few_ticks_is_nan_not_an_error():
    s = tick_stats([0.0, 0.001])
    assert s["ticks"] == 2 and s["missed"] == 0 and s["rate_hz"] != s["rate_hz"]
