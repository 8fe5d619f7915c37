"""Hydra structured config: dataclass schemas in a ConfigStore, YAML groups in <repo>/configs.

Entry points call `compose_config(overrides)` and then `to_dataclass(cfg)` once; core classes receive their
own small dataclass (PolicyConfig, BCConfig, EnvConfig), never this root. No eval resolvers; the only
interpolations are plain `${...}` references.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING, DictConfig, OmegaConf

from robo_hybrid.envs.common import EnvConfig
from robo_hybrid.policy.config import PolicyConfig

TASK_NAMES = ("reach", "push", "pickplace", "fetch_reach", "fetch_push", "fetch_pickplace")
BC_LOSSES = ("mse_nll", "nll")
AMP_MODES = ("auto", "off", "bf16", "fp16")


def configs_dir() -> Path:
    """<repo>/configs, located relative to this package."""
    return Path(__file__).resolve().parent.parent / "configs"


@dataclass
class TaskConfig:
    """Which task and how its env is built."""

    name: str = "push"
    """Short task name: reach, push, pickplace, fetch_reach, fetch_push, fetch_pickplace."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """Env options (image size, cameras, reward, randomization...), passed to make_env as EnvConfig."""
    demo_episodes: int = 200
    """Scripted demos this task needs for BC (the default of the top-level `episodes`)."""
    demo_action_noise: float = 0.0
    """DART noise during collection: the env executes expert + N(0, this) on xyz, the file keeps the clean action."""

    def __post_init__(self) -> None:
        if self.name not in TASK_NAMES:
            raise ValueError(f"task.name={self.name!r}: choose one of {TASK_NAMES} (task=<name> on the command line)")
        if self.demo_episodes < 1:
            raise ValueError("task.demo_episodes must be >= 1")
        if not 0.0 <= self.demo_action_noise <= 1.0:
            raise ValueError(f"task.demo_action_noise={self.demo_action_noise}: must be within [0, 1] (0 = clean)")


@dataclass
class BCConfig:
    """Behaviour-cloning optimisation, logging and checkpointing."""

    name: str = "bc"
    """Algorithm name (selects this schema; appears in the default run_dir)."""
    steps: int = 3000
    """Gradient steps in total (a resumed run continues up to this many)."""
    batch_size: int = 64
    """Samples per gradient step, drawn uniformly with replacement from the training episodes."""
    lr: float = 1e-3
    """Peak learning rate of AdamW."""
    min_lr_ratio: float = 0.1
    """The cosine schedule decays to lr * min_lr_ratio at the last step."""
    warmup_steps: int = 100
    """Linear warm-up from 0 to lr over this many steps."""
    weight_decay: float = 1e-4
    """AdamW decoupled weight decay, applied to weight matrices and embeddings only (not biases / norms)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    grad_clip: float = 1.0
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
    ckpt_every: int = 500
    """Steps between checkpoints; a killed run resumes from the last one (and one is always written at the end)."""
    keep_last: int = 2
    """Checkpoint directories kept (the best-success one is kept as well)."""
    eval_every: int = 0
    """Steps between calls of the evaluation hook (0: only once, at the end, when a hook is given)."""
    eval_episodes: int = 20
    """Episodes per evaluation during training (read by whoever builds the hook)."""
    progress_bar: bool = True
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
        if self.lr <= 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError("algo.lr must be > 0 and algo.min_lr_ratio within [0, 1]")
        if self.log_every < 1 or self.ckpt_every < 1:
            raise ValueError("algo.log_every and algo.ckpt_every must be >= 1")
        if min(self.warmup_steps, self.val_every, self.eval_every) < 0:
            raise ValueError("algo.warmup_steps, algo.val_every and algo.eval_every must be >= 0 (0 disables)")
        if self.chunk_loss_weight < 0 or self.aux_state_weight < 0:
            raise ValueError("algo.chunk_loss_weight and algo.aux_state_weight must be >= 0 (0 disables)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"algo.val_fraction={self.val_fraction}: must be in [0, 1)")
        if self.keep_last < 1:
            raise ValueError("algo.keep_last must be >= 1 (resume needs the last checkpoint)")


@dataclass
class EvalConfig:
    """Evaluation rollouts (after training, and by `robo-hybrid eval`)."""

    episodes: int = 100
    """Episodes to run."""
    seed_base: int = 1_000_000
    """Episode i is reset with seed seed_base + i: disjoint from the demo seeds 0..N-1."""
    videos: int = 3
    """Rollouts recorded to mp4."""
    deterministic: bool = True
    """Use the mean action (else sample from the Gaussian)."""

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.videos < 0:
            raise ValueError("eval.episodes must be >= 1 and eval.videos >= 0")


@dataclass
class ExportConfig:
    """ONNX export (`robo-hybrid export`, and the main job)."""

    int8: bool = False
    """Also write <out>.int8.onnx (dynamic int8 quantization) and report its parity and speed-up."""


@dataclass
class DeployConfig:
    """The torch-free controller loop (`robo-hybrid deploy`, and the main job)."""

    episodes: int = 20
    """Episodes to run on the robot (sim robots reset between episodes)."""
    rate_hz: float | None = None
    """Control rate; None = the rate in the model's I/O spec."""
    seed: int = 1_000_000
    """Seed of the first sim episode (held-out seeds, as in evaluation)."""
    max_steps: int = 0
    """Stop after this many control steps in total (0 = run the episodes to the end)."""
    safety: bool = True
    """Safety filter between policy and robot (clamp, rate limit, workspace, watchdogs, e-stop)."""
    estop_file: str = ""
    """If this file appears, the e-stop latches (SIGUSR1 does the same)."""
    temporal_ensemble_m: float | None = None
    """ACT temporal-ensembling weight exp(-m * i) for chunk policies; None = no ensembling."""
    log_dir: str = ""
    """Telemetry CSV / JSON / histogram PNG folder; empty = a temporary folder."""

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.max_steps < 0:
            raise ValueError("deploy.episodes must be >= 1 and deploy.max_steps >= 0")
        if self.rate_hz is not None and not 1.0 <= self.rate_hz <= 1000.0:
            raise ValueError(f"deploy.rate_hz={self.rate_hz}: must be within 1..1000 Hz (or null = the model's)")


@dataclass
class ExperimentConfig:
    """A named preset (configs/experiment/*.yaml are global overrides that also set this)."""

    name: str = "default"
    """Preset name; part of the default run_dir."""
    notes: str = ""
    """Free text stored with the resolved config."""


@dataclass
class Config:
    """Root config shared by every command (collect, train, eval, export...)."""

    task: TaskConfig = field(default_factory=TaskConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    algo: Any = MISSING
    """Algorithm config (BCConfig for algo=bc); chosen by the `algo` group."""
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    model: str = ""
    """ONNX policy file for `deploy` and `bench latency`."""
    robot: str = "sim"
    """Robot backend for `deploy`: sim (in-process MuJoCo), sim_server (own process, ZeroMQ) or mock."""
    episodes: int = II("task.demo_episodes")
    """Demos to collect."""
    out: str = ""
    """Output path of commands that write one file or folder (collect, export); empty = command default."""
    data: str = "data/${task.name}_demos.hdf5"
    """Demo file read by training."""
    checkpoint: str = ""
    """Checkpoint to read (a run dir, checkpoint dir or .safetensors file) for eval / export / fine-tuning."""
    seed: int = 0
    """Seed of everything random in training; demo collection uses seeds seed .. seed+episodes-1."""
    workers: int = 2
    """Worker processes for rollouts / collection."""
    device: str = "cpu"
    """Torch device for training: 'cpu' or 'cuda'."""
    resume: bool = False
    """Continue from the last checkpoint in run_dir (training refuses to overwrite one otherwise)."""
    run_dir: str = "runs/${task.name}_${algo.name}_${experiment.name}_s${seed}"
    """Where a training run writes checkpoints, logs, curves."""

    def __post_init__(self) -> None:
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ValueError(f"device={self.device!r}: use 'cpu' or 'cuda[:i]'")
        if self.workers < 0:
            raise ValueError("workers must be >= 0")
        if self.robot not in ("sim", "sim_server", "mock"):
            raise ValueError(f"robot={self.robot!r}: choose sim, sim_server or mock")


def register_configs(cs: ConfigStore | None = None) -> None:
    """Register the schemas: `base_config` (root) and `algo/base_bc`."""
    cs = cs or ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="algo", name="base_bc", node=BCConfig)
    from robo_hybrid.rl.config import PPOConfig  # noqa: PLC0415  (torch-free)

    cs.store(group="algo", name="base_ppo", node=PPOConfig)


def compose_config(overrides: list[str] | tuple[str, ...] = (), config_name: str = "config") -> DictConfig:
    """Compose <repo>/configs/<config_name>.yaml with command-line style overrides (no Hydra app needed)."""
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(configs_dir()), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def to_dataclass(cfg: DictConfig | Config) -> Config:
    """DictConfig -> Config dataclass tree (interpolations resolved, __post_init__ validation run)."""
    if isinstance(cfg, Config):
        return cfg
    obj = OmegaConf.to_object(cfg)
    if not isinstance(obj, Config):
        raise TypeError(f"config did not compose to the Config schema (got {type(obj).__name__})")
    return obj


def to_yaml(cfg: Config | DictConfig) -> str:
    """Resolved YAML of a config (what checkpoints store)."""
    node = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    return OmegaConf.to_yaml(node, resolve=True)
