"""deploy.realtime=auto|off|require: SCHED_FIFO + mlockall + pinning, warnings when refused, undone afterwards."""

from __future__ import annotations

import os

import pytest

from robo_hybrid.deploy import realtime as rt

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setscheduler"), reason="Linux scheduling API")


def _refuse(*a, **k):
    raise PermissionError(1, "Operation not permitted")


def test_off_changes_nothing():
    before = (os.sched_getscheduler(0), os.sched_getaffinity(0))
    with rt.realtime("off") as rep:
        assert (os.sched_getscheduler(0), os.sched_getaffinity(0)) == before
    assert rep.line() == "realtime off"


def test_require_raises_when_refused(monkeypatch):
    monkeypatch.setattr(rt.os, "sched_setscheduler", _refuse)
    with pytest.raises(rt.RealtimeError, match="SCHED_FIFO 80: Operation not permitted"):
        with rt.realtime("require"):
            pass


def test_auto_warns_and_continues_when_refused(monkeypatch):
    affinity = os.sched_getaffinity(0)
    monkeypatch.setattr(rt.os, "sched_setscheduler", _refuse)
    with rt.realtime("auto", cpu=min(affinity)) as rep:
        assert rep.fifo_priority is None and rep.refused and "refused" in rep.line()
        assert os.sched_getaffinity(0) == {min(affinity)}
    assert os.sched_getaffinity(0) == affinity  # undone


def test_applied_and_undone_when_permitted():
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except PermissionError:
        pytest.skip("SCHED_FIFO not permitted here")
    with rt.realtime("require", priority=10) as rep:
        assert os.sched_getscheduler(0) == os.SCHED_FIFO and rep.mlocked and rep.cpu is not None
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
