"""Reward composition for PPO: named terms (task, shaping, intrinsic) and potential-based shaping (Ng et al. 1999).

F(s, s') = gamma * Phi(s') - Phi(s), with Phi(s') = 0 when s' is terminal. Added to the task reward it leaves
the optimal policy unchanged: along any episode the shaping terms telescope to -Phi(s_0) (plus a discounted
Phi(s_T) on truncation, where the critic's bootstrap continues the sum).
"""

from __future__ import annotations

import numpy as np
import torch

from .reward_model import RewardModel
from .rollout import HistoryStacker


def potential_shaping(phi: torch.Tensor, phi_next: torch.Tensor, terminated: torch.Tensor,
                      gamma: float) -> torch.Tensor:
    """F = gamma * Phi(s') - Phi(s), Phi(s') := 0 when s' is terminal (truncated states keep their potential)."""
    return gamma * (1.0 - terminated.float()) * phi_next - phi


def reward_terms(task: np.ndarray, shaping: np.ndarray | None = None,
                 intrinsic: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The named per-step reward terms PPO optimizes (each logged); absent terms are zeros."""
    zeros = np.zeros_like(task, dtype=np.float64)
    return {
        "task": np.asarray(task, np.float64),
        "shaping": zeros if shaping is None else np.asarray(shaping, np.float64),
        "intrinsic": zeros if intrinsic is None else np.asarray(intrinsic, np.float64),
    }


def total_reward(terms: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Weighted sum of named terms (a term without a weight counts once)."""
    return sum(weights.get(k, 1.0) * v for k, v in terms.items())  # type: ignore[return-value]


class PotentialShaper:
    """Tracks Phi of every env's current state (with the model's history window) and returns F per step."""

    def __init__(self, model: RewardModel, gamma: float, device: str | torch.device = "cpu") -> None:
        self.model, self.gamma, self.device = model.eval(), float(gamma), torch.device(device)
        self.stacker = HistoryStacker(model.cfg.history, model.input_keys, always_stack=True)
        self.phi = torch.zeros(0)

    def copy(self) -> PotentialShaper:
        """A shaper with the same model and its own per-env state (one per env group of a pipelined rollout)."""
        return PotentialShaper(self.model, self.gamma, self.device)

    def _potential(self, windows: dict[str, np.ndarray]) -> torch.Tensor:
        return self.model.potential({k: torch.as_tensor(v, device=self.device) for k, v in windows.items()}).cpu()

    def reset(self, obs: dict[str, np.ndarray]) -> None:
        """Potentials of the first observations (N envs)."""
        self.phi = self._potential(self.stacker.reset(obs))

    def step(self, next_obs: dict[str, np.ndarray], terminated: np.ndarray, truncated: np.ndarray,
             final_idx: np.ndarray, final_obs: dict[str, np.ndarray]) -> np.ndarray:
        """Shaping term (N,) of the step just taken; `next_obs` already holds reset observations where it ended."""
        term = torch.as_tensor(np.asarray(terminated), dtype=torch.float32)
        done = np.logical_or(terminated, truncated)
        # value of Phi at the state reached: the final observation where the episode ended (0 if terminal)
        phi_end = torch.zeros(len(done))
        if len(final_idx):
            phi_end[final_idx] = self._potential(self.stacker.peek(final_obs, final_idx))
        phi_new = self._potential(self.stacker.push(next_obs, done))  # next state, or the new episode's first
        phi_next = torch.where(torch.as_tensor(done), phi_end, phi_new)
        shaping = potential_shaping(self.phi, phi_next, term, self.gamma)
        self.phi = phi_new
        return shaping.numpy()
