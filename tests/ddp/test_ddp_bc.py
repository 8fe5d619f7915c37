"""torchrun with 2 CPU ranks (gloo): identical weights on both ranks, same losses as one process on the same batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

WORKER = str(Path(__file__).with_name("bc_worker.py"))


def _run(args: list[str], env_extra: dict | None = None) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    res = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]


def test_two_ranks_match_a_single_process(push_demos_32, tmp_path):
    steps, batch = 4, 8
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    ddp.mkdir(), single.mkdir()
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", WORKER,
          str(push_demos_32), str(ddp), str(batch), str(steps)])
    _run([sys.executable, WORKER, str(push_demos_32), str(single), str(batch), str(steps)])
    r0, r1 = (json.loads((ddp / f"rank{r}.json").read_text()) for r in (0, 1))
    one = json.loads((single / "rank0.json").read_text())
    assert r0["world"] == 2 and one["world"] == 1
    assert r0["weights"] == r1["weights"], "ranks diverged: gradients were not all-reduced"
    assert r0["losses"] == r1["losses"]  # the logged loss is the all-reduced global mean
    np.testing.assert_allclose(r0["losses"], one["losses"], rtol=2e-4, atol=1e-5)
    assert not np.allclose(r0["losses"][0], r0["losses"][-1])  # it did learn something
    # only rank 0 writes checkpoints / logs: a single run dir with one writer
    assert (ddp / "run" / "config.yaml").exists()


PPO_WORKER = str(Path(__file__).with_name("ppo_worker.py"))


def test_ppo_under_torchrun_keeps_the_ranks_identical(push_demos_32, tmp_path):
    """2 ranks x 2 envs: rollouts differ per rank, averaged gradients keep the actors equal; rank 0 alone writes."""
    out = tmp_path / "ppo"
    out.mkdir()
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", PPO_WORKER,
          str(push_demos_32), str(out), "2", "algo.rnd.coef=0.1"])
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == 2 and r0["iterations"] == r1["iterations"] == 2
    assert r0["actor"] == r1["actor"], "PPO ranks diverged: gradients were not averaged"
    assert r0["env_steps"] == 2 * 2 * 2 * 8  # iterations x ranks x envs x steps: both ranks' experience counts
    assert "success_rate" in r0["final_eval"] and r1["final_eval"] == {}  # rank 0 evaluates, the others train
    records = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2]  # one writer, no duplicate rows
    # the checkpoint resumes as any PPO run (here in one process)
    _run([sys.executable, PPO_WORKER, str(push_demos_32), str(out), "3", "algo.rnd.coef=0.1", "resume=true"])
    one = json.loads((out / "rank0.json").read_text())
    assert one["iterations"] == 3 and one["world"] == 1
