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
