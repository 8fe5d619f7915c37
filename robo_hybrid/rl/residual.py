"""Residual RL on a frozen BC policy (ResiP, Ankile et al. 2024; Policy Decorator, Yuan et al. 2024).

The executed action is the frozen base's action plus a bounded correction:

    a = base_mean(s) + scale * tanh(r(features(s), base_mean(s)[, state(s)]))      (normalized action units)

with `r` a small MLP whose last layer starts at zero, so at step 0 the residual policy acts exactly as BC
(`state`, read with `residual.state_inputs`: the base's own vector inputs of the latest step, proprio and goal,
normalized as its tokens see them; ResiP's residual reads the observation beside the base action). The
base's outputs are computed once per env step (`base_cache`) and stored in the rollout buffer under CACHE keys;
PPO's updates then run only the residual head (and the critic), never the base's tokenizer or transformer. The
base receives no gradient. `ResidualPolicy` has the `MultimodalPolicy` acting API the evaluator and the exporter
use (`spec`, `cfg`, `act`, `as_onnx`), and exports with the base as one ONNX graph (raw sensors in, action out).
The base's action is its Gaussian mean (what the training-side evaluator executes); a base with a chunk head is
corrected on that mean and the one graph outputs `action` only (no chunk to ensemble downstream).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import save as st_save

from robo_hybrid.constants import HISTORY_MASK_KEY
from robo_hybrid.fileio import atomic_write_bytes
from robo_hybrid.policy import HeadOutputs, MultimodalPolicy
from robo_hybrid.training import checkpoint as ckpt

from .config import ResidualConfig

BASE_MEAN, BASE_LOG_STD, BASE_FEATURES, BASE_STATE = "base_mean", "base_log_std", "base_features", "base_state"
CACHE_KEYS = (BASE_MEAN, BASE_LOG_STD, BASE_FEATURES, BASE_STATE)
RESIDUAL_FILE = "residual.safetensors"


class ResidualHead(nn.Module):
    """(base features (B, D), base mean (B, A)[, vector state (B, S)]) -> unbounded residual (B, A), and a
    state-independent log-std."""

    def __init__(self, d_in: int, action_dim: int, cfg: ResidualConfig) -> None:
        super().__init__()
        self.state_inputs = cfg.state_inputs
        layers: list[nn.Module] = []
        width = d_in
        for _ in range(cfg.n_layers):
            layers += [nn.Linear(width, cfg.hidden), nn.GELU()]
            width = cfg.hidden
        self.mlp = nn.Sequential(*layers)
        self.out = nn.Linear(width, action_dim)
        # zero last layer: tanh(0) = 0, the residual is exactly 0 at initialisation (the policy is the BC policy)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(torch.tensor(cfg.init_std).log())))

    def forward(self, features: torch.Tensor, base_mean: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Unbounded residual pre-activation (B, A); `state` is read only with state_inputs."""
        x = [features, base_mean, state] if self.state_inputs else [features, base_mean]
        return self.out(self.mlp(torch.cat(x, dim=-1)))


