"""Resumable PPO state beside the policy checkpoints: critic, normalizers, RND, optimizers, BC anchor, reward model.

The policy itself goes through `robo_hybrid.training.checkpoint.save_checkpoint` (the BC format, so `eval` and `export`
read PPO runs unchanged). The rest lives in <run_dir>/ppo_state/step_<N>/, written under a temporary name and
renamed into place *before* the policy checkpoint's `latest.json` moves: whichever checkpoint `latest` names
always has its PPO state.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import save as st_save

from robo_hybrid.fileio import atomic_dir, atomic_write_bytes
from robo_hybrid.policy import MultimodalPolicy
from robo_hybrid.training import checkpoint as ckpt

MODULES_FILE, BC_POLICY_FILE = "modules.safetensors", "bc_policy.safetensors"
REWARD_MODEL_FILE = "reward_model.safetensors"


def state_dir(run_dir: str | Path, step: int) -> Path:
    """<run_dir>/ppo_state/step_<N>."""
    return Path(run_dir) / "ppo_state" / f"step_{step:08d}"


def save_ppo_state(run_dir: str | Path, step: int, modules: dict[str, nn.Module],
                   optimizers: dict[str, torch.optim.Optimizer], bc_policy: MultimodalPolicy | None,
                   reward_model_path: str | Path | None = None) -> Path:
    """Write the PPO state of iteration `step` atomically (a directory renamed into place)."""
    final = state_dir(run_dir, step)
    tensors = {f"{name}.{k}": v.detach().cpu().contiguous() for name, m in modules.items()
               for k, v in m.state_dict().items()}
    with atomic_dir(final) as tmp:
        atomic_write_bytes(tmp / MODULES_FILE, st_save(tensors, metadata={"modules": ",".join(modules)}))
        for name, opt in optimizers.items():
            atomic_write_bytes(tmp / f"{name}.safetensors", ckpt.optimizer_to_bytes(opt))
        if bc_policy is not None:
            atomic_write_bytes(tmp / BC_POLICY_FILE, ckpt.policy_to_bytes(bc_policy))
        if reward_model_path is not None:
            shutil.copyfile(reward_model_path, tmp / REWARD_MODEL_FILE)
    return final


def load_ppo_state(path: str | Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                   bc_policy: MultimodalPolicy | None = None) -> None:
    """Restore modules, optimizers and the frozen BC anchor in place from a directory written by save_ppo_state."""
    path = Path(path)
    if bc_policy is not None:
        bc_policy.load_state_dict(ckpt.read_policy_file(path / BC_POLICY_FILE)[0])
    tensors, _ = ckpt.read_safetensors(path / MODULES_FILE)
    for name, m in modules.items():
        prefix = f"{name}."
        sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        sd = ckpt.upgrade_legacy_names(sd)  # a PPO state written before the one observation tokenizer
        missing, unexpected = m.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise ckpt.CheckpointError(f"{path}: '{name}' state mismatch: missing {missing}, unexpected {unexpected}")
    for name, opt in optimizers.items():
        ckpt.load_optimizer(opt, path / f"{name}.safetensors")


def prune_ppo_state(run_dir: str | Path) -> None:
    """Delete PPO state directories whose policy checkpoint no longer exists."""
    root = Path(run_dir) / "ppo_state"
    alive = {p.name for p in (Path(run_dir) / "checkpoints").glob("step_*")}
    for p in root.glob("step_*"):
        if p.name not in alive:
            shutil.rmtree(p, ignore_errors=True)
