"""Clipped PPO (Schulman et al. 2017) for the multimodal policy with an asymmetric transformer critic.

Loss pieces are small functions (tested on tiny tensors); `PPO` owns the actor, the critic, the frozen BC
reference, the optimizers and the value normalizer, and turns a filled `RolloutStorage` into updates.
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Iterator

import torch
import torch.nn as nn
from torch.distributions import Independent

from robo_hybrid.policy import HISTORY_MASK_KEY, HeadOutputs, MultimodalPolicy
from robo_hybrid.training import distributed as ddp

from .config import KL_REGULARIZERS, PPOConfig, linear_schedule
from .critic import MLPCritic, TransformerCritic
from .residual import BASE_LOG_STD, BASE_MEAN, CACHE_KEYS, ResidualPolicy
from .rnd import RND
from .storage import RolloutStorage, RunningMeanStd

Actor = MultimodalPolicy | ResidualPolicy


# ----------------------------------------------------------------------------------------------- loss pieces
def clipped_surrogate_loss(
    log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor, clip_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO-clip policy loss and the fraction of samples whose ratio was clipped."""
    # probability ratio: r = pi(a|s) / pi_old(a|s) = exp(log pi - log pi_old)
    ratio = torch.exp(log_probs - old_log_probs)
    # surrogate: L = -E[ min(r * A, clip(r, 1 - eps, 1 + eps) * A) ]  (pessimistic bound on the improvement)
    surrogate = ratio * advantages
    surrogate_clipped = torch.clamp(ratio, 1.0 - clip_coef, 1.0 + clip_coef) * advantages
    loss = -torch.min(surrogate, surrogate_clipped).mean()
    clip_frac = ((ratio - 1.0).abs() > clip_coef).float().mean()
    return loss, clip_frac


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip_coef: float
) -> torch.Tensor:
    """Value loss 0.5 * max((V - R)^2, (V_clip - R)^2), V_clip = V_old + clip(V - V_old, -eps, eps); eps=0: MSE."""
    loss = (values - returns).pow(2)
    if clip_coef > 0:
        # the value may move at most eps away from its rollout estimate per update (as the policy ratio)
        values_clipped = old_values + torch.clamp(values - old_values, -clip_coef, clip_coef)
        loss = torch.max(loss, (values_clipped - returns).pow(2))
    return 0.5 * loss.mean()


def approx_kl(log_probs: torch.Tensor, old_log_probs: torch.Tensor) -> torch.Tensor:
    """Estimate of KL(pi_old || pi) from samples of pi_old: E[(r - 1) - log r] (Schulman's k3: >= 0, unbiased)."""
    log_ratio = log_probs - old_log_probs
    return ((torch.exp(log_ratio) - 1.0) - log_ratio).mean()


