"""PolicyConfig: every knob of the multimodal transformer policy, one docstring per field."""

from __future__ import annotations

from dataclasses import dataclass, field

IMAGE_ENCODERS = ("conv", "patch", "resnet18")


@dataclass
class PolicyConfig:
    """Architecture, normalization and augmentation of `MultimodalPolicy` (the sizes suit a 1-core CPU)."""

    name: str = "default"
    """Name of the Hydra `policy` group entry this came from (informational)."""

    # ----- image tokenizer -----
    image_encoder: str = "patch"
    """'patch' (the default: a 3x3 stride-3 patch conv, then 3x3 stride-2 convs; 84 px -> 28 -> 14 -> 7 -> a 4 x 4
    token grid with the default three hidden layers), 'conv' (every layer 3x3 stride 2: 84 px -> 6 x 6 tokens) or
    'resnet18' (torchvision trunk up to layer3 with GroupNorm, random init: nothing is downloaded)."""
    conv_channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    """Hidden channels of the conv stem ('patch' / 'conv'), each a 3x3 conv layer, plus a last one to `d_model`."""
    coord_channels: bool = True
    """Append pixel x / y coordinate channels to the conv stem's input (CoordConv; cheap, helps localisation)."""
    # ----- transformer trunk -----
    d_model: int = 64
    """Token width D."""
    n_layers: int = 2
    """Pre-norm transformer blocks."""
    n_heads: int = 4
    """Attention heads; must divide d_model."""
    mlp_ratio: int = 4
    """Hidden width of each block's MLP is mlp_ratio * d_model."""
    dropout: float = 0.0
    """Dropout on attention weights and residual branches (training only)."""
    history: int = 1
    """K: number of past observations (current one included) the policy sees; 1 = no history. With K > 1
    every observation has shape (B, K, ...) with the newest last, plus an optional `history_mask` (B, K) bool."""
    ignore_proprio: list[str] = field(default_factory=list)
    """Suffixes of proprio element names (the spec's proprio_layout, e.g. 'vel_rad_s' for every joint velocity) that
    the policy does not see: zeroed after normalization, in training and in the exported graph (the input contract
    stays). Joint velocities invite BC's copycat shortcut (keep doing what the arm is doing), which fails on a robot
    whose arm answers an action a little more slowly than the simulator the demos came from."""
    # ----- heads -----
    chunk_size: int = 0
    """H > 0 adds an action-chunk head predicting actions t .. t+H-1 (ACT style); 0 disables it."""
    aux_state_head: bool = True
    """Add a linear head that predicts the simulator's privileged state (object pose...) from the readout. BC
    trains it as an auxiliary loss (a target only: never a policy input, never in the exported graph); it teaches
    the image tokenizer to localise the object from few demos. Ignored when the spec declares no privileged state."""
    aux_state_dims: int = 3
    """How many leading elements of the privileged vector the aux head predicts: 3 = the object position in this
    project's layout (envs/common.py: position, quaternion, velocities); 0 = all of it."""
    log_std_min: float = -5.0
    """Lower bound of the state-dependent log-std, in normalized action units."""
    log_std_max: float = 1.0
    """Upper bound of the state-dependent log-std, in normalized action units."""
    log_std_init: float = 0.0
    """Initial log-std (bias of the log-std head), in normalized action units (0: the demos' own spread)."""
    # ----- normalizers -----
    obs_clip: float = 10.0
    """Normalized vector observations are clipped to [-obs_clip, obs_clip]."""
    obs_std_floor: float = 1e-2
    """Floor on the fitted std of each vector-observation element (constant features stay finite)."""
    action_std_floor: float = 0.1
    """Floor on the fitted std of each action element, so PPO can still explore a dimension the demos
    barely used."""
    # ----- augmentation (training mode only) -----
    augment: bool = True
    """Apply image augmentation in training mode (never in eval mode, never in the exported graph)."""
    shift_pad_px: int = 2
    """Random shift (DrQ): pad by this many pixels (edge replicate) and crop back; 0 disables."""
    color_jitter: float = 0.0
    """Strength of brightness / contrast / saturation jitter (0 disables; 0.2 suits randomized scenes)."""
    init_std: float = 0.02
    """Std of the normal init of linear layers and embeddings (nanoGPT)."""

    def __post_init__(self) -> None:
        if self.image_encoder not in IMAGE_ENCODERS:
            raise ValueError(f"policy.image_encoder={self.image_encoder!r}: choose one of {IMAGE_ENCODERS}")
        self.conv_channels = [int(c) for c in self.conv_channels]
        if not self.conv_channels or min(self.conv_channels) < 1:
            raise ValueError("policy.conv_channels needs at least one positive entry, e.g. [16, 32, 64]")
        if self.d_model < 8 or self.d_model % self.n_heads != 0:
            raise ValueError(
                f"policy.d_model={self.d_model} must be >= 8 and divisible by n_heads={self.n_heads}; "
                "change one of them"
            )
        if self.n_layers < 1 or self.mlp_ratio < 1:
            raise ValueError("policy.n_layers and policy.mlp_ratio must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"policy.dropout={self.dropout}: must be in [0, 1)")
        if self.history < 1:
            raise ValueError(f"policy.history={self.history}: use 1 for no history, K > 1 for K observations")
        if self.chunk_size < 0:
            raise ValueError(f"policy.chunk_size={self.chunk_size}: use 0 to disable the chunk head, or H > 0")
        if not self.log_std_min < self.log_std_init < self.log_std_max:
            raise ValueError(
                f"policy log-std bounds: need log_std_min ({self.log_std_min}) < log_std_init "
                f"({self.log_std_init}) < log_std_max ({self.log_std_max})"
            )
        if self.obs_clip <= 0 or self.obs_std_floor <= 0 or self.action_std_floor <= 0:
            raise ValueError("policy.obs_clip, obs_std_floor and action_std_floor must be > 0")
        if self.aux_state_dims < 0:
            raise ValueError("policy.aux_state_dims must be >= 0 (0 = the whole privileged vector)")
        if isinstance(self.ignore_proprio, str) or any(not str(x) for x in self.ignore_proprio):
            raise ValueError(f"policy.ignore_proprio={self.ignore_proprio!r}: give a list of non-empty name suffixes, "
                             "e.g. [vel_rad_s]")  # fmt: skip
        self.ignore_proprio = [str(x) for x in self.ignore_proprio]
        if self.shift_pad_px < 0 or self.color_jitter < 0:
            raise ValueError("policy.shift_pad_px and policy.color_jitter must be >= 0 (0 disables)")
