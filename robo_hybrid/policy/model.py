"""MultimodalPolicy: camera images + proprio + goal -> tokens -> transformer -> Gaussian action (and chunk).

Everything between raw sensor values and actuator units lives in this module and its `ObservationTokenizer`:
uint8 HWC -> float CHW, normalization of the vector observations, un-normalization and clipping of actions. Its
input is the raw observation dict (batched); it only ever reads `spec.policy_keys` (+ `history_mask`), never
`privileged`.

Action convention (shared by BC, PPO and the ONNX graph): the Gaussian lives in *normalized* action space
(actions standardized with dataset statistics); `dist()` maps it to actuator units, unclipped; the action
sent to the env is clipped to the spec's bounds ([-1, 1]). PPO stores the unclipped sample and its log-prob.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn
from torch.distributions import Independent, Normal

from robo_hybrid.constants import HISTORY_MASK_KEY
from robo_hybrid.spec import IOSpec

from .config import PolicyConfig
from .heads import ChunkHead, GaussianHead
from .normalizer import Normalizer
from .tokenizer import ObservationTokenizer, TokenizerConfig
from .transformer import Encoder, init_weights

AUX_TARGET_KEY = "aux_target"  # training batches: the privileged state at t, a BC target (never a policy input)
__all__ = ["AUX_TARGET_KEY", "HISTORY_MASK_KEY", "ExportWrapper", "HeadOutputs", "MultimodalPolicy", "obs_to_torch",
           "policy_summary"]


class HeadOutputs(NamedTuple):
    """Raw head outputs, in normalized action units (the parameters of the action distribution, and features)."""

    mean: torch.Tensor  # (B, A)
    log_std: torch.Tensor  # (B, A)
    chunk: torch.Tensor | None  # (B, H, A) or None
    features: torch.Tensor  # (B, D) readout embedding
    aux: torch.Tensor | None = None  # (B, P) aux-head prediction of the normalized privileged state (training)


def _hidden_proprio(suffixes: list[str], spec: IOSpec, vector_keys: tuple[str, ...]) -> dict[str, list[int]]:
    """Indices of the proprio elements whose names end with one of `suffixes` (PolicyConfig.ignore_proprio)."""
    if not suffixes:
        return {}
    layout = tuple(spec.proprio_layout)
    if "proprio" not in vector_keys or not layout:
        raise ValueError("policy.ignore_proprio is set but the spec has no proprio input; remove it")
    for sfx in suffixes:
        if not any(name.endswith(sfx) for name in layout):
            raise ValueError(f"policy.ignore_proprio: {sfx!r} ends no proprio element name {list(layout)}")
    return {"proprio": [i for i, name in enumerate(layout) if any(name.endswith(s) for s in suffixes)]}


class MultimodalPolicy(nn.Module):
    """Tokenize every camera and vector observation, fuse with a transformer, read out an action."""

    action_low: torch.Tensor
    action_high: torch.Tensor

    def __init__(self, cfg: PolicyConfig, spec: IOSpec) -> None:
        super().__init__()
        self.cfg, self.spec = cfg, spec
        image_keys = tuple(spec.image_keys)
        vector_keys = tuple(k for k in spec.policy_keys if k not in image_keys)
        leaked = set(spec.policy_keys) & set(spec.privileged_keys)
        if leaked:
            raise ValueError(f"privileged keys {sorted(leaked)} are declared as policy inputs; fix the env's IOSpec")
        if not image_keys and not vector_keys:
            raise ValueError("the I/O spec declares no policy observations")
        D = cfg.d_model
        self.action_dim = int(np.prod(spec.action.shape))

        # the observation tokenizer (shared with the critic and the reward model) reads the policy keys only
        self.tokenizer = ObservationTokenizer(
            TokenizerConfig(
                d_model=D, conv_channels=cfg.conv_channels, image_encoder=cfg.image_encoder,
                coord_channels=cfg.coord_channels, history=cfg.history,
                shift_pad_px=cfg.shift_pad_px if cfg.augment else 0,
                color_jitter=cfg.color_jitter if cfg.augment else 0.0,
            ),
            spec, image_keys, vector_keys,
            make_normalizer=lambda d: Normalizer((d,), cfg.obs_std_floor, cfg.obs_clip),  # fitted on the dataset
            hidden=_hidden_proprio(cfg.ignore_proprio, spec, vector_keys),
        )
        self.encoder = Encoder(D, cfg.n_layers, cfg.n_heads, cfg.mlp_ratio, cfg.dropout)
        self.action_head = GaussianHead(D, self.action_dim, cfg.log_std_min, cfg.log_std_max)
        self.chunk_head = ChunkHead(D, self.action_dim, cfg.chunk_size) if cfg.chunk_size > 0 else None
        # auxiliary target only (see PolicyConfig.aux_state_head): forward() never reads privileged observations
        priv_dim = sum(int(np.prod(t.shape)) for t in spec.privileged)
        self.aux_dim = min(cfg.aux_state_dims, priv_dim) if cfg.aux_state_dims > 0 else priv_dim
        use_aux = cfg.aux_state_head and self.aux_dim > 0
        self.aux_state_head = nn.Linear(D, self.aux_dim) if use_aux else None
        self.aux_normalizer = Normalizer((self.aux_dim,), cfg.obs_std_floor, cfg.obs_clip) if use_aux else None

        self.action_normalizer = Normalizer((self.action_dim,), cfg.action_std_floor, clip=None)
        low = -1.0 if spec.action.low is None else float(spec.action.low)
        high = 1.0 if spec.action.high is None else float(spec.action.high)
        self.register_buffer("action_low", torch.full((self.action_dim,), low))
        self.register_buffer("action_high", torch.full((self.action_dim,), high))

        init_weights(self, cfg.init_std, cfg.n_layers)
        self.tokenizer.init_embeddings(cfg.init_std)
        self.action_head.init_log_std(cfg.log_std_init)

    # ----- the tokenizer's sizes and parts, under the names the rest of the project reads -----
    @property
    def image_keys(self) -> tuple[str, ...]:
        """Camera keys, in token order."""
        return self.tokenizer.image_keys

    @property
    def vector_keys(self) -> tuple[str, ...]:
        """Vector observation keys (proprio, goal), in token order."""
        return self.tokenizer.vector_keys

    @property
    def image_size(self) -> int:
        """Side of the square camera images in pixels (0 without cameras)."""
        return self.tokenizer.image_size

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (rows, cols) of one camera."""
        return self.tokenizer.grid

    @property
    def obs_normalizers(self) -> nn.ModuleDict:
        """The vector-observation normalizers (inside the tokenizer, fitted with `fit_normalizers`)."""
        return self.tokenizer.normalizers

    # ----- sizes without a forward pass -----
    @property
    def tokens_per_step(self) -> int:
        """Tokens contributed by one observation: a grid per camera + one per vector key."""
        return self.tokenizer.tokens_per_step

    @property
    def num_tokens(self) -> int:
        """Sequence length seen by the transformer: readout + K * tokens_per_step."""
        return self.tokenizer.num_tokens

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shapes (batch dim left out) of the intermediate and final outputs."""
        D, A = self.cfg.d_model, self.action_dim
        shapes = {
            "image_tokens": (self.grid[0] * self.grid[1], D),
            "tokens": (self.num_tokens, D),
            "features": (D,),
            "action": (A,),
        }
        if self.chunk_head is not None:
            shapes["action_chunk"] = (self.cfg.chunk_size, A)
        return shapes

    def num_params(self, trainable_only: bool = False) -> int:
        """Number of parameters (buffers such as normalizer statistics excluded)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def flops_per_step(self) -> int:
        """Matmul / conv FLOPs (2 per MAC) of one control step (batch 1, all K history frames)."""
        trunk = Encoder.flops(self.num_tokens, self.cfg.d_model, self.cfg.n_layers, self.cfg.mlp_ratio)
        heads = self.action_head.flops() + (self.chunk_head.flops() if self.chunk_head is not None else 0)
        # the aux state head is training-only: not part of a control step
        return self.tokenizer.flops() + trunk + heads

    # ----- normalizers -----
    def fit_normalizers(self, stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Load dataset statistics: {vector key: (mean, std), ..., 'action': ..., optional AUX_TARGET_KEY: ...}."""
        missing = [k for k in (*self.vector_keys, "action") if k not in stats]
        if missing:
            raise KeyError(f"normalizer statistics missing for {missing}")
        for k in self.vector_keys:
            self.obs_normalizers[k].set_stats(*stats[k])  # type: ignore[operator]
        self.action_normalizer.set_stats(*stats["action"])
        if self.aux_normalizer is not None and AUX_TARGET_KEY in stats:
            mean, std = stats[AUX_TARGET_KEY]
            self.aux_normalizer.set_stats(np.asarray(mean)[: self.aux_dim], np.asarray(std)[: self.aux_dim])

    def aux_state_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """MSE between the aux prediction `pred` (B, P) (forward(..., aux=True).aux) and the privileged `target`
        (B, >= P) in simulator units, normalized here."""
        if self.aux_state_head is None or self.aux_normalizer is None:
            raise RuntimeError("this policy has no aux state head (policy.aux_state_head=false or no privileged spec)")
        target = target.reshape(target.shape[0], -1)[:, : self.aux_dim].float()  # (B, P): the leading elements
        return (pred - self.aux_normalizer(target)).pow(2).mean()

    def normalize_action(self, action: torch.Tensor) -> torch.Tensor:
        """Actuator units -> the model's normalized action space."""
        return self.action_normalizer.normalize(action)

    def unnormalize_action(self, action_n: torch.Tensor) -> torch.Tensor:
        """Normalized -> actuator units (not clipped)."""
        return self.action_normalizer.unnormalize(action_n)

    def clip_action(self, action: torch.Tensor) -> torch.Tensor:
        """Clip to the spec's action bounds (what the env / robot receives)."""
        return torch.maximum(torch.minimum(action, self.action_high), self.action_low)

    # ----- forward -----
    def tokenize(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw obs -> tokens (B, T, D) and key mask (B, T) (None when every history step is real)."""
        return self.tokenizer(obs)

    def encode(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Raw obs -> readout embedding (B, D): the trunk's features (a critic / reward model can reuse it)."""
        tokens, key_mask = self.tokenize(obs)
        return self.encoder(tokens, key_mask)[:, 0]  # (B, D)

    features = encode

    def forward(self, obs: dict[str, torch.Tensor], detach_std: bool = False, aux: bool = False) -> HeadOutputs:
        """Raw obs dict -> head outputs in normalized action units.

        Training options (everything a loss needs comes out of this one call, as DistributedDataParallel
        requires): `detach_std` trains the log-std head on stop-gradient features; `aux` adds the aux head's
        prediction of the privileged state (None when the policy has no aux head)."""
        h = self.encode(obs)  # (B, D)
        mean, log_std = self.action_head(h, detach_std)
        chunk = self.chunk_head(h) if self.chunk_head is not None else None
        aux_pred = self.aux_state_head(h) if aux and self.aux_state_head is not None else None
        return HeadOutputs(mean, log_std, chunk, h, aux_pred)

    # ----- the API used by BC, PPO, evaluation -----
    def dist_from_output(self, out: HeadOutputs) -> Independent:
        """Diagonal Gaussian over actions in actuator units (unclipped) for given head outputs."""
        mean = self.unnormalize_action(out.mean)
        std = out.log_std.exp() * self.action_normalizer.std
        return Independent(Normal(mean, std), 1)

    def dist(self, obs: dict[str, torch.Tensor]) -> Independent:
        """Action distribution (actuator units, unclipped): `.sample()`, `.log_prob(a)` (B,), `.entropy()` (B,)."""
        return self.dist_from_output(self(obs))

    def evaluate_actions(
        self, obs: dict[str, torch.Tensor], actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """PPO helper: (log_prob (B,), entropy (B,), features (B, D)) of unclipped `actions` in one pass."""
        out = self(obs)
        d = self.dist_from_output(out)
        return d.log_prob(actions), d.entropy(), out.features

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], deterministic: bool = True) -> torch.Tensor:
        """Action (B, A) in actuator units, clipped to the bounds: the mean, or a sample when not deterministic."""
        out = self(obs)
        a = self.unnormalize_action(out.mean) if deterministic else self.dist_from_output(out).sample()
        return self.clip_action(a)

    @torch.no_grad()
    def act_chunk(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Predicted actions t .. t+H-1 (B, H, A), clipped; requires chunk_size > 0."""
        if self.chunk_head is None:
            raise RuntimeError("this policy has no chunk head; set policy.chunk_size > 0")
        chunk = self(obs).chunk
        assert chunk is not None
        return self.clip_action(self.unnormalize_action(chunk))

    def as_onnx(self) -> ExportWrapper:
        """A copy wrapped for export: forward(*raw inputs in `input_names` order) -> action [, action_chunk]."""
        return ExportWrapper(self)


def obs_to_torch(obs: dict[str, np.ndarray], keys: tuple[str, ...], device: str | torch.device = "cpu",
                 add_batch: bool = False) -> dict[str, torch.Tensor]:
    """Numpy obs (only `keys`) -> tensors on `device`; `add_batch` prepends a batch axis of 1."""
    out = {}
    for k in keys:
        if k in obs:
            t = torch.as_tensor(np.asarray(obs[k]), device=device)
            out[k] = t.unsqueeze(0) if add_batch else t
    return out


def policy_summary(policy: MultimodalPolicy) -> dict:
    """Sizes for the README: parameters (total and per part), FLOPs per step, tokens, config highlights."""

    def count(m: nn.Module | None) -> int:
        """Parameters of a part (0 when absent)."""
        return 0 if m is None else sum(p.numel() for p in m.parameters())

    tok = policy.tokenizer
    embeddings = sum(p.numel() for p in tok.embeddings())
    cfg = policy.cfg
    return {
        "params": policy.num_params(),
        "params_exported": policy.num_params() - count(policy.aux_state_head),
        "params_image_stems": count(tok.stems),
        "params_vector_tokenizers": count(tok.vec_tokenizers),
        "params_embeddings": embeddings,
        "params_transformer": count(policy.encoder),
        "params_heads": count(policy.action_head) + count(policy.chunk_head),
        "params_aux_head_training_only": count(policy.aux_state_head),
        "flops_per_step": policy.flops_per_step(),
        "mflops_per_step": round(policy.flops_per_step() / 1e6, 2),
        "tokens": policy.num_tokens,
        "image_grid": list(policy.grid),
        "image_encoder": cfg.image_encoder,
        "d_model": cfg.d_model,
        "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads,
        "history": cfg.history,
        "chunk_size": cfg.chunk_size,
        "inputs": list(policy.spec.policy_keys),
    }


class ExportWrapper(nn.Module):
    """Export wrapper (cf. rsl_rl as_onnx): raw sensors in, clipped deterministic actions out.

    Inputs are positional in `input_names` order (the spec's policy keys, plus `history_mask` (B, K) bool when
    history > 1); outputs are `output_names`. Normalizers travel inside the graph.
    """

    def __init__(self, policy: MultimodalPolicy) -> None:
        super().__init__()
        self.policy = copy.deepcopy(policy).cpu().eval()
        self.input_names: tuple[str, ...] = tuple(policy.spec.policy_keys) + (
            (HISTORY_MASK_KEY,) if policy.cfg.history > 1 else ()
        )
        self.output_names: tuple[str, ...] = ("action",) + (
            ("action_chunk",) if policy.chunk_head is not None else ()
        )
        self.eval()

    def train(self, mode: bool = True) -> ExportWrapper:
        """Always eval mode: exporters restore the wrapper's mode afterwards, which must not enable augmentation."""
        return super().train(False)

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """Zero inputs of the right shapes and dtypes, e.g. for `torch.onnx.export`."""
        K, spec = self.policy.cfg.history, self.policy.spec
        lead = (batch,) if K == 1 else (batch, K)
        out = []
        for name in self.input_names:
            if name == HISTORY_MASK_KEY:
                out.append(torch.ones(batch, K, dtype=torch.bool))
            else:
                t = spec.obs(name)
                out.append(torch.zeros(*lead, *t.shape, dtype=getattr(torch, t.dtype)))
        return tuple(out)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Raw inputs in `input_names` order -> clipped action (B, A) [, clipped chunk (B, H, A)]."""
        obs = dict(zip(self.input_names, inputs, strict=True))
        out = self.policy(obs)
        action = self.policy.clip_action(self.policy.unnormalize_action(out.mean))  # (B, A)
        if out.chunk is None:
            return action
        return action, self.policy.clip_action(self.policy.unnormalize_action(out.chunk))  # (B, H, A)
