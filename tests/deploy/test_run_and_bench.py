"""run_deploy on the mock robot (summary, log files, clean SIGINT exit), telemetry, and the latency bench."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from robo_hybrid.deploy.bench import bench_latency
from robo_hybrid.deploy.run import run_deploy
from robo_hybrid.deploy.telemetry import Telemetry


def test_run_deploy_mock_writes_logs(model_path, tmp_path, capsys):
    res = run_deploy(model_path, robot="mock", episodes=3, log_dir=str(tmp_path / "logs"))
    assert res["success_rate"] == 1.0 and res["episodes"] == 3
    out = capsys.readouterr().out
    assert "success_rate=1.00" in out and "p99" in out
    with open(res["files"]["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == res["telemetry"]["cycles"] > 0 and float(rows[0]["cycle_s"]) > 0
    summary = json.load(open(res["files"]["summary"]))
    assert summary["cycle_ms"]["p99"] >= summary["cycle_ms"]["p50"] > 0
    assert os.path.getsize(res["files"]["histogram"]) > 1000
    assert json.load(open(tmp_path / "logs" / "deploy_result.json"))["model"]["model_hash"] == "m123"


def test_run_deploy_rejects_unknown_robot(model_path):
    with pytest.raises(ValueError, match="robot='ur5'"):
        run_deploy(model_path, robot="ur5")


def test_sigint_holds_then_exits_cleanly(model_path):
    code = (
        "from robo_hybrid.deploy.run import run_deploy\n"
        f"r = run_deploy({model_path!r}, robot='mock', episodes=100000, max_steps=50, plot=False)\n"
        "print('END', r['ends'][-1], flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # "[deploy] policy: ..." once the model is loaded
    assert first.startswith("[deploy] policy"), first + proc.stderr.read() if proc.stderr else ""
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "END shutdown" in out and "Traceback" not in err


def test_telemetry_summary_and_growth():
    tel = Telemetry(0.01, capacity=16)
    for i in range(100):  # grows past its capacity
        tel.record(0, i, "hold" if i % 10 == 0 else "action", {"cycle_s": 0.001 * (i % 7), "period_s": 0.01},
                   skipped=1 if i == 50 else 0)  # fmt: skip
    s = tel.summary()
    assert s["cycles"] == 100 and s["n_hold"] == 10 and s["overruns"] == 1
    assert s["cycle_ms"]["max"] == pytest.approx(6.0) and s["cycle_ms"]["p50"] == pytest.approx(3.0)
    assert np.isnan(s["infer_ms"]["p50"])  # never recorded: reported as NaN, not 0


def test_bench_latency_with_extra_callable(model_path, capsys):
    affinity = os.sched_getaffinity(0)
    res = bench_latency(model_path, iters=50, cycles=40, cycle_rate_hz=200.0, extra={"numpy_ref": lambda obs: 0})
    assert res["onnxruntime"]["n"] == 50 and 0 < res["onnxruntime"]["p50"] <= res["onnxruntime"]["p99"]
    assert res["numpy_ref"]["p50"] < res["onnxruntime"]["p50"]
    assert res["cycle"]["cycles"] == 40
    assert os.sched_getaffinity(0) == affinity  # pinning undone
    assert "onnxruntime" in capsys.readouterr().out
