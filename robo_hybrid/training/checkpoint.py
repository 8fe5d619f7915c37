"""Checkpoints: safetensors weights + optimizer state, resolved config YAML, I/O spec JSON, trainer-state JSON.

Layout of a run directory (everything written atomically: temporary name, then os.replace):

    <run_dir>/checkpoints/latest.json            {"step": N, "dir": "step_000000N"}   (best.json likewise)
    <run_dir>/checkpoints/step_000000N/model.safetensors      policy weights + buffers; metadata carries the
                                                              I/O spec and PolicyConfig JSON (self-contained)
                                        optimizer.safetensors  optimizer tensors; metadata: param groups JSON
                                        trainer_state.json     step, RNG states, anything else JSON-able
                                        config.yaml, io_spec.json

A checkpoint directory is built under a temporary name and renamed into place once complete, then the
pointer file is replaced: a kill at any moment leaves the previous checkpoint intact. Nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from robo_hybrid.fileio import atomic_write_bytes, atomic_write_text
from robo_hybrid.policy import MultimodalPolicy, PolicyConfig
from robo_hybrid.spec import IOSpec, SpecMismatchError

FORMAT = "robo_hybrid.policy.v1"
MODEL_FILE, OPTIM_FILE, STATE_FILE = "model.safetensors", "optimizer.safetensors", "trainer_state.json"
CONFIG_FILE, SPEC_FILE = "config.yaml", "io_spec.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, pickle-based, or inconsistent."""


# ----------------------------------------------------------------------------------------- serialization
def policy_to_bytes(policy: MultimodalPolicy, extra_metadata: dict[str, str] | None = None) -> bytes:
    """Serialize the policy's state dict as safetensors; spec and PolicyConfig travel in the metadata."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    meta = {"format": FORMAT, "io_spec": policy.spec.to_json(), "policy_config": json.dumps(asdict(policy.cfg))}
    meta.update(extra_metadata or {})
    return st_save(tensors, metadata=meta)


def save_policy(path: str | Path, policy: MultimodalPolicy, extra_metadata: dict[str, str] | None = None) -> Path:
    """Write a self-contained policy file (weights + spec + PolicyConfig) atomically."""
    atomic_write_bytes(path, policy_to_bytes(policy, extra_metadata))
    return Path(path)


def _pickle_error(path: Path) -> CheckpointError:
    return CheckpointError(
        f"{path} looks like a pickle / torch.save file; refusing to load it (unpickling can run arbitrary code). "
        "Checkpoints of this project are safetensors: re-save the weights with safetensors.torch.save_file."
    )


def _looks_pickled(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
    return path.suffix in PICKLE_SUFFIXES or head[:2] == b"PK" or head[:1] == b"\x80"  # zip (torch.save) / pickle


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; CheckpointError if missing, pickled or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    if path.suffix in PICKLE_SUFFIXES:
        raise _pickle_error(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = st_load(path.read_bytes())
    except (SafetensorError, OSError, ValueError) as e:
        if _looks_pickled(path):
            raise _pickle_error(path) from e
        raise CheckpointError(f"{path} is not a valid safetensors file (truncated or corrupt?): {e}") from e
    return tensors, meta


def read_policy_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a policy file written by save_policy / save_checkpoint."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r} (not a policy file)")
    return tensors, meta


def policy_from_file(path: str | Path, device: str | torch.device = "cpu") -> MultimodalPolicy:
    """Rebuild a MultimodalPolicy from its safetensors file (architecture from the embedded PolicyConfig)."""
    tensors, meta = read_policy_file(path)
    try:
        spec = IOSpec.from_json(meta["io_spec"])
        cfg = PolicyConfig(**json.loads(meta["policy_config"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: missing or malformed metadata ({e!r})") from e
    policy = MultimodalPolicy(cfg, spec)
    try:
        missing, unexpected = policy.load_state_dict(tensors, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise CheckpointError(f"{path}: weights do not fit the architecture in its metadata: {e}") from e
    if missing or unexpected:
        raise CheckpointError(f"{path}: state dict mismatch: missing {missing}, unexpected {unexpected}")
    return policy.to(device).eval()


# ----------------------------------------------------------------------------------------- optimizer
def optimizer_to_bytes(optimizer: torch.optim.Optimizer) -> bytes:
    """Optimizer state as safetensors: tensors as `state.<param>.<name>`, everything else JSON in the metadata."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = v
    meta = {"param_groups": json.dumps(sd["param_groups"]), "scalars": json.dumps(scalars)}
    return st_save(tensors, metadata=meta)