class ResidualPolicy(nn.Module):
    """Frozen base policy + bounded residual head; the acting API of MultimodalPolicy."""

    scale: torch.Tensor

    def __init__(self, base: MultimodalPolicy, cfg: ResidualConfig) -> None:
        super().__init__()
        self.base = base.eval().requires_grad_(False)
        self.residual_cfg = cfg
        state_dim = sum(base.tokenizer.vec_dims.values())  # what vector_state returns per sample
        d_in = base.cfg.d_model + base.action_dim + (state_dim if cfg.state_inputs else 0)
        self.head = ResidualHead(d_in, base.action_dim, cfg)
        # current bound on |residual| (normalized action units); annealed in by the trainer, exported as a constant
        self.register_buffer("scale", torch.tensor(float(cfg.scale)))

    # ----- what evaluator, exporter and PPO read -----
    @property
    def spec(self):
        """The base's I/O spec (the residual reads the same inputs)."""
        return self.base.spec

    @property
    def cfg(self):
        """The base's PolicyConfig (history, image size and chunk settings of the inputs)."""
        return self.base.cfg

    @property
    def action_dim(self) -> int:
        """Action size A."""
        return self.base.action_dim

    @property
    def image_size(self) -> int:
        """Camera image side in pixels."""
        return self.base.image_size

    def train(self, mode: bool = True) -> ResidualPolicy:
        """Only the head changes mode: the frozen base always runs in eval mode (no augmentation, no dropout).
        (Not recursing into the base also keeps the per-step `eval()` of rollouts cheap.)"""
        self.training = mode
        self.head.train(mode)
        return self

    def set_scale(self, value: float) -> None:
        """Set the residual bound (the trainer anneals it in)."""
        self.scale.fill_(float(value))

    def clip_action(self, action: torch.Tensor) -> torch.Tensor:
        """Clip to the spec's action bounds."""
        return self.base.clip_action(action)

    def unnormalize_action(self, action_n: torch.Tensor) -> torch.Tensor:
        """Normalized -> actuator units."""
        return self.base.unnormalize_action(action_n)

    def dist_from_output(self, out: HeadOutputs):
        """Diagonal Gaussian over actions in actuator units (unclipped)."""
        return self.base.dist_from_output(out)

    # ----- forward -----
    @torch.no_grad()
    def base_cache(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The base's features (B, D), mean and log-std (B, A) and normalized vector state (B, S): computed once per
        env step, stored in the rollout."""
        out = self.base(obs)
        return {BASE_MEAN: out.mean, BASE_LOG_STD: out.log_std, BASE_FEATURES: out.features,
                BASE_STATE: self.base.tokenizer.vector_state(obs)}

    def residual(self, features: torch.Tensor, base_mean: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Bounded residual (B, A) in normalized action units: |residual| <= scale."""
        return self.scale * torch.tanh(self.head(features, base_mean, state))

    def forward(self, obs: dict[str, torch.Tensor], detach_std: bool = False, aux: bool = False) -> HeadOutputs:
        """Head outputs (normalized units); reads the cached base outputs when `obs` carries them."""
        cache = obs if BASE_MEAN in obs else self.base_cache(obs)
        features, base_mean = cache[BASE_FEATURES].detach(), cache[BASE_MEAN].detach()
        mean = base_mean + self.residual(features, base_mean, cache[BASE_STATE].detach())  # (B, A)
        log_std = self.head.log_std.expand_as(mean)  # (B, A)
        return HeadOutputs(mean, log_std, None, features, None)

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], deterministic: bool = True) -> torch.Tensor:
        """Action (B, A) in actuator units, clipped: base + residual (the mean), or a sample."""
        out = self(obs)
        a = self.unnormalize_action(out.mean) if deterministic else self.dist_from_output(out).sample()
        return self.clip_action(a)

    def as_onnx(self) -> ResidualExportWrapper:
        """One graph: raw inputs in the base's input order -> clipped action (base + residual)."""
        return ResidualExportWrapper(self)


