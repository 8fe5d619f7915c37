"""Rollout storage and generalized advantage estimation (GAE), with truncation handled by bootstrapping.

Termination (the task ended: success) and truncation (the time limit hit) differ: after a termination the
future return is 0, after a truncation the episode *would* have gone on, so its tail is bootstrapped with the
critic's value of the final observation V(s_final). Both cut the GAE recursion (the next stored step belongs
to a new episode).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    last_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    final_values: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns (T, N) from per-step rewards / values / episode ends (Schulman et al. 2016).

    rewards, values, terminated, truncated, final_values: (T, N); last_values: (N,) = V(s_T) of the observation
    after the last stored step. final_values[t] = V(final observation) where step t ended an episode by
    truncation (ignored elsewhere).
    """
    T = rewards.shape[0]
    term = terminated.float()
    done = torch.maximum(term, truncated.float())
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros_like(last_values)
    for t in reversed(range(T)):
        # value of the next state: the next stored step, or -- where this step ended an episode -- the final
        # observation of that episode (the next stored step already belongs to a fresh episode)
        next_in_batch = values[t + 1] if t + 1 < T else last_values
        next_values = torch.where(done[t] > 0, final_values[t], next_in_batch)
        # TD error: r + gamma * V(s') - V(s), with V(s') = 0 after a termination (bootstrap only on truncation)
        delta = rewards[t] + gamma * (1.0 - term[t]) * next_values - values[t]
        # GAE: A_t = delta_t + gamma * lambda * A_{t+1}, the recursion cut at episode ends
        last_gae = delta + gamma * gae_lambda * (1.0 - done[t]) * last_gae
        advantages[t] = last_gae
    # lambda-return target of the critic: R_t = A_t + V(s_t)
    returns = advantages + values
    return advantages, returns