def load_optimizer(optimizer: torch.optim.Optimizer, path: str | Path) -> None:
    """Restore `optimizer` from optimizer_to_bytes output."""
    tensors, meta = read_safetensors(path)
    try:
        groups, scalars = json.loads(meta["param_groups"]), json.loads(meta["scalars"])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable optimizer state ({e})") from e
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = v
    for key, v in scalars.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ----------------------------------------------------------------------------------------- run checkpoints
def save_checkpoint(
    ckpt_root: str | Path,
    step: int,
    policy: MultimodalPolicy,
    optimizer: torch.optim.Optimizer | None = None,
    config_yaml: str = "",
    trainer_state: dict | None = None,
    keep_last: int = 3,
) -> Path:
    """Write <ckpt_root>/step_<N>/ atomically, point latest.json at it, prune older ones (best.json is kept)."""
    root = Path(ckpt_root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    atomic_write_bytes(tmp / MODEL_FILE, policy_to_bytes(policy, {"step": str(step)}))
    if optimizer is not None:
        atomic_write_bytes(tmp / OPTIM_FILE, optimizer_to_bytes(optimizer))
    atomic_write_text(tmp / STATE_FILE, json.dumps({"step": step, **(trainer_state or {})}))
    atomic_write_text(tmp / SPEC_FILE, policy.spec.to_json())
    if config_yaml:
        atomic_write_text(tmp / CONFIG_FILE, config_yaml)
    if final.exists():  # the same step again (after a resume): replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_pointer(root, "latest", step, final.name)
    _prune(root, keep_last)
    return final


def write_pointer(ckpt_root: str | Path, which: str, step: int, dirname: str, **extra: Any) -> None:
    """Atomically point `<ckpt_root>/<which>.json` at a checkpoint directory."""
    atomic_write_text(Path(ckpt_root) / f"{which}.json", json.dumps({"step": step, "dir": dirname, **extra}))


def _read_pointer(root: Path, which: str) -> dict | None:
    p = root / f"{which}.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{p} is corrupt ({e}); delete it to fall back to the newest step_* directory") from e


def _prune(root: Path, keep_last: int) -> None:
    best = _read_pointer(root, "best")
    keep = {best["dir"]} if best else set()
    steps = sorted(p for p in root.glob("step_*") if p.is_dir())
    for p in steps[: max(0, len(steps) - keep_last)]:
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)


def find_checkpoint(path: str | Path, which: str = "latest") -> Path | None:
    """Resolve a run dir, a checkpoints dir, a step dir or a file to a checkpoint directory (None if none)."""
    path = Path(path)
    if path.is_file():
        return path.parent
    if (path / MODEL_FILE).is_file():
        return path
    for root in (path / "checkpoints", path):
        ptr = _read_pointer(root, which) if root.is_dir() else None
        if ptr is not None and (root / ptr["dir"] / MODEL_FILE).is_file():
            return root / ptr["dir"]
        steps = sorted(p for p in root.glob("step_*") if (p / MODEL_FILE).is_file()) if root.is_dir() else []
        if steps and which == "latest":
            return steps[-1]
    return None


def read_trainer_state(ckpt_dir: str | Path) -> dict:
    """The trainer-state JSON of a checkpoint directory."""
    p = Path(ckpt_dir) / STATE_FILE
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{p}: unreadable trainer state ({e})") from e


def load_policy(
    path: str | Path,
    expect_spec: IOSpec | None = None,
    device: str | torch.device = "cpu",
    check_rate: bool = True,
    which: str = "latest",
) -> tuple[MultimodalPolicy, IOSpec, Any]:
    """Load (policy in eval mode, its IOSpec, resolved run config as DictConfig or None) from a run dir,
    checkpoint dir or policy file; SpecMismatchError if `expect_spec` (the env's) is incompatible."""
    p = Path(path)
    if p.is_file():
        file = p
    else:
        ckpt = find_checkpoint(p, which)
        if ckpt is None:
            raise CheckpointError(
                f"no checkpoint found at {p} (looked for {MODEL_FILE}, checkpoints/{which}.json, step_*/); "
                "train first or pass checkpoint=<run_dir or .safetensors file>"
            )
        file = ckpt / MODEL_FILE
    policy = policy_from_file(file, device)
    if expect_spec is not None:
        try:
            policy.spec.require_compatible(expect_spec, what="env", check_rate=check_rate)
        except SpecMismatchError as e:
            raise SpecMismatchError(f"checkpoint {file}:\n{e}") from e
    cfg = None
    if (file.parent / CONFIG_FILE).is_file():
        from omegaconf import OmegaConf

        cfg = OmegaConf.load(file.parent / CONFIG_FILE)
    return policy, policy.spec, cfg
