"""Random network distillation (Burda et al. 2018): a novelty bonus = error of a predictor on a fixed random net.

States visited often are predicted well (small bonus); new ones are not. Inputs are standardized with running
statistics, and the bonus is divided by a running std so that `rnd.coef` has a stable meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn as nn

from .config import RNDConfig
from .critic import current_frame
from .storage import RunningMeanStd

OBS_CLIP = 5.0


def _mlp(dim_in: int, hidden: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                         nn.Linear(hidden, dim_out))


class RND(nn.Module):
    """Target (frozen, random) and predictor MLPs on the concatenated vector observations in `cfg.keys`."""

    def __init__(self, cfg: RNDConfig, dims: dict[str, int], device: str | torch.device = "cpu") -> None:
        super().__init__()
        missing = [k for k in cfg.keys if k not in dims]
        if missing:
            raise ValueError(f"rnd.keys {missing} are not vector observations of this task (have {sorted(dims)})")
        self.cfg, self.keys = cfg, tuple(cfg.keys)
        dim_in = sum(dims[k] for k in self.keys)
        self.target = _mlp(dim_in, cfg.hidden, cfg.out_dim).requires_grad_(False)
        self.predictor = _mlp(dim_in, cfg.hidden, cfg.out_dim)
        self.obs_rms = RunningMeanStd((dim_in,), std_floor=1e-2)
        self.bonus_rms = RunningMeanStd(())
        self.to(device)
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=cfg.learning_rate)

    def _inputs(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        x = torch.cat([current_frame(obs[k], 1).float() for k in self.keys], dim=-1)  # (B, d)
        return self.obs_rms.normalize(x, clip=OBS_CLIP)

    def _error(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self._inputs(obs)
        return (self.predictor(x) - self.target(x)).pow(2).mean(-1)  # (B,)

    @torch.no_grad()
    def bonus(self, obs: dict[str, torch.Tensor], update_stats: bool = True) -> torch.Tensor:
        """Intrinsic reward (B,): prediction error divided by its running std."""
        if update_stats:
            self.obs_rms.update(torch.cat([current_frame(obs[k], 1).float() for k in self.keys], dim=-1))
        err = self._error(obs)
        if update_stats:
            self.bonus_rms.update(err)
        return err / self.bonus_rms.std

    def update(self, obs: dict[str, torch.Tensor],
               sync: Callable[[Iterable[nn.Parameter]], None] | None = None) -> float:
        """One predictor step on a minibatch; returns the distillation loss. `sync` averages gradients (torchrun)."""
        loss = self._error(obs).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if sync is not None:
            sync(self.predictor.parameters())
        self.optimizer.step()
        return loss.item()
