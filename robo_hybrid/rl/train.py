"""PPO fine-tuning: `PPOTrainer(cfg: PPOConfig, task, env_cfg, run_dir, ...).run()`.

    robo-hybrid train algo=ppo task=pickplace checkpoint=runs/pickplace_bc_default_s0 algo.time_budget_s=1800

The actor starts from a BC checkpoint (`checkpoint=`) or from scratch (`checkpoint=` empty: policy.* config, then
always finetune=full). algo.finetune=residual (default) trains a bounded residual head on the frozen BC policy
(robo_hybrid/rl/residual.py); its checkpoints hold the base as the policy file plus residual.safetensors beside it.
Writes into run_dir: checkpoints/ (the BC format: `robo-hybrid eval` / `export` read them), ppo_state/ (critic,
optimizers, ... for resume=true), metrics.jsonl, tb/, the learning-curve PNGs, reward_model.safetensors.
"""

from __future__ import annotations

import base64
import copy
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robo_hybrid.constants import HELD_OUT_SEED_BASE
from robo_hybrid.envs import EnvConfig, make_env
from robo_hybrid.envs.vector import make_grouped_vector_env
from robo_hybrid.evaluation import Evaluator
from robo_hybrid.fileio import atomic_write_text
from robo_hybrid.policy import MultimodalPolicy, PolicyConfig
from robo_hybrid.training import checkpoint as ckpt
from robo_hybrid.training import distributed as ddp

from .collector import RolloutCollector, random_action_stats
from .config import KL_REGULARIZERS, PPOConfig, linear_schedule
from .critic import make_critic
from .plots import plot_learning_curves
from .ppo import PPO, CriticUpdate
from .residual import ResidualPolicy, finetune_actor, save_residual
from .rnd import RND
from .setup import build_reward_model, demo_batches
from .shaping import PotentialShaper
from .state import REWARD_MODEL_FILE, load_ppo_state, prune_ppo_state, save_ppo_state, state_dir
from .storage import RolloutStorage

log = logging.getLogger(__name__)


@dataclass
class PPOResult:
    """What a PPO run returns: the fine-tuned policy and its held-out figures (eval at start, best, final)."""

    policy: MultimodalPolicy | ResidualPolicy
    run_dir: Path
    checkpoint_dir: Path
    iterations: int
    env_steps: int
    wall_s: float
    initial_eval: dict[str, float] = field(default_factory=dict)
    final_eval: dict[str, float] = field(default_factory=dict)
    best_eval: dict[str, float] = field(default_factory=dict)
    min_success: float = float("nan")
    """Lowest held-out success seen during the run (the 'no collapse below BC' check)."""
    min_vs_bc: float = float("nan")
    """min_success minus the start's success on the same fixed seeds (no collapse: >= -0.10)."""


