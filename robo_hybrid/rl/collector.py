"""One PPO iteration of experience: step the vector env with the actor, compose the reward, fill the storage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from robo_hybrid.envs.vector import GroupedVectorEnv

from .critic import TIME_KEY
from .ppo import PPO, actor_inputs
from .residual import OnnxBase, ResidualPolicy
from .rollout import EpisodeTracker, HistoryStacker, pop_episodes, stack_final_obs, step_outcome
from .shaping import PotentialShaper, reward_terms, total_reward
from .storage import RolloutStorage


def to_torch(obs: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """numpy obs dict -> tensors on `device` (uint8 images stay uint8)."""
    return {k: torch.as_tensor(np.asarray(v), device=device) for k, v in obs.items()}


@dataclass
class Lane:
    """One env group's share of the rollout: its env rows, history window, episode statistics and shaper."""

    group: int
    rows: slice
    stacker: HistoryStacker
    tracker: EpisodeTracker
    shaper: PotentialShaper | None
    privileged: dict[str, np.ndarray] = field(default_factory=dict)
    pending: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None = None
    """Observation and actor outputs of the step the lane's workers are running now."""


class RolloutCollector:
    """Owns the training vector env's current observations and the actor's history window.

    With a GroupedVectorEnv (algo.env_groups > 1) the rollout is pipelined over its groups: while one group's
    workers step and render, the learner records the other group's step and computes its next actions. Every
    env still acts on its own current observation with the same (frozen during the rollout) policy, so the
    batch is the one a single vector env would give; only the waiting is overlapped.
    """

    def __init__(self, envs: gym.vector.VectorEnv, ppo: PPO, seed: int, shaper: PotentialShaper | None = None) -> None:
        self.envs, self.ppo, self.seed = envs, ppo, seed
        self.grouped = envs if isinstance(envs, GroupedVectorEnv) else GroupedVectorEnv([envs])
        self.num_envs = envs.num_envs
        spec = ppo.actor.spec
        self.policy_keys, self.privileged_keys = tuple(spec.policy_keys), tuple(spec.privileged_keys)
        history = ppo.actor.cfg.history
        self.lanes = [
            Lane(i, rows, HistoryStacker(history, self.policy_keys), EpisodeTracker(rows.stop - rows.start),
                 None if shaper is None else (shaper if i == 0 else shaper.copy()))
            for i, rows in enumerate(self.grouped.slices())
        ]
        # algo.critic.time_input: the critic also reads steps taken / episode length (the env does not emit it)
        self.episode_steps = spec.episode_steps if TIME_KEY in ppo.critic.input_keys else 0
        self._bootstrap: list[tuple[int, np.ndarray, dict[str, np.ndarray]]] = []
        self._starts = self._replays = 0  # episodes started in this rollout / of them from a failed seed
        self.onnx_base = None
        actor = ppo.actor
        if isinstance(actor, ResidualPolicy) and ppo.cfg.base_runtime == "onnx" and ppo.device.type == "cpu":
            self.onnx_base = OnnxBase(actor.base)
        self.started = False

    def start(self) -> None:
        """Reset every env (seeds seed .. seed + N - 1); later episodes continue each env's RNG stream."""
        obs, _ = self.envs.reset(seed=self.seed)
        for lane in self.lanes:
            part = {k: np.asarray(v)[lane.rows] for k, v in obs.items()}
            lane.stacker.reset(part)
            lane.privileged = {k: part[k] for k in self.privileged_keys}
            if lane.shaper is not None:
                lane.shaper.reset(part)
            lane.pending = None
        self.started = True

    def _lane_obs(self, lane: Lane) -> dict[str, np.ndarray]:
        obs = {**lane.stacker.current(), **lane.privileged}
        if self.episode_steps:  # the critic's time input (n, 1): the steps each env's episode has taken / its length
            obs[TIME_KEY] = (lane.tracker.lengths.astype(np.float32) / np.float32(self.episode_steps))[:, None]
        return obs

    def storage_obs(self) -> dict[str, np.ndarray]:
        """What the storage keeps per step: the actor's (stacked) policy keys + the current privileged state."""
        parts = [self._lane_obs(lane) for lane in self.lanes]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def example_obs(self) -> dict[str, np.ndarray]:
        """Current storage observation (shapes / dtypes for allocating the storage), base cache included."""
        if not self.started:
            self.start()
        obs = self.storage_obs()
        cache = self._base_cache(to_torch(obs, self.ppo.device))
        return {**obs, **{k: v.cpu().numpy() for k, v in cache.items()}}

    def _base_cache(self, obs_t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Residual fine-tuning: the frozen base's outputs, once per env step (stored, so updates never rerun it)."""
        actor = self.ppo.actor
        if not isinstance(actor, ResidualPolicy):
            return {}
        inputs = actor_inputs(obs_t, actor.base)
        return self.onnx_base(inputs) if self.onnx_base is not None else actor.base_cache(inputs)

    def _act(self, lane: Lane, stds: list[torch.Tensor]) -> None:
        """The lane's next actions from its current observations; its workers start stepping them."""
        obs_t = to_torch(self._lane_obs(lane), self.ppo.device)
        obs_t.update(self._base_cache(obs_t))
        # acting needs no critic: V(s_t) of the whole batch is computed in one pass after the rollout
        out = self.ppo.act(obs_t, values=False)
        stds.append(out["std"].sum(0).cpu())  # summed over the lane's envs; averaged over all after the rollout
        actions = self.ppo.actor.clip_action(out["actions"]).cpu().numpy().astype(np.float32)
        self.grouped.send(lane.group, actions)
        lane.pending = (obs_t, out)

    def _record(self, lane: Lane, t: int, storage: RolloutStorage, sums: dict[str, float]) -> None:
        """Wait for the lane's step, compose its reward, write row t of its envs into the storage."""
        assert lane.pending is not None
        obs_t, out = lane.pending
        ppo, dev = self.ppo, self.ppo.device
        next_obs, reward, terminated, truncated, info = self.grouped.recv(lane.group)
        terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
        done = terminated | truncated
        success, env_terms = step_outcome(info, done)
        final_idx, final_obs = stack_final_obs(info, done)
        # the return left after the time limit is 0 in the task the policy is evaluated on; a critic that reads the
        # time can know it, so there the time limit ends the episode like a termination (nothing bootstrapped)
        terminal, timeout = (done, np.zeros_like(done)) if self.episode_steps else (terminated, truncated & ~terminated)
        self._queue_bootstrap(t, lane, final_idx, final_obs, timeout)
        shaping = (lane.shaper.step(next_obs, terminated, truncated, final_idx, final_obs)
                   if lane.shaper is not None else None)
        intrinsic = self._intrinsic(next_obs, final_idx, final_obs)
        terms = reward_terms(np.asarray(reward), shaping, intrinsic)
        total = total_reward(terms, {"intrinsic": ppo.cfg.rnd.coef})
        storage.write(t, lane.rows, obs_t, out["actions"], out["log_probs"], out["values"],
                      torch.as_tensor(total, dtype=torch.float32, device=dev),
                      torch.as_tensor(terminal, dtype=torch.float32, device=dev),
                      torch.as_tensor(truncated, dtype=torch.float32, device=dev),
                      torch.zeros(len(done), device=dev),  # V(final obs) of truncations: after the rollout
                      (out["bc_mean"], out["bc_log_std"]) if "bc_mean" in out else None)
        lane.tracker.step(np.asarray(reward, np.float64), done, success)
        if done.any() and "replayed" in info:  # algo.failure_replay: where the episodes starting now come from
            self._starts += int(done.sum())
            self._replays += int(np.asarray(info["replayed"], bool)[done].sum())
        lane.stacker.push(next_obs, done)
        lane.privileged = {k: np.asarray(next_obs[k]) for k in self.privileged_keys}
        share = len(done) / self.num_envs  # lanes' means weighted by their env counts
        for name, v in terms.items():
            sums[f"reward/{name}"] = sums.get(f"reward/{name}", 0.0) + share * float(v.mean())
        for name, v in env_terms.items():  # each weighted term of the env's reward (envs/rewards.py)
            sums[f"reward_terms/{name}"] = sums.get(f"reward_terms/{name}", 0.0) + share * float(v.mean())
        lane.pending = None

    @torch.no_grad()
    def collect(self, storage: RolloutStorage, before_values: Callable[[], None] | None = None) -> dict[str, float]:
        """Fill `storage` with num_steps vectorized steps, then GAE; returns rollout statistics. `before_values`
        runs between the rollout and the critic's first use (the trainer joins a background critic update there)."""
        if not self.started:
            self.start()
        self._bootstrap = []
        self._starts = self._replays = 0
        ppo, dev, T = self.ppo, self.ppo.device, storage.num_steps
        sums: dict[str, float] = {}
        stds: list[torch.Tensor] = []
        for lane in self.lanes:
            self._act(lane, stds)
        for t in range(T):
            for lane in self.lanes:  # the other lanes' workers keep stepping meanwhile
                self._record(lane, t, storage, sums)
                if t + 1 < T:
                    self._act(lane, stds)
        storage.mark_full()
        if before_values is not None:
            before_values()
        self._bootstrap_values(storage)
        last_obs = to_torch(self.storage_obs(), dev)
        self._batch_values(storage)
        last_values = ppo.value(last_obs)
        storage.compute_returns(last_values, ppo.cfg.gamma, ppo.cfg.gae_lambda)
        stats = {k: v / T for k, v in sums.items()}
        stats.update(pop_episodes([lane.tracker for lane in self.lanes]))
        if self._starts:
            stats["replayed_episode_frac"] = self._replays / self._starts
        std = torch.stack(stds).sum(0) / (T * self.num_envs)
        stats["policy/rollout_std"] = float(std.mean())
        stats.update({f"policy/rollout_std_{i}": float(s) for i, s in enumerate(std)})
        if ppo.anchored:  # the BC anchor's std per action dim on these states, as the KL term sees it (clamped)
            bc_std = storage.bc_log_std.exp().mean((0, 1))
            stats.update({f"policy/bc_std_{i}": float(s) for i, s in enumerate(bc_std)})
        stats["value/mean"] = float(storage.values.mean())
        stats["value/return_mean"] = float(storage.returns.mean())
        stats["value/explained_variance"] = explained_variance(storage.values, storage.returns)
        return stats

    def _batch_values(self, storage: RolloutStorage) -> None:
        """Fold the batch into the critic's input statistics, then V(s_t) of every stored step in large batches
        (one pass instead of a small critic call per env step)."""
        critic, T, N = self.ppo.critic, storage.num_steps, storage.num_envs
        obs = {k: v.reshape(T * N, *v.shape[2:]) for k, v in storage.obs.items() if k in critic.input_keys}  # (T*N, ..)
        critic.update_normalizers(obs)
        size = max(1, self.ppo.cfg.minibatch_size)
        raw = torch.cat([critic({k: v[i:i + size] for k, v in obs.items()}) for i in range(0, T * N, size)])
        # the critic's own outputs are also the centre of the update's value clipping (it is unchanged until then)
        storage.value_preds.copy_(raw.view(T, N))  # (T, N)
        storage.value_preds_ready = True
        rms = self.ppo.value_rms
        storage.values.copy_((rms.unnormalize(raw) if self.ppo.cfg.value_normalization else raw).view(T, N))

    def _queue_bootstrap(self, t: int, lane: Lane, final_idx: np.ndarray, final_obs: dict[str, np.ndarray],
                         bootstrap: np.ndarray) -> None:
        """Keep the final observations of the lane's truncated episodes (time limit) for V(s_final), computed in
        one batch after the rollout: the critic may still be updating on the previous batch meanwhile."""
        sel = bootstrap[final_idx] if len(final_idx) else np.zeros(0, bool)
        if sel.any():
            rows = {k: v[sel] for k, v in final_obs.items() if k in self.ppo.critic.input_keys}
            self._bootstrap.append((t, lane.rows.start + final_idx[sel], rows))

    def _bootstrap_values(self, storage: RolloutStorage) -> None:
        """storage.final_values[t, i] = V(final observation) where step t truncated env i's episode."""
        if not self._bootstrap:
            return
        obs = {k: np.concatenate([rows[k] for _, _, rows in self._bootstrap]) for k in self._bootstrap[0][2]}
        values = self.ppo.value(to_torch(obs, self.ppo.device))  # (M,)
        t = torch.as_tensor(np.concatenate([np.full(len(idx), t) for t, idx, _ in self._bootstrap]))
        idx = torch.as_tensor(np.concatenate([idx for _, idx, _ in self._bootstrap]))
        storage.final_values[t, idx] = values.to(storage.final_values.dtype)
        self._bootstrap = []

    def _intrinsic(self, next_obs: dict[str, np.ndarray], final_idx: np.ndarray,
                   final_obs: dict[str, np.ndarray]) -> np.ndarray | None:
        """RND bonus of the state each env reached (its final observation where the episode ended)."""
        rnd = self.ppo.rnd
        if rnd is None:
            return None
        reached = {k: np.array(next_obs[k], copy=True) for k in rnd.keys}
        for k in rnd.keys:
            if len(final_idx):
                reached[k][final_idx] = final_obs[k]
        return rnd.bonus(to_torch(reached, self.ppo.device)).cpu().numpy()


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 - Var[R - V] / Var[R]: 1 = perfect value function, <= 0 = no better than a constant."""
    var = returns.var()
    return float("nan") if var < 1e-12 else float(1.0 - (returns - values).var() / var)


def random_action_stats(envs: gym.vector.VectorEnv, keys: tuple[str, ...], steps: int,
                        seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Mean / std of vector observations under uniform random actions (normalizers of a policy trained from scratch)."""
    obs, _ = envs.reset(seed=seed)
    rows: dict[str, list[np.ndarray]] = {k: [np.asarray(obs[k])] for k in keys}
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        a = rng.uniform(-1, 1, (envs.num_envs, *(envs.single_action_space.shape or ()))).astype(np.float32)
        obs, *_ = envs.step(a)
        for k in keys:
            rows[k].append(np.asarray(obs[k]))
    out = {}
    for k, v in rows.items():
        x = np.concatenate(v).reshape(-1, np.asarray(v[0]).shape[-1]).astype(np.float64)
        out[k] = (x.mean(0), x.std(0))
    return out