class RunningMeanStd(torch.nn.Module):
    """Running mean / variance over batches (parallel Welford, Chan et al.); buffers, so they are checkpointed."""

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4, std_floor: float = 1e-6) -> None:
        super().__init__()
        self.std_floor = float(std_floor)
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(epsilon, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold a batch (N, *shape) into the statistics."""
        x = x.detach().reshape(-1, *self.mean.shape).double()
        b_mean, b_var, b_count = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta = b_mean - self.mean
        total = self.count + b_count
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.mean.copy_(self.mean + delta * b_count / total)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    @property
    def std(self) -> torch.Tensor:
        """Standard deviation (float32, floored at std_floor)."""
        return self.var.sqrt().clamp_min(self.std_floor).float()

    def normalize(self, x: torch.Tensor, clip: float | None = None) -> torch.Tensor:
        """(x - mean) / std, optionally clipped."""
        y = (x - self.mean.float()) / self.std
        return y if clip is None else y.clamp(-clip, clip)

    def unnormalize(self, y: torch.Tensor) -> torch.Tensor:
        """Inverse of normalize (without clip)."""
        return y * self.std + self.mean.float()


class RolloutStorage:
    """Fixed-size (T, N) buffer of one iteration's transitions, then flattened minibatches for the update.

    `obs` holds every key the env returns (policy keys, `privileged`, `history_mask` when the actor has history);
    who reads which key is decided by the actor / critic, and the actor only ever gets `spec.policy_keys`.
    """

    def __init__(self, num_steps: int, num_envs: int, obs_example: dict[str, np.ndarray], action_dim: int,
                 device: str | torch.device = "cpu") -> None:
        T, N = num_steps, num_envs
        self.num_steps, self.num_envs, self.device = T, N, torch.device(device)
        self.obs = {
            k: torch.zeros((T, N, *np.asarray(v).shape[1:]), dtype=torch.from_numpy(np.asarray(v)[:1]).dtype,
                           device=self.device)
            for k, v in obs_example.items()
        }
        zeros = lambda *s: torch.zeros((T, N, *s), device=self.device)  # noqa: E731
        self.actions = zeros(action_dim)  # unclipped samples, actuator units
        self.log_probs = zeros()
        self.values = zeros()  # un-normalized V(s_t)
        self.rewards = zeros()  # total reward fed to GAE (task + shaping + intrinsic)
        self.terminated = zeros()
        self.truncated = zeros()
        self.final_values = zeros()  # V(final obs) where step t ended an episode (used on truncation)
        self.bc_mean = zeros(action_dim)  # frozen BC policy head outputs (normalized units) for the KL regularizer
        self.bc_log_std = zeros(action_dim)
        self.advantages = zeros()
        self.returns = zeros()
        self.value_preds = zeros()  # critic outputs at the start of the update (centre of value clipping)
        self.value_preds_ready = False  # True once the collector stored this batch's critic outputs
        self.step = 0

    def add(self, obs: dict[str, torch.Tensor], actions: torch.Tensor, log_probs: torch.Tensor, values: torch.Tensor,
            rewards: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor, final_values: torch.Tensor,
            bc_out: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Store the next vectorized step (everything (N, ...))."""
        if self.step >= self.num_steps:
            raise IndexError("RolloutStorage is full; call clear() after the update")
        self.write(self.step, slice(None), obs, actions, log_probs, values, rewards, terminated, truncated,
                   final_values, bc_out)
        self.step += 1

    def write(self, t: int, envs: slice, obs: dict[str, torch.Tensor], actions: torch.Tensor,
              log_probs: torch.Tensor, values: torch.Tensor, rewards: torch.Tensor, terminated: torch.Tensor,
              truncated: torch.Tensor, final_values: torch.Tensor,
              bc_out: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Store step t of the envs `envs` (a group's rows; everything (n, ...)); `mark_full` once all are in."""
        for k, v in obs.items():
            self.obs[k][t, envs].copy_(v)
        self.actions[t, envs].copy_(actions)
        self.log_probs[t, envs].copy_(log_probs)
        self.values[t, envs].copy_(values)
        self.rewards[t, envs].copy_(rewards)
        self.terminated[t, envs].copy_(terminated)
        self.truncated[t, envs].copy_(truncated)
        self.final_values[t, envs].copy_(final_values)
        if bc_out is not None:
            self.bc_mean[t, envs].copy_(bc_out[0])
            self.bc_log_std[t, envs].copy_(bc_out[1])

    def mark_full(self) -> None:
        """Every step of every env was written with `write`."""
        self.step = self.num_steps

    def clear(self) -> None:
        """Start filling from step 0 again."""
        self.step = 0
        self.value_preds_ready = False

    def compute_returns(self, last_values: torch.Tensor, gamma: float, gae_lambda: float) -> None:
        """Fill `advantages` and `returns` with GAE."""
        self.advantages, self.returns = compute_gae(
            self.rewards, self.values, last_values, self.terminated, self.truncated, self.final_values,
            gamma, gae_lambda,
        )

    def minibatches(self, num_minibatches: int, num_epochs: int, generator: torch.Generator | None = None,
                    obs_keys: tuple[str, ...] | None = None) -> Iterator[dict[str, torch.Tensor | dict]]:
        """Shuffled minibatches over num_epochs passes; each a dict of flattened (B, ...) tensors. `obs_keys`: only
        these observations (None: all), e.g. no images when neither the update's actor nor its critic reads them."""
        n = self.num_steps * self.num_envs
        size = n // num_minibatches
        flat = lambda x: x.reshape(n, *x.shape[2:])  # noqa: E731  (T, N, ...) -> (T*N, ...)
        obs = {k: flat(v) for k, v in self.obs.items() if obs_keys is None or k in obs_keys}
        fields = {name: flat(getattr(self, name)) for name in
                  ("actions", "log_probs", "values", "value_preds", "advantages", "returns", "bc_mean", "bc_log_std")}
        for _ in range(num_epochs):
            perm = torch.randperm(n, generator=generator, device="cpu").to(self.device)
            for i in range(num_minibatches):
                idx = perm[i * size:(i + 1) * size]
                batch: dict[str, torch.Tensor | dict] = {name: v[idx] for name, v in fields.items()}
                batch["obs"] = {k: v[idx] for k, v in obs.items()}
                yield batch
