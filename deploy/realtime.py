"""Real-time settings for the controller process: SCHED_FIFO, locked memory, one pinned CPU.

What ros2_control's controller manager and libfranka ask for. `realtime(mode)` applies them and undoes them
on exit: mode "off" does nothing, "auto" applies what is permitted and warns about the rest, "require"
raises RealtimeError when any of them is refused.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

_MCL_CURRENT, _MCL_FUTURE = 1, 2  # <sys/mman.h> on Linux


class RealtimeError(RuntimeError):
    """deploy.realtime=require and the system refused a setting."""


@dataclass
class RealtimeReport:
    """What was applied, and what was refused (with the reason)."""

    mode: str
    fifo_priority: int | None = None
    mlocked: bool = False
    cpu: int | None = None
    refused: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line for logs."""
        if self.mode == "off":
            return "realtime off"
        got = (f"SCHED_FIFO {self.fifo_priority}" if self.fifo_priority else "no SCHED_FIFO",
               "mlockall" if self.mlocked else "no mlockall", f"cpu {self.cpu}" if self.cpu is not None else "unpinned")
        return f"realtime {self.mode}: " + ", ".join(got) + (f" (refused: {'; '.join(self.refused)})" if self.refused
                                                             else "")  # fmt: skip


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _fifo(priority: int, rep: RealtimeReport) -> tuple | None:
    if not hasattr(os, "sched_setscheduler"):
        rep.refused.append("SCHED_FIFO: not available on this platform")
        return None
    old = (os.sched_getscheduler(0), os.sched_getparam(0))
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as e:
        rep.refused.append(f"SCHED_FIFO {priority}: {e.strerror} (needs root or CAP_SYS_NICE / rtprio in limits.conf)")
        return None
    rep.fifo_priority = priority
    return old


def _mlock(rep: RealtimeReport) -> bool:
    if not sys.platform.startswith("linux"):
        rep.refused.append("mlockall: Linux only")
        return False
    libc = _libc()
    if libc.mlockall(_MCL_CURRENT | _MCL_FUTURE) != 0:
        rep.refused.append(f"mlockall: {os.strerror(ctypes.get_errno())} (raise RLIMIT_MEMLOCK or run as root)")
        return False
    rep.mlocked = True
    return True


def _pin(cpu: int | None, rep: RealtimeReport) -> set[int] | None:
    if not hasattr(os, "sched_setaffinity"):
        rep.refused.append("CPU affinity: not available on this platform")
        return None
    old = os.sched_getaffinity(0)
    target = cpu if cpu is not None else max(old)
    try:
        os.sched_setaffinity(0, {target})
    except OSError as e:
        rep.refused.append(f"CPU affinity {target}: {e.strerror}")
        return None
    rep.cpu = target
    return old


@contextlib.contextmanager
def realtime(mode: str = "auto", priority: int = 80, cpu: int | None = None) -> Iterator[RealtimeReport]:
    """Apply SCHED_FIFO `priority`, mlockall and pinning to `cpu` for the block; restore the old settings after."""
    if mode not in ("auto", "off", "require"):
        raise ValueError(f"realtime={mode!r}: choose auto, off or require")
    rep = RealtimeReport(mode)
    if mode == "off":
        yield rep
        return
    old_sched = _fifo(priority, rep)
    locked = _mlock(rep)
    old_cpus = _pin(cpu, rep)
    try:
        if rep.refused and mode == "require":
            raise RealtimeError(f"deploy.realtime=require, but refused: {'; '.join(rep.refused)}. "
                                "Fix: run as root (or grant rtprio/memlock), or set deploy.realtime=auto")  # fmt: skip
        yield rep
    finally:
        if old_cpus is not None:
            os.sched_setaffinity(0, old_cpus)
        if locked:
            _libc().munlockall()
        if old_sched is not None:
            os.sched_setscheduler(0, old_sched[0], old_sched[1])
