"""BCConfig: behaviour-cloning optimisation, logging and checkpointing (the schema of Hydra's `algo=bc`).

Torch-free, so the root config (robo_hybrid.config) can import it without loading the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BC_LOSSES = ("mse_nll", "nll")
AMP_MODES = ("auto", "off", "bf16", "fp16")


@dataclass
class BCConfig:
    """Behaviour-cloning optimisation, logging and checkpointing."""

    name: str = "bc"
    """Algorithm name (selects this schema; appears in the default run_dir)."""
    steps: int = 7000
    """Gradient steps in total (a resumed run continues up to this many)."""
    batch_size: int = 64
    """Samples per gradient step, drawn uniformly with replacement from the training episodes."""
    learning_rate: float = 1e-3
    """Peak learning rate of AdamW."""
    min_lr_ratio: float = 0.1
    """The cosine schedule decays to learning_rate * min_lr_ratio at the last step."""
    warmup_steps: int = 100
    """Linear warm-up from 0 to learning_rate over this many steps."""
    weight_decay: float = 1e-4
    """AdamW decoupled weight decay, applied to weight matrices and embeddings only (not biases / norms)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this value (0 disables)."""
    loss: str = "mse_nll"
    """'mse_nll': MSE on the mean + Gaussian NLL of the log-std with the mean detached (robust, keeps the mean
    fit independent of the predicted std); 'nll': plain Gaussian NLL of mean and log-std together."""
    chunk_loss_weight: float = 1.0
    """Weight of the L1 action-chunk loss (only with policy.chunk_size > 0; padded steps are masked)."""
    aux_state_weight: float = 1.0
    """Weight of the auxiliary loss that regresses the privileged sim state (normalized) from the readout
    (needs policy.aux_state_head; 0 disables). The state is a training target only, never a policy input."""
    only_successful: bool = True
    """Train on the demos the expert solved only."""
    val_fraction: float = 0.05
    """Fraction of episodes held out for the validation loss (floor; none for tiny datasets)."""
    val_max_samples: int = 1024
    """At most this many (evenly spaced) held-out samples per validation pass."""
    log_every: int = 50
    """Steps between TensorBoard / metrics.jsonl / progress-bar updates."""
    val_every: int = 250
    """Steps between validation-loss passes (0 disables)."""
    checkpoint_every: int = 500
    """Steps between checkpoints; a killed run resumes from the last one (and one is always written at the end)."""
    keep_last: int = 2
    """Checkpoint directories kept (the best-success one is kept as well)."""
    eval_every: int = 0
    """Steps between calls of the evaluation hook (0: only once, at the end, when a hook is given)."""
    eval_episodes: int = 20
    """Episodes per evaluation during training (read by whoever builds the hook)."""
    progress: bool = True
    """Show a tqdm bar with loss and samples/s."""
    amp: str = "auto"
    """Mixed precision on a GPU (torch.autocast): 'auto' = bf16 where the GPU supports it, else fp16 with a gradient
    scaler; 'off' = fp32. CPU training always runs in fp32 (the tested default)."""

    def __post_init__(self) -> None:
        if self.loss not in BC_LOSSES:
            raise ValueError(f"algo.loss={self.loss!r}: choose one of {BC_LOSSES}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"algo.amp={self.amp!r}: choose one of {AMP_MODES}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("algo.steps and algo.batch_size must be >= 1")
        if self.learning_rate <= 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError("algo.learning_rate must be > 0 and algo.min_lr_ratio within [0, 1]")
        if self.log_every < 1 or self.checkpoint_every < 1:
            raise ValueError("algo.log_every and algo.checkpoint_every must be >= 1")
        if min(self.warmup_steps, self.val_every, self.eval_every) < 0:
            raise ValueError("algo.warmup_steps, algo.val_every and algo.eval_every must be >= 0 (0 disables)")
        if self.chunk_loss_weight < 0 or self.aux_state_weight < 0:
            raise ValueError("algo.chunk_loss_weight and algo.aux_state_weight must be >= 0 (0 disables)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"algo.val_fraction={self.val_fraction}: must be in [0, 1)")
        if self.keep_last < 1:
            raise ValueError("algo.keep_last must be >= 1 (resume needs the last checkpoint)")
