"""The README's main job end to end (tiny sizes): collect -> BC -> eval -> export -> controller loop."""

from __future__ import annotations

import json
import subprocess
import sys


def test_robo_hybrid_run_end_to_end(tmp_path):
    run_dir, data = tmp_path / "run", tmp_path / "demos.hdf5"
    cmd = [sys.executable, "-m", "robo_hybrid.cli", "run", "task=reach", "episodes=3", "algo.steps=4",
           "algo.log_every=2", "policy=tiny", "eval.episodes=2", "eval.videos=1", "deploy.episodes=1",
           "task.env.image_size=32", "workers=1", f"run_dir={run_dir}", f"data={data}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    for line in ("[run] collected 3 demos of reach", "[eval] reach: success", "[export]", "[run] success: torch eval"):
        assert line in res.stdout, res.stdout[-3000:]
    summary = json.loads((run_dir / "run_summary.json").read_text())
    torch_eval, dep = summary["torch_eval"], summary["deploy"]
    assert torch_eval["episodes"] == 2 and torch_eval["seeds"] == [1_000_000, 1_000_001]
    # the controller loop ran its one episode to the end, and its success rate is what its episodes report
    results = dep["results"]
    assert len(results) == 1 and results[0]["end"] in ("done", "max_steps") and results[0]["steps"] > 0
    assert dep["success_rate"] == sum(bool(r["success"]) for r in results) / len(results)
    assert (run_dir / "policy.onnx").stat().st_size > 0 and (run_dir / "eval.mp4").exists()
    # a second run resumes: demos are reused and training does not restart
    res2 = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res2.returncode == 0, res2.stderr[-3000:]
    assert "[run] using" in res2.stdout


def test_cli_reports_bad_overrides_in_one_line():
    res = subprocess.run([sys.executable, "-m", "robo_hybrid.cli", "collect", "task=nosuchtask"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "task=nosuchtask" in res.stderr and "Traceback" not in res.stderr
    assert "pickplace" in res.stderr  # the valid choices are listed
