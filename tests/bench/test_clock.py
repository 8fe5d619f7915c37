"""The bench's wall clock: evaluation time (inside paused()) does not count against a system's budget."""

from __future__ import annotations

import time

from robo_hybrid.bench.clock import WallClock


def test_wall_clock_excludes_paused_time():
    clock = WallClock(budget_s=10.0)
    assert clock.elapsed() == 0.0
    clock.start()
    with clock.paused():
        time.sleep(0.2)
        with clock.paused():  # re-entrant
            time.sleep(0.05)
    assert clock.elapsed() < 0.1 and not clock.expired()
    time.sleep(0.05)
    assert clock.elapsed() >= 0.05