class PPOTrainer:
    """Builds envs, actor, critic, reward shaping and logs for one run; `run()` trains to the budget."""

    def __init__(self, cfg: PPOConfig, task: str, env_cfg: EnvConfig, run_dir: str | Path,
                 policy_cfg: PolicyConfig | None = None, init_checkpoint: str = "", demos_path: str = "",
                 seed: int = 0, resume: bool = False, config_yaml: str = "",
                 eval_seed_base: int = HELD_OUT_SEED_BASE) -> None:
        self.cfg, self.task, self.seed, self.config_yaml = cfg, task, seed, config_yaml
        self.run_dir, self.demos_path = Path(run_dir), demos_path
        self.ckpt_root = self.run_dir / "checkpoints"
        torch.set_num_threads(cfg.num_threads)
        torch.manual_seed(seed)
        # torchrun: every rank runs its own env workers on its own seeds; gradients are averaged over ranks; rank 0
        # evaluates, logs and writes checkpoints
        self.dist = ddp.init_distributed(cfg.device)
        self.device = ddp.device_for(cfg.device, self.dist)
        if str(self.device) != cfg.device:
            cfg = self.cfg = replace(cfg, device=str(self.device))  # cuda:<local rank>
        # the env's own reward is sparse for 'learned' (shaping is added here) and 'sparse'
        self.env_cfg = replace(env_cfg, reward="dense" if cfg.reward == "dense" else "sparse")
        probe = make_env(task, cfg=replace(self.env_cfg, render=False))
        self.spec = probe.unwrapped.io_spec
        probe.close()
        resume_dir = self._resume_dir(resume)
        resumed_state = ckpt.read_trainer_state(resume_dir) if resume_dir is not None else {}
        self.envs = make_grouped_vector_env(task, self.env_cfg, cfg.num_envs, cfg.env_groups, cfg.vector_env,
                                             cfg.start_method, failure_replay=cfg.failure_replay)
        # held-out seeds eval_seed_base + i: the same source as BC training and `robo-hybrid eval` (cfg.eval.seed_base)
        self.evaluator = Evaluator(task, self.env_cfg, cfg.eval_episodes, eval_seed_base,
                                   num_envs=cfg.eval_num_envs or cfg.num_envs, vector_env=cfg.vector_env,
                                   start_method=cfg.start_method, device=self.device)
        try:
            self._build(resume_dir, resumed_state, init_checkpoint, policy_cfg)
        except BaseException:
            self.envs.close()  # no orphaned worker processes when the setup fails
            self.evaluator.close()
            raise

    def _build(self, resume_dir: Path | None, resumed_state: dict, init_checkpoint: str,
               policy_cfg: PolicyConfig | None) -> None:
        """Everything after the envs: actor, critic, RND, PPO, reward shaping, storage, logs."""
        cfg, seed, demos_path = self.cfg, self.seed, self.demos_path
        self.from_scratch = bool(resumed_state.get("from_scratch", not init_checkpoint))
        if self.from_scratch and cfg.finetune != "full":
            log.warning("algo.finetune=%s needs a pretrained policy; training from scratch: finetune=full",
                        cfg.finetune)
            cfg = self.cfg = replace(cfg, finetune="full")
        self.base = base = self._build_policy(resume_dir, init_checkpoint, policy_cfg)
        self.policy = finetune_actor(base, cfg.finetune, cfg.residual, cfg.partial_blocks).to(self.device)
        self.critic = make_critic(cfg.critic, self.spec)
        dims = {k: int(np.prod(self.spec.obs(k).shape)) for k in (*self.spec.policy_keys, *self.spec.privileged_keys)
                if k not in self.spec.image_keys}
        self.rnd = RND(cfg.rnd, dims, self.device) if cfg.rnd.coef > 0 else None
        if self.from_scratch and cfg.bc_reg in KL_REGULARIZERS:
            log.warning("bc_reg=%s needs a pretrained policy to stay close to; training from scratch: regularizer off",
                        cfg.bc_reg)
            cfg = self.cfg = replace(cfg, bc_reg="none")
        demos = demo_batches(demos_path, base, cfg.minibatch_size, seed) if cfg.bc_reg == "bc_nll" else None
        # residual: the frozen base itself is the KL anchor (its outputs are cached in the rollout)
        bc_anchor = copy.deepcopy(base) if cfg.bc_reg in KL_REGULARIZERS and cfg.finetune != "residual" else None
        self.ppo = PPO(self.policy, self.critic, cfg, bc_policy=bc_anchor, rnd=self.rnd, demo_batches=demos,
                       dist=self.dist)
        self.it, self.env_steps, self.elapsed_s, self.best_success = 0, 0, 0.0, -1.0
        self.min_success, self.initial_eval, self.last_eval = float("nan"), {}, {}
        self._saved: tuple[int, Path] | None = None
        self._critic_update: CriticUpdate | None = None
        if resume_dir is not None:
            self._restore(resume_dir)
        for module in (*self.ppo.modules().values(), self.policy):
            ddp.broadcast_module(module, self.dist)  # one start on every rank (scratch init, RND target, stats)
        if self.dist.enabled:  # ...but each rank samples its own actions (a checkpoint holds rank 0's generator)
            torch.manual_seed(seed + 1000 * self.dist.rank + self.it)
        self.reward_model_path: Path | None = None
        t0 = time.perf_counter()
        shaper = self._build_shaper(resume_dir)
        if resume_dir is None:
            self.elapsed_s += time.perf_counter() - t0  # reward-model pre-training is part of the method's budget
        # new episodes after a resume; ranks interleave: rank r of R starts its envs at block it * R + r
        train_seed = seed + cfg.train_seed_offset + (self.it * self.dist.world_size + self.dist.rank) * cfg.num_envs
        self.collector = RolloutCollector(self.envs, self.ppo, train_seed, shaper)
        self.storage = RolloutStorage(cfg.num_steps, cfg.num_envs, self.collector.example_obs(),
                                      self.policy.action_dim, self.device)
        from robo_hybrid.training.runlog import RunLog  # noqa: PLC0415  (metrics.jsonl + TensorBoard, shared with BC)

        self.log: RunLog | None = None  # rank 0 only
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if self.config_yaml:
                atomic_write_text(self.run_dir / ckpt.CONFIG_FILE, self.config_yaml)
            atomic_write_text(self.run_dir / ckpt.SPEC_FILE, self.spec.to_json())
            self.log = RunLog(self.run_dir, self.it)

    # ----- construction -----
    def _resume_dir(self, resume: bool) -> Path | None:
        found = ckpt.find_checkpoint(self.ckpt_root) if self.ckpt_root.is_dir() else None
        if found is not None and not resume:
            raise FileExistsError(f"{self.run_dir} already holds checkpoints; pass resume=true to continue it, "
                                  "or set run_dir=<new dir>")
        if found is not None and not state_dir(self.run_dir, int(ckpt.read_trainer_state(found)["step"])).is_dir():
            raise ckpt.CheckpointError(f"{found} has no PPO state beside it (not a PPO run?); use a new run_dir")
        return found

    def _build_policy(self, resume_dir: Path | None, init_checkpoint: str,
                      policy_cfg: PolicyConfig | None) -> MultimodalPolicy:
        if resume_dir is not None:
            policy = ckpt.policy_from_file(resume_dir / ckpt.MODEL_FILE, self.device)
        elif init_checkpoint:
            policy = ckpt.load_policy(init_checkpoint, expect_spec=self.spec, device=self.device)[0]
            log.info("actor initialised from %s", init_checkpoint)
        else:
            policy = MultimodalPolicy(policy_cfg or PolicyConfig(), self.spec).to(self.device)
            # normalizers of a scratch policy: observation statistics under random actions, actions as they are
            stats = random_action_stats(self.envs, policy.vector_keys, 2 * self.cfg.num_steps, self.seed)
            stats["action"] = (np.zeros(policy.action_dim), np.ones(policy.action_dim))
            policy.fit_normalizers(stats)
        policy.spec.require_compatible(self.spec, what="env")
        return policy.eval()

    def _build_shaper(self, resume_dir: Path | None) -> PotentialShaper | None:
        if self.cfg.reward != "learned":
            return None
        saved = state_dir(self.run_dir, self.it) / REWARD_MODEL_FILE if resume_dir is not None else None
        model, self.reward_model_path = build_reward_model(
            self.cfg, self.spec, self.base, self.evaluator.envs, self.demos_path, self.run_dir, self.seed,
            saved if saved is not None and saved.is_file() else None)
        ddp.broadcast_module(model, self.dist)  # rank 0's reward model shapes every rank's rewards
        return PotentialShaper(model.to(self.device), self.cfg.gamma, self.device)

    # ----- checkpoints -----
    def _trainer_state(self) -> dict[str, Any]:
        return {"iteration": self.it, "env_steps": self.env_steps, "elapsed_s": self.elapsed_s,
                "best_success": self.best_success, "min_success": self.min_success,
                "initial_eval": self.initial_eval, "seed": self.seed, "algo": "ppo", "from_scratch": self.from_scratch,
                "finetune": self.cfg.finetune,
                "torch_rng": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}

    def _restore(self, ckpt_dir: Path) -> None:
        state = ckpt.read_trainer_state(ckpt_dir)
        self.it, self.env_steps = int(state["step"]), int(state["env_steps"])
        self.elapsed_s, self.best_success = float(state["elapsed_s"]), float(state["best_success"])
        self.min_success, self.initial_eval = float(state["min_success"]), dict(state["initial_eval"])
        rng = np.frombuffer(base64.b64decode(state["torch_rng"]), dtype=np.uint8).copy()
        torch.set_rng_state(torch.from_numpy(rng))
        load_ppo_state(state_dir(self.run_dir, self.it), self.ppo.modules(), self.ppo.optimizers(), self.ppo.bc_policy)
        log.info("resumed PPO from %s at iteration %d", ckpt_dir, self.it)

    def save(self) -> Path | None:
        """PPO state first, then the policy checkpoint (which moves latest.json); prune both together (rank 0)."""
        if not self.dist.is_main:
            return None
        self.join_critic()  # the critic's weights and optimizer of this iteration are complete
        if self._saved is not None and self._saved[0] == self.it:
            return self._saved[1]
        bc = self.ppo.bc_policy
        save_ppo_state(self.run_dir, self.it, self.ppo.modules(), self.ppo.optimizers(), bc, self.reward_model_path)
        residual = self.policy if isinstance(self.policy, ResidualPolicy) else None
        # residual: the policy file is the (unchanged) base, so `eval` / `export` read it; the head goes beside it
        path = ckpt.save_checkpoint(self.ckpt_root, self.it, self.base,
                                    self.ppo.actor_optimizer, self.config_yaml, self._trainer_state(),
                                    keep_last=self.cfg.keep_last)
        if residual is not None:
            save_residual(path, residual)
        prune_ppo_state(self.run_dir)
        self._saved = (self.it, path)
        return path

    # ----- loop -----
    def _log_add(self, kind: str, metrics: dict[str, float]) -> None:
        if self.log is not None:
            self.log.add(kind, self.it, metrics)

    def evaluate(self) -> dict[str, float]:
        """Held-out success of the deterministic actor on the evaluator's seeds; tracks best / min (rank 0)."""
        if not self.dist.is_main:
            return {}
        res: dict[str, float] = self.evaluator(self.policy).metrics()
        res.update(env_steps=self.env_steps, wall_s=self.elapsed_s)
        self._log_add("eval", res)
        s = res["success_rate"]
        self.min_success = s if self.min_success != self.min_success else min(self.min_success, s)
        if s > self.best_success:
            self.best_success = s
            path = self.save()
            assert path is not None
            ckpt.write_pointer(self.ckpt_root, "best", self.it, path.name, success_rate=s)
        self.last_eval = res
        return res

    def iteration(self) -> dict[str, float]:
        """Collect one batch, update, log; returns the logged metrics."""
        if isinstance(self.policy, ResidualPolicy):  # the residual's bound, annealed in
            r = self.cfg.residual
            self.policy.set_scale(linear_schedule(r.scale_init, r.scale, r.scale_anneal_iters, self.it))
        t0 = time.perf_counter()
        metrics = self.collector.collect(self.storage, before_values=self.join_critic)
        t1 = time.perf_counter()
        background = self.cfg.async_critic and not self.dist.enabled
        metrics.update(self.ppo.update(self.storage, self.it, critic=not background))
        if background:  # this batch's critic epochs run beside the next rollout (logged as kind 'critic')
            self._critic_update = self.ppo.start_critic_update(self.storage, seed=self.seed * 100_003 + self.it,
                                                               step=self.it + 1)
        self.storage.clear()
        t2 = time.perf_counter()
        self.it += 1
        self.env_steps += self.cfg.batch_size * self.dist.world_size  # all ranks' experience
        self.elapsed_s += t2 - t0
        # rollout statistics are rank 0's; losses are on each rank's minibatches, gradients the ranks' mean
        metrics.update(env_steps=self.env_steps, wall_s=self.elapsed_s, rollout_s=t1 - t0, update_s=t2 - t1,
                       fps=self.cfg.batch_size * self.dist.world_size / max(t2 - t0, 1e-9))
        if isinstance(self.policy, ResidualPolicy):
            metrics["residual_scale"] = float(self.policy.scale)
        self._log_add("train", metrics)
        return metrics

    def run(self) -> PPOResult:
        """Train until cfg.iterations or the wall-clock budget; evaluate and checkpoint on schedule and at the end."""
        from tqdm import tqdm  # noqa: PLC0415

        cfg = self.cfg
        bar = tqdm(total=cfg.iterations, initial=self.it, desc=f"ppo {self.task}", disable=not cfg.progress)
        try:
            if self.it == 0:
                self.initial_eval = self.evaluate()
            while self.it < cfg.iterations:
                # all ranks stop together (their clocks differ a little)
                if ddp.any_rank(cfg.time_budget_s > 0 and self.elapsed_s >= cfg.time_budget_s, self.dist):
                    log.info("time budget of %.0f s reached at iteration %d", cfg.time_budget_s, self.it)
                    break
                m = self.iteration()
                bar.update(1)
                bar.set_postfix(success=f"{m.get('success_rate', float('nan')):.2f}", kl=f"{m.get('approx_kl', 0):.3f}",
                                fps=f"{m['fps']:.0f}", eval=f"{self.last_eval.get('success_rate', float('nan')):.2f}")
                if cfg.eval_every and self.it % cfg.eval_every == 0:
                    self.evaluate()
                if self.it % cfg.checkpoint_every == 0:
                    self.save()
            if self.last_eval.get("env_steps") != self.env_steps:
                self.evaluate()
            final = self.save()
            if self.log is not None:
                plot_learning_curves(self.log.records, self.run_dir, title=f"{self.task} PPO ({cfg.reward})")
            ddp.barrier(self.dist)  # the last checkpoint is complete before any rank returns
        finally:
            bar.close()
            self.close()
        best = {"success_rate": self.best_success}
        start = self.initial_eval.get("success_rate", float("nan"))
        return PPOResult(self.policy, self.run_dir, final or self.ckpt_root, self.it, self.env_steps, self.elapsed_s,
                         self.initial_eval, self.last_eval, best, self.min_success, self.min_success - start)

    def join_critic(self) -> None:
        """Wait for the background critic update, if one runs (algo.async_critic); log its statistics under the
        iteration whose batch it fitted (kind 'critic')."""
        update, self._critic_update = self._critic_update, None
        if update is not None:
            stats = update.join()
            if self.log is not None:
                env_steps = update.step * self.cfg.batch_size * self.dist.world_size
                self.log.add("critic", update.step, {**stats, "env_steps": env_steps})

    def close(self) -> None:
        """Close the worker processes and the logs (idempotent)."""
        self.join_critic()
        self.envs.close()
        self.evaluator.close()
        if self.log is not None:
            self.log.close()
        ddp.shutdown(self.dist)
