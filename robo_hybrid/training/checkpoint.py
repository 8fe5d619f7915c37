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

Loading never trusts the metadata's architecture: before any module is built, the PolicyConfig is checked against
sane bounds and against the tensor shapes in the file's header (read without loading the data), so a small
crafted file cannot make the loader allocate a huge model.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from robo_hybrid.fileio import atomic_dir, atomic_write_bytes, atomic_write_text
from robo_hybrid.policy import MultimodalPolicy, PolicyConfig
from robo_hybrid.policy.tokenizer import stem_grid
from robo_hybrid.spec import IOSpec, SpecMismatchError

FORMAT = "robo_hybrid.policy.v1"
MODEL_FILE, OPTIM_FILE, STATE_FILE = "model.safetensors", "optimizer.safetensors", "trainer_state.json"
CONFIG_FILE, SPEC_FILE = "config.yaml", "io_spec.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle")
MAX_PARAMS = 1_000_000_000  # a policy file asking for more is refused before anything is built
MAX_TOKENS = 4096  # attention is quadratic in the sequence length
BOUNDS = {"d_model": 8192, "n_layers": 128, "n_heads": 256, "mlp_ratio": 64, "history": 256, "chunk_size": 4096}
MAX_CONV_LAYERS, MAX_CHANNELS, MAX_IMAGE_PX, MAX_VECTOR = 16, 8192, 2048, 1_000_000
# state-dict names of the policy, critic and reward model before the observation tokenizer was one module
LEGACY_KEYS = [(re.compile(r"^vec_tokenizers\.([^.]+)\.net\."), r"tokenizer.vec_tokenizers.\1.0.net."),
               (re.compile(r"^tokenizers\.(.+)_(\d+)\.net\."), r"tokenizer.vec_tokenizers.\1.\2.net."),  # critic
               (re.compile(r"^(obs_normalizers|obs_rms|normalizers)\."), "tokenizer.normalizers."),
               (re.compile(r"^(stems\.|pos_emb$|cam_emb$|vec_emb$|time_emb$|readout$)"), r"tokenizer.\1")]


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
        head = f.read(9)
    # zip (torch.save) or a pickle's PROTO opcode; a safetensors file has its JSON header's '{' at byte 8
    # (its first 8 bytes are the header length, which may well start with 0x80)
    return path.suffix in PICKLE_SUFFIXES or head[:2] == b"PK" or (head[:1] == b"\x80" and head[8:9] != b"{")


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; CheckpointError if missing, pickled or corrupt."""
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = st_load(path.read_bytes())
    except (SafetensorError, OSError, ValueError) as e:
        raise _invalid(path, e) from e
    return tensors, meta


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    if path.suffix in PICKLE_SUFFIXES:
        raise _pickle_error(path)
    return path


def _invalid(path: Path, e: Exception) -> CheckpointError:
    if _looks_pickled(path):
        return _pickle_error(path)
    return CheckpointError(f"{path} is not a valid safetensors file (truncated or corrupt?): {e}")


def read_header(path: str | Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Tensor shapes and metadata from a safetensors header, without reading (or allocating) the tensor data."""
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}, f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise _invalid(path, e) from e


def upgrade_legacy_names(names: dict[str, Any]) -> dict[str, Any]:
    """Rename the state-dict keys (policy, critic or reward model) written before the one observation tokenizer;
    newer names pass unchanged."""
    if "readout" not in names:
        return names
    out = {}
    for k, v in names.items():
        for pattern, repl in LEGACY_KEYS:
            k, n = pattern.subn(repl, k)
            if n:
                break
        out[k] = v
    return out


def estimate_params(cfg: PolicyConfig, spec: IOSpec) -> int:
    """Parameter count implied by a PolicyConfig and spec, from the dominant terms (no module is built)."""
    D, K, A = cfg.d_model, cfg.history, int(np.prod(spec.action.shape))
    cams = len(spec.image_keys)
    chans = [5 if cfg.coord_channels else 3, *cfg.conv_channels, D]
    convs = sum(9 * a * b for a, b in zip(chans[:-1], chans[1:], strict=True))
    stem = 2_800_000 + 256 * D if cfg.image_encoder == "resnet18" else convs  # resnet18 to layer3: 2.8 M
    vectors = sum(int(np.prod(spec.obs(k).shape)) * D + D * D for k in spec.policy_keys if k not in spec.image_keys)
    trunk = cfg.n_layers * (4 + 2 * cfg.mlp_ratio) * D * D
    aux = sum(int(np.prod(t.shape)) for t in spec.privileged) * D  # at most the whole privileged vector
    heads = (2 + cfg.chunk_size) * A * D + aux
    return cams * stem + vectors + trunk + (K + cams + len(spec.policy_keys) + 1) * D + heads


