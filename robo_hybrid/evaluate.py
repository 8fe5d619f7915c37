"""Held-out evaluation of a policy: parallel episode workers, Wilson interval, mp4 of rollouts, JSON report."""

from __future__ import annotations

import io
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from robo_hybrid.policy.config import PolicyConfig
from robo_hybrid.policy.model import MultimodalPolicy
from robo_hybrid.spec import IOSpec

EVAL_SEED_BASE = 1_000_000  # demo seeds are small integers; evaluation seeds never overlap them


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class EvalReport:
    """Summary of an evaluation run."""

    task: str
    episodes: int
    successes: int
    success_rate: float
    ci95_low: float
    ci95_high: float
    mean_length: float
    mean_return: float
    seeds: list[int]
    wall_s: float
    video: str | None = None

    def line(self) -> str:
        """One human-readable line."""
        return (f"{self.task}: success {self.success_rate:.1%} [{self.ci95_low:.1%}, {self.ci95_high:.1%}] "
                f"(95% Wilson, n={self.episodes}), mean length {self.mean_length:.1f}, "
                f"mean return {self.mean_return:.2f}")


def build_policy(policy_cfg: dict, spec_json: str, weights: bytes) -> MultimodalPolicy:
    """Rebuild a policy from its config, spec and safetensors bytes (what eval workers receive)."""
    from safetensors.torch import load  # noqa: PLC0415

    policy = MultimodalPolicy(PolicyConfig(**policy_cfg), IOSpec.from_json(spec_json))
    policy.load_state_dict(load(weights))
    return policy.eval()


def _policy_payload(policy: MultimodalPolicy) -> tuple[dict, str, bytes]:
    from safetensors.torch import save  # noqa: PLC0415

    state = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    return asdict(policy.cfg), policy.spec.to_json(), save(state)


def _draw_action_panel(action: np.ndarray, size: int) -> np.ndarray:
    """A size x size RGB panel with one bar per action element (centre line = 0, full width = +-1)."""
    panel = np.full((size, size, 3), 30, np.uint8)
    n = len(action)
    bar_h = size // (n + 1)
    mid = size // 2
    colors = [(230, 80, 80), (80, 200, 80), (80, 120, 230), (230, 200, 60)]
    for i, a in enumerate(np.clip(action, -1, 1)):
        y0 = (i + 1) * size // (n + 1) - bar_h // 3
        x1 = int(mid + a * (size // 2 - 4))
        lo, hi = sorted((mid, x1))
        panel[y0 : y0 + bar_h * 2 // 3, lo : hi + 1] = colors[i % len(colors)]
    panel[:, mid] = 200
    return panel


def run_episodes(policy_cfg: dict, spec_json: str, weights: bytes, task: str, env_cfg: dict, seeds: list[int],
                 record: int = 0) -> list[dict]:
    """Worker: roll the deterministic policy out on each seed; frames for the first `record` episodes."""
    torch.set_num_threads(1)
    from robo_hybrid.envs import EnvConfig, make_env  # noqa: PLC0415  (torch first, then GL)
    from robo_hybrid.rl.rollout import HistoryStacker  # noqa: PLC0415

    policy = build_policy(policy_cfg, spec_json, weights)
    env = make_env(task, cfg=EnvConfig(**env_cfg))
    hist = HistoryStacker(policy.cfg.history, policy.spec.policy_keys)

    def batch1(o: dict) -> dict[str, np.ndarray]:
        return {k: np.asarray(o[k])[None] for k in policy.spec.policy_keys}
    results = []
    try:
        for i, seed in enumerate(seeds):
            obs, _ = env.reset(seed=seed)
            window = hist.reset(batch1(obs))
            ret, length, success, frames = 0.0, 0, False, []
            while True:
                action = policy.act({k: torch.as_tensor(v) for k, v in window.items()})[0].numpy()
                if i < record:
                    img = obs["image"]
                    scale = max(1, 168 // img.shape[0])
                    big = img.repeat(scale, 0).repeat(scale, 1)
                    frames.append(np.concatenate([big, _draw_action_panel(action, big.shape[0])], axis=1))
                obs, reward, term, trunc, info = env.step(action)
                window = hist.push(batch1(obs), np.zeros(1, bool))
                ret, length = ret + float(reward), length + 1
                success = success or bool(info["is_success"])
                if term or trunc:
                    break
            results.append({"seed": seed, "success": success, "return": ret, "length": length, "frames": frames})
    finally:
        env.close()
    return results


def evaluate(policy: MultimodalPolicy, task: str, env_cfg: dict, episodes: int = 50, workers: int = 2,
             seed_base: int = EVAL_SEED_BASE, video: str | None = None, n_video: int = 3,
             report_path: str | None = None, progress: bool = True) -> EvalReport:
    """Evaluate on seeds seed_base..seed_base+episodes-1 in `workers` spawned processes."""
    from tqdm import tqdm  # noqa: PLC0415

    payload = _policy_payload(policy)
    seeds = list(range(seed_base, seed_base + episodes))
    chunks = [seeds[i::max(1, workers)] for i in range(max(1, workers))]
    chunks = [c for c in chunks if c]
    record = n_video if video else 0
    t0 = time.perf_counter()
    results: list[dict] = []
    bar = tqdm(total=episodes, desc=f"eval {task}", unit="ep", disable=not progress)
    if workers <= 1:
        results = run_episodes(*payload, task, env_cfg, seeds, record)
        bar.update(episodes)
    else:
        with ProcessPoolExecutor(len(chunks), mp_context=get_context("spawn")) as pool:
            futs = [pool.submit(run_episodes, *payload, task, env_cfg, c, record if j == 0 else 0)
                    for j, c in enumerate(chunks)]
            for f in as_completed(futs):
                r = f.result()
                results += r
                bar.update(len(r))
    bar.close()
    results.sort(key=lambda r: r["seed"])
    wins = sum(r["success"] for r in results)
    lo, hi = wilson_interval(wins, len(results))
    report = EvalReport(task, len(results), wins, wins / max(1, len(results)), lo, hi,
                        float(np.mean([r["length"] for r in results])), float(np.mean([r["return"] for r in results])),
                        seeds, time.perf_counter() - t0)
    frames = [f for r in results for f in r["frames"]]
    if video and frames:
        write_video(video, frames, fps=int(json.loads(policy.spec.to_json())["control_rate_hz"]))
        report.video = video
    if report_path:
        write_json_atomic(report_path, asdict(report))
    return report


def write_video(path: str, frames: list[np.ndarray], fps: int = 25) -> None:
    """mp4 (H.264 through imageio-ffmpeg), written to a temporary file then renamed."""
    import imageio.v2 as imageio  # noqa: PLC0415

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}.mp4"
    with imageio.get_writer(tmp, fps=fps, codec="libx264", macro_block_size=8) as w:
        for f in frames:
            w.append_data(f)
    os.replace(tmp, path)


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """JSON to a temporary file, then renamed: readers never see half a file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    json.dump(obj, buf, indent=2, default=str)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(buf.getvalue())
    os.replace(tmp, path)
