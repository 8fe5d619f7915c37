"""No orphans: the sim server stops with its controller (SIGKILL, SIGTERM during start-up) and cleans up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and PR_SET_PDEATHSIG")


def _servers(marker: str) -> list[int]:
    """Pids of sim server processes whose command line mentions `marker`."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = open(f"/proc/{d}/cmdline", "rb").read().decode(errors="replace")
            except OSError:
                continue
            if "robo_hybrid.deploy.sim_server" in cmd and marker in cmd:
                pids.append(int(d))
    return pids


def _ours(folder: str) -> list[str]:
    """The run's private folders (other libraries may put their own files into TMPDIR)."""
    return [n for n in os.listdir(folder) if n.startswith("robo_hybrid_")]


def _wait(pred, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def _controller(tmp_path, model_path, prelude: str = "", via_cli: bool = False) -> subprocess.Popen:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    args = [f"model={model_path}", "robot=sim_server", "deploy.sim_backend=mock", "deploy.episodes=100000",
            "deploy.max_steps=50", "deploy.plot=false", f"deploy.keys_dir={tmp_path / 'keys'}", "deploy.realtime=off"]
    code = prelude + f"import sys\nfrom robo_hybrid.commands.deploy import main\nsys.exit(main({args!r}))\n"
    env = {**os.environ, "TMPDIR": str(tmp)}
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip


def test_kill_9_of_the_controller_stops_the_server_and_removes_its_folder(tmp_path, model_path):
    proc = _controller(tmp_path, model_path)
    marker = str(tmp_path / "tmp")
    try:
        assert _wait(lambda: _servers(marker), 30.0), "no sim server started"
        assert _wait(lambda: bool(_ours(marker)))
        time.sleep(1.0)  # let the controller run episodes against it
        assert proc.poll() is None
        proc.kill()
        proc.wait()
        assert _wait(lambda: not _servers(marker)), "the sim server outlived its controller"
        assert _wait(lambda: not _ours(marker)), f"leaked: {_ours(marker)}"
    finally:
        proc.kill()
        for pid in _servers(marker):
            os.kill(pid, signal.SIGKILL)


def test_sigterm_during_startup_leaves_nothing_behind(tmp_path, model_path):
    # SIGTERM arrives while the controller waits for the server's handshake (deterministically, from inside)
    prelude = ("import os, signal, time\nfrom robo_hybrid.deploy import zmq_robot\n"
               "def connect(self):\n    time.sleep(0.5)\n    os.kill(os.getpid(), signal.SIGTERM)\n    time.sleep(60)\n"
               "zmq_robot.ZmqRobot.connect = connect\n")  # fmt: skip
    proc = _controller(tmp_path, model_path, prelude)
    marker = str(tmp_path / "tmp")
    try:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143 and err.strip().splitlines()[-1].startswith("deploy: terminated during start-up")
        assert _wait(lambda: not _servers(marker)), "a sim server was left running"
        assert not _ours(marker), f"leaked: {_ours(marker)}"
    finally:
        proc.kill()
        for pid in _servers(marker):
            os.kill(pid, signal.SIGKILL)