def expected_shapes(cfg: PolicyConfig, spec: IOSpec) -> dict[str, tuple[int, ...]]:
    """Shapes of the tensors that fix the policy's size (width, depth, tokens, stems, heads), from the config alone."""
    D, K, A, L = cfg.d_model, cfg.history, int(np.prod(spec.action.shape)), cfg.n_layers
    cams = tuple(spec.image_keys)
    vectors = tuple(k for k in spec.policy_keys if k not in cams)
    out: dict[str, tuple[int, ...]] = {"tokenizer.readout": (1, 1, D), "tokenizer.time_emb": (K, D),
                                       "tokenizer.cam_emb": (max(len(cams), 1), D),
                                       "tokenizer.vec_emb": (max(len(vectors), 1), D),
                                       "encoder.ln_f.weight": (D,), "action_head.mean.weight": (A, D)}
    for i in range(L):
        out[f"encoder.blocks.{i}.attn.qkv.weight"] = (3 * D, D)
        out[f"encoder.blocks.{i}.mlp.fc.weight"] = (cfg.mlp_ratio * D, D)
    if cfg.chunk_size > 0:
        out["chunk_head.out.weight"] = (cfg.chunk_size * A, D)
    if cams:
        rows, cols = stem_grid(cfg.image_encoder, len(cfg.conv_channels) + 1, spec.obs(cams[0]).shape[0])
        out["tokenizer.pos_emb"] = (max(rows * cols, 1), D)
    chans = [5 if cfg.coord_channels else 3, *cfg.conv_channels, D]
    for cam in cams:
        if cfg.image_encoder == "resnet18":
            out[f"tokenizer.stems.{cam}.proj.weight"] = (D, 256, 1, 1)
        else:
            for i, (c_in, c_out) in enumerate(zip(chans[:-1], chans[1:], strict=True)):
                out[f"tokenizer.stems.{cam}.net.{2 * i}.weight"] = (c_out, c_in, 3, 3)
    for k in vectors:
        out[f"tokenizer.vec_tokenizers.{k}.0.net.0.weight"] = (D, int(np.prod(spec.obs(k).shape)))
    return out


def check_architecture(path: str | Path, cfg: PolicyConfig, spec: IOSpec, shapes: dict[str, tuple[int, ...]]) -> None:
    """CheckpointError (one line) unless the PolicyConfig is within sane bounds and fits the stored tensor shapes."""
    def refuse(why: str) -> CheckpointError:
        """The one-line error for `why`."""
        return CheckpointError(f"{path}: {why}; refusing to build the model")

    for name, cap in BOUNDS.items():
        if not 0 <= getattr(cfg, name) <= cap:
            raise refuse(f"policy_config.{name}={getattr(cfg, name)} is outside [0, {cap}]")
    if len(cfg.conv_channels) > MAX_CONV_LAYERS or max(cfg.conv_channels) > MAX_CHANNELS:
        raise refuse(f"policy_config.conv_channels={cfg.conv_channels[:MAX_CONV_LAYERS + 1]} is too large")
    for t in (*spec.observations, *spec.privileged, spec.action):
        image = t.name in spec.image_keys
        if (image and max(t.shape) > MAX_IMAGE_PX) or (not image and int(np.prod(t.shape)) > MAX_VECTOR):
            raise refuse(f"io_spec tensor '{t.name}' {tuple(t.shape)} is too large")
    n_params = estimate_params(cfg, spec)
    if n_params > MAX_PARAMS:
        raise refuse(f"policy_config implies about {n_params:.2e} parameters (more than {MAX_PARAMS:.0e})")
    stored_layers = {int(m.group(1)) for k in shapes if (m := re.match(r"encoder\.blocks\.(\d+)\.", k))}
    if stored_layers != set(range(cfg.n_layers)):
        raise refuse(f"policy_config.n_layers={cfg.n_layers} but the file holds {len(stored_layers)} blocks")
    for name, want in expected_shapes(cfg, spec).items():
        if shapes.get(name) != want:
            raise refuse(f"policy_config does not fit the stored weights ({name}: config {want}, file "
                         f"{shapes.get(name, 'absent')})")
    tokens = 1 + cfg.history * (len(spec.image_keys) * shapes.get("tokenizer.pos_emb", (0,))[0] + len(spec.policy_keys))
    if tokens > MAX_TOKENS:
        raise refuse(f"policy_config implies {tokens} tokens (more than {MAX_TOKENS})")


def read_policy_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a policy file written by save_policy / save_checkpoint."""
    tensors, meta = read_safetensors(path)
    _check_format(path, meta)
    return upgrade_legacy_names(tensors), meta


def _check_format(path: str | Path, meta: dict[str, str]) -> None:
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r} (not a policy file)")


def policy_from_file(path: str | Path, device: str | torch.device = "cpu") -> MultimodalPolicy:
    """Rebuild a MultimodalPolicy from its safetensors file (architecture from the embedded PolicyConfig, checked
    against bounds and the stored shapes before anything is built)."""
    shapes, meta = read_header(path)
    _check_format(path, meta)
    try:
        spec = IOSpec.from_json(meta["io_spec"])
        cfg = PolicyConfig(**json.loads(meta["policy_config"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: missing or malformed metadata ({e!r})") from e
    check_architecture(path, cfg, spec, upgrade_legacy_names(shapes))
    tensors, _ = read_policy_file(path)
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
    with atomic_dir(final) as tmp:  # the same step again (after a resume) replaces it
        atomic_write_bytes(tmp / MODEL_FILE, policy_to_bytes(policy, {"step": str(step)}))
        if optimizer is not None:
            atomic_write_bytes(tmp / OPTIM_FILE, optimizer_to_bytes(optimizer))
        atomic_write_text(tmp / STATE_FILE, json.dumps({"step": step, **(trainer_state or {})}))
        atomic_write_text(tmp / SPEC_FILE, policy.spec.to_json())
        if config_yaml:
            atomic_write_text(tmp / CONFIG_FILE, config_yaml)
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