class ResidualExportWrapper(nn.Module):
    """Export wrapper of a residual policy: the same standard inputs and `action` output as the base's graph."""

    def __init__(self, policy: ResidualPolicy) -> None:
        super().__init__()
        import copy  # noqa: PLC0415

        self.residual_policy = copy.deepcopy(policy).cpu().eval()
        self.policy = self.residual_policy.base  # check_parity reads wrapper.policy.cfg
        self.input_names: tuple[str, ...] = tuple(policy.spec.policy_keys) + (
            (HISTORY_MASK_KEY,) if policy.cfg.history > 1 else ()
        )
        self.output_names: tuple[str, ...] = ("action",)
        self.eval()

    def train(self, mode: bool = True) -> ResidualExportWrapper:
        """Always eval mode."""
        return super().train(False)

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """Zero inputs of the right shapes and dtypes."""
        return self.policy.as_onnx().example_inputs(batch)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Raw inputs in `input_names` order -> clipped action (B, A)."""
        obs = dict(zip(self.input_names, inputs, strict=True))
        out = self.residual_policy(obs)
        return self.residual_policy.clip_action(self.residual_policy.unnormalize_action(out.mean))  # (B, A)


class BaseCacheWrapper(nn.Module):
    """The frozen base as a graph of its rollout outputs: raw inputs -> features (B, D), mean, log-std (B, A),
    normalized vector state (B, S)."""

    def __init__(self, base: MultimodalPolicy) -> None:
        super().__init__()
        self.export = base.as_onnx()  # a copy of the base in eval mode, with its input order
        self.input_names = self.export.input_names
        self.output_names = (BASE_FEATURES, BASE_MEAN, BASE_LOG_STD, BASE_STATE)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        obs = dict(zip(self.input_names, inputs, strict=True))
        out = self.export.policy(obs)
        return out.features, out.mean, out.log_std, self.export.policy.tokenizer.vector_state(obs)


class OnnxBase:
    """The frozen base's forward pass of the rollouts on onnxruntime (one thread): at batch 8 about half the time
    of torch eager on the 2 cores. The graph is exported from the base at construction and checked against it;
    the updates read only what it computed (stored in the rollout), so PPO's ratios stay consistent."""

    def __init__(self, base: MultimodalPolicy, atol: float = 1e-4) -> None:
        import tempfile  # noqa: PLC0415

        import numpy as np  # noqa: PLC0415

        from robo_hybrid.export import OPSET, ort_session  # noqa: PLC0415

        wrapper = BaseCacheWrapper(base).cpu().eval()
        self.input_names, self.history = wrapper.input_names, base.cfg.history
        inputs = wrapper.export.example_inputs(batch=3)
        gen = torch.Generator().manual_seed(0)
        inputs = tuple(torch.randint(0, 256, t.shape, generator=gen, dtype=torch.uint8) if t.dtype == torch.uint8
                       else torch.randn(t.shape, generator=gen) if t.is_floating_point() else t for t in inputs)
        names = list(self.input_names) + list(wrapper.output_names)
        with tempfile.TemporaryDirectory(prefix="rh_base_") as tmp, torch.no_grad():
            path = f"{tmp}/base.onnx"
            torch.onnx.export(wrapper, inputs, path, input_names=list(self.input_names),
                              output_names=list(wrapper.output_names), opset_version=OPSET, dynamo=False,
                              dynamic_axes={n: {0: "batch"} for n in names}, do_constant_folding=True)
            self.session = ort_session(path)
            ref = wrapper(*inputs)
        got = self.session.run(None, {n: t.numpy() for n, t in zip(self.input_names, inputs, strict=True)})
        self.parity = max(float(np.max(np.abs(r.numpy() - g))) for r, g in zip(ref, got, strict=True))
        if not self.parity <= atol:
            raise RuntimeError(f"the base's onnxruntime graph differs from torch by {self.parity:.2e} > {atol:.0e}; "
                               "set algo.base_runtime=torch")

    def __call__(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The base's cached outputs for a batch of raw inputs (the keys of `input_names`)."""
        batch = next(iter(obs.values())).shape[0]
        feeds = {n: (obs[n] if n in obs else torch.ones(batch, self.history, dtype=torch.bool)).cpu().numpy()
                 for n in self.input_names}
        features, mean, log_std, state = self.session.run(None, feeds)
        return {BASE_FEATURES: torch.from_numpy(features), BASE_MEAN: torch.from_numpy(mean),
                BASE_LOG_STD: torch.from_numpy(log_std), BASE_STATE: torch.from_numpy(state)}


# ----------------------------------------------------------------------------------------------- files
def save_residual(ckpt_dir: str | Path, policy: ResidualPolicy) -> Path:
    """Write the head's weights and its config beside the base's model file (atomically)."""
    path = Path(ckpt_dir) / RESIDUAL_FILE
    tensors = {k: v.detach().cpu().contiguous() for k, v in policy.head.state_dict().items()}
    tensors["scale"] = policy.scale.detach().cpu().reshape(1)
    meta = {"residual_config": json.dumps(policy.residual_cfg.__dict__)}
    atomic_write_bytes(path, st_save(tensors, metadata=meta))
    return path


def load_residual(checkpoint: str | Path, base: MultimodalPolicy) -> MultimodalPolicy | ResidualPolicy:
    """`base` wrapped with the residual head stored in `checkpoint`'s directory; `base` itself when it has none."""
    ckpt_dir = ckpt.find_checkpoint(checkpoint)
    if ckpt_dir is None or not (ckpt_dir / RESIDUAL_FILE).is_file():
        if ckpt_dir is not None and (ckpt_dir / ckpt.STATE_FILE).is_file():
            if ckpt.read_trainer_state(ckpt_dir).get("finetune") == "residual":
                raise ckpt.CheckpointError(f"{ckpt_dir} is a residual PPO checkpoint without {RESIDUAL_FILE}; "
                                           "pick another step (checkpoints/step_*) of that run")
        return base
    tensors, meta = ckpt.read_safetensors(ckpt_dir / RESIDUAL_FILE)
    cfg = ResidualConfig(**json.loads(meta["residual_config"]))
    policy = ResidualPolicy(base, cfg)
    scale = tensors.pop("scale")
    policy.head.load_state_dict(tensors)
    policy.set_scale(float(scale[0]))
    return policy.to(next(base.parameters()).device).eval()


def finetune_actor(policy: MultimodalPolicy, mode: str, cfg: ResidualConfig,
                   partial_blocks: int = 1) -> MultimodalPolicy | ResidualPolicy:
    """The actor PPO trains for algo.finetune: the policy itself (full), its last blocks + heads (partial), or a
    residual head on it frozen (residual)."""
    if mode == "residual":
        return ResidualPolicy(policy, cfg)
    if mode == "partial":
        n = len(policy.encoder.blocks)
        policy.requires_grad_(False)
        for block in policy.encoder.blocks[max(0, n - partial_blocks):]:
            block.requires_grad_(True)
        for part in (policy.encoder.ln_f, policy.action_head, policy.chunk_head):
            if part is not None:
                part.requires_grad_(True)
    return policy
