"""Held-out evaluation of one task on fixed seeds: the object every trainer, command and benchmark evaluates with."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import gymnasium as gym
import torch

from robo_hybrid.constants import HELD_OUT_SEED_BASE
from robo_hybrid.envs.common import EnvConfig

from .report import EvalReport
from .runner import ActFn, policy_act_fn, run_episodes
from .video import write_video


def held_out_seeds(episodes: int, seed_base: int = HELD_OUT_SEED_BASE) -> list[int]:
    """The held-out seeds seed_base + i, i < episodes: the one seed source of every evaluation."""
    return [seed_base + i for i in range(episodes)]


class Evaluator:
    """Deterministic episodes on seeds seed_base + i over a vector env that stays open between calls.

    `num_envs` env workers step and render in parallel (async, spawn / forkserver) while the policy runs batched in
    this process; `num_envs <= 1` steps one env in-process. The env is built on first use and kept until close().
    """

    def __init__(self, task: str, env_cfg: EnvConfig | dict, episodes: int, seed_base: int = HELD_OUT_SEED_BASE,
                 num_envs: int = 2, vector_env: str = "", start_method: str = "forkserver",
                 device: str | torch.device = "cpu") -> None:
        if episodes < 1:
            raise ValueError(f"episodes={episodes}: an evaluation needs at least one episode")
        self.task = task
        self.env_cfg: EnvConfig = env_cfg if isinstance(env_cfg, EnvConfig) else EnvConfig(**env_cfg)
        self.seeds = held_out_seeds(episodes, seed_base)
        self.num_envs = max(1, min(int(num_envs), episodes))
        # worker processes unless there is a single env (or the caller asks for 'sync', as tests do)
        self.vector_env = vector_env or ("async" if self.num_envs > 1 else "sync")
        self.start_method, self.device = start_method, device
        self._envs: gym.vector.VectorEnv | None = None

    @property
    def envs(self) -> gym.vector.VectorEnv:
        """The vector env (built on first use)."""
        if self._envs is None:
            from robo_hybrid.envs.vector import make_vector_env  # noqa: PLC0415

            self._envs = make_vector_env(self.task, self.env_cfg, self.num_envs, self.vector_env, self.start_method,
                                         autoreset="disabled")
        assert self._envs is not None
        return self._envs

    def run(self, act: ActFn, history: int, keys: tuple[str, ...], video: str | Path | None = None,
            n_video: int = 0, report_path: str | Path | None = None, progress: bool = False,
            fps: int = 25, action_noise: float = 0.0) -> EvalReport:
        """Evaluate any batched actor `act`; optional mp4 of the first `n_video` seeds and a JSON report
        (`action_noise`: the std of the noise `act` adds, recorded in the report)."""
        from tqdm import tqdm  # noqa: PLC0415

        t0, threads = time.perf_counter(), torch.get_num_threads()
        torch.set_num_threads(1)  # batch-num_envs inference: more threads only contend with the env workers
        bar = tqdm(total=len(self.seeds), desc=f"eval {self.task}", unit="ep", disable=not progress)

        def tick(_) -> None:
            bar.update(1)

        try:
            recs = run_episodes(self.envs, act, self.seeds, history, tuple(keys),
                                video_seeds=tuple(self.seeds[:n_video]) if video else (), on_episode=tick)
        finally:
            bar.close()
            torch.set_num_threads(threads)
        report = EvalReport.from_episodes(self.task, self.seeds, [r.success for r in recs], [r.ret for r in recs],
                                          [r.length for r in recs], time.perf_counter() - t0)
        report.action_noise = float(action_noise)
        frames = [f for r in recs for f in r.frames]
        if video and frames:
            write_video(video, frames, fps=fps)
            report.video = str(video)
        if report_path:
            report.write_json(report_path)
        return report

    def __call__(self, policy, video: str | Path | None = None, n_video: int = 0,
                 report_path: str | Path | None = None, progress: bool = False,
                 action_noise: float = 0.0) -> EvalReport:
        """Evaluate a MultimodalPolicy with its mean action (on its own RNG stream: training is unaffected), or with
        N(0, action_noise^2) added to it in normalized action units."""
        with torch.random.fork_rng(devices=[]):
            act = policy_act_fn(policy, deterministic=True, device=self.device, action_noise=action_noise)
            return self.run(act, policy.cfg.history,
                            tuple(policy.spec.policy_keys), video, n_video, report_path, progress,
                            fps=int(round(policy.spec.control_rate_hz)), action_noise=action_noise)

    def close(self) -> None:
        """Stop the env workers (safe to call twice)."""
        if self._envs is not None:
            self._envs.close()
            self._envs = None

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> dict:
        """Task, seeds and env settings (for reports)."""
        return {"task": self.task, "seeds": [self.seeds[0], self.seeds[-1]], "env": asdict(self.env_cfg)}