def gaussian_kl(mean_p: torch.Tensor, log_std_p: torch.Tensor, mean_q: torch.Tensor,
                log_std_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) of diagonal Gaussians, summed over the last axis: (B, A) -> (B,)."""
    # per dim: log(s_q / s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2
    var_p, var_q = (2 * log_std_p).exp(), (2 * log_std_q).exp()
    kl = log_std_q - log_std_p + (var_p + (mean_p - mean_q).pow(2)) / (2 * var_q) - 0.5
    return kl.sum(-1)


def actor_inputs(obs: dict[str, torch.Tensor], policy: Actor) -> dict[str, torch.Tensor]:
    """Only the deployable inputs: the spec's policy keys (+ the history mask), and for a residual policy the base's
    cached outputs (computed from those same inputs); never privileged state."""
    keys = tuple(policy.spec.policy_keys) + ((HISTORY_MASK_KEY,) if policy.cfg.history > 1 else ())
    if isinstance(policy, ResidualPolicy):
        keys += CACHE_KEYS
    return {k: obs[k] for k in keys if k in obs}


# ----------------------------------------------------------------------------------------------- algorithm
class PPO:
    """Actor-critic PPO with BC regularization, critic warm-up, entropy schedule, std bounds and optional RND."""

    def __init__(self, actor: Actor, critic: TransformerCritic | MLPCritic, cfg: PPOConfig,
                 bc_policy: MultimodalPolicy | None = None, rnd: RND | None = None,
                 demo_batches: Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]] | None = None,
                 dist: ddp.DistInfo | None = None) -> None:
        self.cfg, self.device = cfg, torch.device(cfg.device)
        # under torchrun every rank updates on its own rollouts and the gradients are averaged over ranks after
        # each backward (all_reduce_gradients), so the ranks' networks stay identical; decisions that change the
        # control flow (target-KL stop) use the global KL
        self.dist_info = dist or ddp.DistInfo()
        self.actor, self.critic, self.rnd = actor.to(self.device), critic.to(self.device), rnd
        # frozen copy of the pretrained policy: the anchor of the KL regularizer
        self.residual = isinstance(actor, ResidualPolicy)
        if bc_policy is None and cfg.bc_reg in KL_REGULARIZERS and isinstance(actor, MultimodalPolicy):
            bc_policy = copy.deepcopy(actor)  # (residual: the frozen base's cached outputs are the anchor)
        self.bc_policy = bc_policy.to(self.device).eval().requires_grad_(False) if bc_policy is not None else None
        if cfg.bc_reg == "bc_nll" and demo_batches is None:
            raise ValueError("algo.bc_reg=bc_nll needs demonstrations: pass data=<demo file> (or use bc_reg=kl)")
        self.demo_batches = demo_batches
        # only the trainable weights (residual: the head; partial: the last blocks and the heads)
        lr = cfg.residual.learning_rate if self.residual else cfg.learning_rate
        # foreach: one fused kernel per step over all the small tensors (the step is op-overhead bound on CPU)
        self.actor_optimizer = torch.optim.Adam(self.trainable(), lr=lr, eps=1e-5, foreach=True)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_learning_rate, eps=1e-5,
                                                 foreach=True)
        self.value_rms = RunningMeanStd((), std_floor=cfg.value_norm_std_floor).to(self.device)
        self.log_std_bounds = (math.log(cfg.std_min), math.log(cfg.std_max))

    @property
    def anchored(self) -> bool:
        """Rollout steps carry the BC anchor's outputs (bc_mean, bc_log_std): the residual's frozen base, or the
        frozen copy of a KL regularizer."""
        return self.residual or self.bc_policy is not None

    def trainable(self) -> list[nn.Parameter]:
        """The actor parameters PPO updates (a frozen base's are left out)."""
        return [p for p in self.actor.parameters() if p.requires_grad]

    # ----- schedules -----
    def entropy_coef(self, it: int) -> float:
        """Entropy-bonus weight at iteration `it` (linear anneal)."""
        return linear_schedule(self.cfg.entropy_coef, self.cfg.entropy_coef_final, self.cfg.entropy_anneal_iters, it)

    def bc_reg_coef(self, it: int) -> float:
        """BC-regularizer weight at iteration `it` (linear anneal); 0 when bc_reg='none'."""
        if self.cfg.bc_reg == "none":
            return 0.0
        return linear_schedule(self.cfg.bc_reg_coef, self.cfg.bc_reg_coef_final, self.cfg.bc_reg_anneal_iters, it)

    def actor_frozen(self, it: int) -> bool:
        """True during the critic warm-up."""
        return it < self.cfg.critic_warmup_iters

    # ----- acting -----
    def policy_output(self, obs: dict[str, torch.Tensor]) -> HeadOutputs:
        """Actor head outputs with the log-std bounded to [log std_min, log std_max] (normalized action units)."""
        out = self.actor(actor_inputs(obs, self.actor))
        return out._replace(log_std=out.log_std.clamp(*self.log_std_bounds))

    def dist(self, out: HeadOutputs) -> Independent:
        """Action distribution in actuator units (unclipped)."""
        return self.actor.dist_from_output(out)

    def value(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """V(s) (B,) in return units (un-normalized)."""
        v = self.critic(obs)
        return self.value_rms.unnormalize(v) if self.cfg.value_normalization else v

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], values: bool = True) -> dict[str, torch.Tensor]:
        """Sample actions for a rollout step: actions (unclipped), log_probs, values (zeros when `values` is False:
        the collector computes them for the whole batch afterwards), BC head outputs, std."""
        self.actor.eval()
        out = self.policy_output(obs)
        d = self.dist(out)
        actions = d.sample()
        v = self.value(obs) if values else torch.zeros(actions.shape[0], device=actions.device)
        res = {"actions": actions, "log_probs": d.log_prob(actions), "values": v, "std": out.log_std.exp()}
        if self.residual and BASE_MEAN in obs:  # the frozen base is the BC anchor: its outputs are already cached
            res["bc_mean"], res["bc_log_std"] = obs[BASE_MEAN], obs[BASE_LOG_STD].clamp(*self.log_std_bounds)
        elif self.bc_policy is not None:
            bc = self.bc_policy(actor_inputs(obs, self.bc_policy))
            res["bc_mean"], res["bc_log_std"] = bc.mean, bc.log_std.clamp(*self.log_std_bounds)
        return res

    # ----- learning -----
    def update(self, storage: RolloutStorage, it: int, critic: bool = True) -> dict[str, float]:
        """PPO epochs over one batch; returns mean losses and diagnostics. critic=False leaves the critic's epochs
        to `start_critic_update` (call it after this, before the storage is refilled)."""
        cfg = self.cfg
        if cfg.value_normalization:
            self.value_rms.update(ddp.all_gather_cat(storage.returns, self.dist_info))  # same statistics on every rank
        if not storage.value_preds_ready:  # the collector leaves the critic's outputs of this batch in the storage
            storage.value_preds = self._value_predictions(storage)
        frozen, ent_coef, reg_coef = self.actor_frozen(it), self.entropy_coef(it), self.bc_reg_coef(it)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        actor_updates, early_stop = 0, False
        self.actor.train(cfg.augment)
        for batch in storage.minibatches(cfg.num_minibatches, cfg.num_epochs, obs_keys=self._update_keys(storage)):
            obs = batch["obs"]
            assert isinstance(obs, dict)
            stats: dict[str, float] = {}
            if not (frozen or early_stop):
                stats = self._actor_step(batch, obs, ent_coef, reg_coef)
                # target-KL early stop ends the actor's epochs only; the critic keeps fitting the returns
                early_stop = bool(stats.pop("stop", 0.0))
                actor_updates += 0 if early_stop else 1
            if critic:
                stats.update(self._critic_step(batch, obs))
            if self.rnd is not None:
                stats["rnd_loss"] = self.rnd.update(obs, sync=lambda ps: ddp.all_reduce_gradients(ps, self.dist_info))
            for k, v in stats.items():
                sums[k], counts[k] = sums.get(k, 0.0) + float(v), counts.get(k, 0) + 1
        self.actor.eval()
        out = {k: v / counts[k] for k, v in sums.items()}
        out.update(entropy_coef=ent_coef, bc_reg_coef=reg_coef, actor_frozen=float(frozen),
                   early_stop=float(early_stop), actor_updates=float(actor_updates),
                   value_rms_std=float(self.value_rms.std))
        return out

    def start_critic_update(self, storage: RolloutStorage, seed: int, step: int = 0) -> CriticUpdate:
        """The critic's epochs over this batch in a background thread (on a copy of what it reads, so the next
        rollout may refill the storage meanwhile). The rollout never reads the critic; join before its values."""
        obs_keys = tuple(self.critic.input_keys)
        n = storage.num_steps * storage.num_envs
        returns = storage.returns.reshape(n)  # (T*N,)
        if self.cfg.value_normalization:
            returns = self.value_rms.normalize(returns)  # the statistics update() folded this batch into
        data = {"obs": {k: storage.obs[k].reshape(n, *storage.obs[k].shape[2:]).clone() for k in obs_keys},
                "returns": returns.clone(), "value_preds": storage.value_preds.reshape(n).clone()}
        return CriticUpdate(self, data, seed, step)

    def _update_keys(self, storage: RolloutStorage) -> tuple[str, ...] | None:
        """Observations an update reads; a residual actor with cached base outputs needs no images (None: all)."""
        if not (self.residual and BASE_MEAN in storage.obs):
            return None
        keys = set(CACHE_KEYS) | set(self.critic.input_keys) | set(self.rnd.keys if self.rnd is not None else ())
        return tuple(keys)

    @torch.no_grad()
    def _value_predictions(self, storage: RolloutStorage) -> torch.Tensor:
        """The critic's outputs (T, N) on the batch at the start of the update, in its own (normalized) units.

        Value clipping is centred on these rather than on the rollout values: once the return statistics have
        moved, normalized rollout values can sit far from what the critic outputs, and clipping around them would
        zero the critic's gradient (it then never learns more than the mean)."""
        T, N = storage.num_steps, storage.num_envs
        obs = {k: v.reshape(T * N, *v.shape[2:]) for k, v in storage.obs.items()}  # (T*N, ...)
        size = max(1, self.cfg.minibatch_size)
        preds = [self.critic({k: v[i:i + size] for k, v in obs.items()}) for i in range(0, T * N, size)]
        return torch.cat(preds).view(T, N)

    def _critic_step(self, batch: dict, obs: dict[str, torch.Tensor], normalized: bool = False) -> dict[str, float]:
        returns, old_values = batch["returns"], batch["value_preds"]
        if self.cfg.value_normalization and not normalized:
            # the critic learns standardized returns (running statistics of the lambda-returns)
            returns = self.value_rms.normalize(returns)
        values = self.critic(obs)
        value_loss = clipped_value_loss(values, old_values, returns, self.cfg.value_clip_coef)
        self.critic_optimizer.zero_grad(set_to_none=True)
        (self.cfg.value_loss_coef * value_loss).backward()
        ddp.all_reduce_gradients(self.critic.parameters(), self.dist_info)
        grad_norm = nn.utils.clip_grad_norm_(self.critic.parameters(), self.cfg.max_grad_norm, foreach=True)
        self.critic_optimizer.step()
        return {"value_loss": value_loss.item(), "critic_grad_norm": float(grad_norm)}

    def _actor_step(self, batch: dict, obs: dict[str, torch.Tensor], ent_coef: float,
                    reg_coef: float) -> dict[str, float]:
        cfg = self.cfg
        out = self.policy_output(obs)
        d = self.dist(out)
        log_probs, entropy = d.log_prob(batch["actions"]), d.entropy()
        kl = approx_kl(log_probs, batch["log_probs"])
        if cfg.target_kl > 0 and ddp.all_mean(kl.item(), self.dist_info) > 1.5 * cfg.target_kl:
            # trust region left: stop this iteration's epochs before the step that would overshoot
            return {"stop": 1.0, "approx_kl": kl.item()}
        adv = batch["advantages"]
        if cfg.normalize_advantages and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        policy_loss, clip_frac = clipped_surrogate_loss(log_probs, batch["log_probs"], adv, cfg.clip_coef)
        # entropy bonus: maximise H[pi(.|s)] -> minimise -c_H * H
        loss = policy_loss - ent_coef * entropy.mean()
        reg = self._bc_regularizer(batch, out)
        loss = loss + reg_coef * reg
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = self.trainable()
        ddp.all_reduce_gradients(params, self.dist_info)
        grad_norm = nn.utils.clip_grad_norm_(params, cfg.max_grad_norm, foreach=True)
        self.actor_optimizer.step()
        return {"policy_loss": policy_loss.item(), "entropy": entropy.mean().item(), "approx_kl": kl.item(),
                "clip_frac": clip_frac.item(), "bc_reg": reg.item(), "actor_grad_norm": float(grad_norm),
                "std": out.log_std.exp().mean().item()}

    def _bc_regularizer(self, batch: dict, out: HeadOutputs) -> torch.Tensor:
        """KL(pi || pi_BC) (or its mean term) on the rollout states, or the NLL of demo actions; 0 when switched off."""
        if self.cfg.bc_reg == "kl":
            # analytic KL between the current and the frozen pretrained Gaussian (normalized action units)
            return gaussian_kl(out.mean, out.log_std, batch["bc_mean"], batch["bc_log_std"]).mean()
        if self.cfg.bc_reg == "kl_mean":
            # the same KL with the policy's std set to the anchor's: only the mean term remains
            return gaussian_kl(out.mean, batch["bc_log_std"], batch["bc_mean"], batch["bc_log_std"]).mean()
        if self.cfg.bc_reg == "bc_nll":
            assert self.demo_batches is not None
            demo_obs, demo_actions = next(self.demo_batches)
            # behaviour cloning term: -E_demo[log pi(a_demo | s_demo)]
            return -self.dist(self.policy_output(demo_obs)).log_prob(demo_actions).mean()
        return torch.zeros((), device=self.device)

    # ----- state for resume -----
    def modules(self) -> dict[str, nn.Module]:
        """Named modules whose state a resumable checkpoint must hold."""
        mods: dict[str, nn.Module] = {"critic": self.critic, "value_rms": self.value_rms}
        if isinstance(self.actor, ResidualPolicy):  # the base is the policy checkpoint; the head lives here too
            mods["residual"] = self.actor.head
        if self.rnd is not None:
            mods["rnd"] = self.rnd
        return mods

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Named optimizers (RND's included)."""
        opts: dict[str, torch.optim.Optimizer] = {"actor_optimizer": self.actor_optimizer,
                                                  "critic_optimizer": self.critic_optimizer}
        if self.rnd is not None:
            opts["rnd_optimizer"] = self.rnd.optimizer
        return opts



class CriticUpdate:
    """One batch's critic epochs (algo.async_critic) running in a thread beside the next rollout: the same
    minibatch steps as in `PPO.update`, on a copy of the batch, with its own shuffling generator. PyTorch's
    kernels and autograd release the GIL, so the learner's core fits it while it waits on the env workers."""

    def __init__(self, ppo: PPO, data: dict, seed: int, step: int = 0) -> None:
        self.ppo, self.data, self.step = ppo, data, step
        self.generator = torch.Generator().manual_seed(seed)
        self.stats: dict[str, float] = {}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="critic-update", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            cfg, data = self.ppo.cfg, self.data
            n = data["returns"].shape[0]
            size = n // cfg.num_minibatches
            sums: dict[str, float] = {}
            steps = 0
            for _ in range(cfg.num_epochs):
                perm = torch.randperm(n, generator=self.generator).to(data["returns"].device)
                for i in range(cfg.num_minibatches):
                    idx = perm[i * size:(i + 1) * size]
                    batch = {"returns": data["returns"][idx], "value_preds": data["value_preds"][idx]}
                    stats = self.ppo._critic_step(batch, {k: v[idx] for k, v in data["obs"].items()}, normalized=True)
                    for k, v in stats.items():
                        sums[k] = sums.get(k, 0.0) + v
                    steps += 1
            self.stats = {k: v / max(steps, 1) for k, v in sums.items()}
        except BaseException as e:  # re-raised by join() in the trainer's thread
            self.error = e

    def join(self) -> dict[str, float]:
        """Wait for the update; its mean value loss and gradient norm (re-raises what the thread raised)."""
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.stats
