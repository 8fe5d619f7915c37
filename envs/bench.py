"""`robo-hybrid bench envs`: environment steps per second with an 84 x 84 camera, 1 and N worker processes."""

from __future__ import annotations

import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

WRIST_SUFFIX = "+wrist"  # a row of the task with the wrist camera as well (PickPlace as its config runs it)


def _worker(task: str, image_size: int, steps: int, barrier, out_q) -> None:
    """Step one env with random actions (rendering on) after a shared start; report its (start, end) times."""
    from . import EnvConfig, make_env  # noqa: PLC0415

    wrist = task.endswith(WRIST_SUFFIX)
    env = make_env(task.removesuffix(WRIST_SUFFIX),
                   cfg=EnvConfig(image_size=image_size, terminate_on_success=False, wrist_camera=wrist))
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    for _ in range(5):  # warm up the renderer
        env.step(env.action_space.sample())
    barrier.wait()
    t0 = time.monotonic()  # CLOCK_MONOTONIC: one clock for all worker processes
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        if term or trunc:
            env.reset()
    out_q.put((t0, time.monotonic()))
    env.close()


def steps_per_s(task: str, workers: int, steps: int, image_size: int = 84) -> float:
    """Aggregate env steps/s of `workers` spawned processes stepping concurrently."""
    ctx = get_context("spawn")
    barrier, q = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(task, image_size, steps, barrier, q)) for _ in range(workers)]
    for p in procs:
        p.start()
    spans = [q.get(timeout=600) for _ in procs]  # (start, end) of each worker
    for p in procs:
        p.join()
    # all steps over the wall-clock span from the first start to the last end (summing per-worker rates would
    # overstate it when one worker finishes early and the other then runs alone)
    return workers * steps / (max(e for _, e in spans) - min(t for t, _ in spans))


def bench_rows(tasks: list[str]) -> list[str]:
    """The rows to time: every task, and PickPlace once more with its wrist camera (`pickplace+wrist`)."""
    return [t for name in tasks for t in ([name, name + WRIST_SUFFIX] if name == "pickplace" else [name])]


def bench_envs(tasks: list[str], workers: list[int], steps: int = 1000, image_size: int = 84,
               repeats: int = 3) -> list[dict]:
    """Median steps/s per (task, workers), measured side by side in one run; prints a table with the ratio of the
    most workers to one. PickPlace also gets a row with the wrist camera (front + wrist, as its task config runs)."""
    rows = []
    scaling = len(workers) > 1 and 1 in workers
    print(f"{'task':<18}" + "".join(f"{f'{w} worker(s)':>16}" for w in workers)
          + (f"{f'{max(workers)} vs 1':>10}" if scaling else "")
          + f"   (env steps/s, median of {repeats}, {image_size}x{image_size} front camera)")
    for task in bench_rows(tasks):
        row: dict = {"task": task}
        for w in workers:
            row[w] = float(np.median([steps_per_s(task, w, steps, image_size) for _ in range(repeats)]))
        rows.append(row)
        ratio = f"{row[max(workers)] / row[1]:>9.2f}x" if scaling else ""
        print(f"{task:<18}" + "".join(f"{row[w]:>16.0f}" for w in workers) + ratio, flush=True)
    ref = next((r for r in rows if r["task"].startswith("fetch")), None)
    if ref is not None:
        for r in rows:
            if r is not ref:
                ratios = ", ".join(f"{w} worker(s) {r[w] / ref[w]:.1f}x" for w in workers)
                print(f"{r['task']} vs {ref['task']}: {ratios}")
    return rows


def render_task_views(out_dir: str, tasks: list[str], image_size: int = 168, seed: int = 0) -> list[str]:
    """Write one PNG per task and camera (front, wrist) side by side, each atomically; returns the paths."""
    import imageio.v2 as imageio  # noqa: PLC0415

    from robo_hybrid.fileio import atomic_write_with

    from . import EnvConfig, make_env  # noqa: PLC0415

    paths = []
    for task in tasks:
        wrist = not task.startswith("fetch")
        env = make_env(task, cfg=EnvConfig(image_size=image_size, wrist_camera=wrist))
        try:
            obs, _ = env.reset(seed=seed)
            views = [obs["image"]] + ([obs["image_wrist"]] if wrist else [])
            gap = np.full((image_size, 4, 3), 255, np.uint8)
            row = np.concatenate([x for v in views for x in (v, gap)][:-1], axis=1)
            path = str(Path(out_dir) / f"{task}.png")
            # the temporary name keeps the .png suffix: imageio picks the format from it
            atomic_write_with(path, lambda tmp, row=row: imageio.imwrite(tmp, row), suffix=".png")
            paths.append(path)
        finally:
            env.close()
    return paths
