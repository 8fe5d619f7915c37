"""envs/bench.py: the task views are written as PNGs atomically (the env-steps benchmark is a command, not a test).

(Named test_envs_bench.py: deploy/bench.py's tests may take test_bench.py, and basenames must be unique.)
"""

from __future__ import annotations

import imageio.v2 as imageio

from robo_hybrid.envs.bench import _worker, bench_rows, render_task_views


def test_render_task_views_writes_pngs_and_no_temporary_files(tmp_path):
    out = tmp_path / "views"
    paths = render_task_views(str(out), ["reach", "fetch_reach"], image_size=32)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["reach.png", "fetch_reach.png"]
    reach = imageio.imread(paths[0])
    assert reach.shape == (32, 2 * 32 + 4, 3) and reach.std() > 0  # front and wrist side by side
    assert imageio.imread(paths[1]).shape == (32, 32, 3)  # Fetch: one camera
    assert sorted(p.name for p in out.iterdir()) == ["fetch_reach.png", "reach.png"]


def test_pickplace_gets_a_front_and_wrist_row_that_renders_both_cameras():
    assert bench_rows(["reach", "pickplace", "fetch_push"]) == ["reach", "pickplace", "pickplace+wrist", "fetch_push"]

    class Now:
        def wait(self):
            return None

    class Queue(list):
        put = list.append

    q = Queue()
    _worker("pickplace+wrist", 32, 3, Now(), q)  # runs the env with both cameras (an unknown task would raise)
    assert len(q) == 1 and q[0][1] > q[0][0]  # (start, end) on the shared monotonic clock
