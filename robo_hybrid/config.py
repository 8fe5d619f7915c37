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

from robo_hybrid.constants import HELD_OUT_SEED_BASE, TASK_IDS
from robo_hybrid.deploy.config import DeployConfig  # torch-free; the robot side owns it
from robo_hybrid.envs.common import EnvConfig
from robo_hybrid.policy.config import PolicyConfig
from robo_hybrid.rl.config import PPOConfig
from robo_hybrid.training.config import BCConfig

TASK_NAMES = tuple(TASK_IDS)


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
class EvalConfig:
    """Evaluation rollouts (after training, and by `robo-hybrid eval`)."""

    episodes: int = 200
    """Episodes to run."""
    seed_base: int = HELD_OUT_SEED_BASE
    """Episode i is reset with seed seed_base + i: disjoint from the demo seeds 0..N-1. The one seed source of every
    evaluation: BC training, `eval`, PPO, the ablation, `bench learn` and the controller loop of the main job."""
    videos: int = 3
    """Rollouts recorded to mp4."""
    action_noise: float = 0.0
    """Std of Gaussian noise added to the policy's mean action, per dim, in normalized action units (dataset std:
    the units of residual PPO's exploration std, algo.residual.init_std), before clipping; 0 = the mean action.
    `robo-hybrid eval checkpoint=<run> eval.action_noise=0.1` shows how much success depends on acting exactly."""

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.videos < 0:
            raise ValueError("eval.episodes must be >= 1 and eval.videos >= 0")
        if not 0.0 <= self.action_noise <= 10.0:
            raise ValueError(f"eval.action_noise={self.action_noise}: a std in [0, 10] normalized action units")


@dataclass
class ExportConfig:
    """ONNX export (`robo-hybrid export`, and the main job)."""

    int8: bool = False
    """Also write <out>.int8.onnx (dynamic int8 quantization) and report its parity and speed-up."""


LEARN_SYSTEMS = ("bc", "bc_ppo", "sb3_ppo", "sb3_sac")


@dataclass
class EnvsBenchConfig:
    """`robo-hybrid bench envs`: env steps/s with 1 and 2 worker processes, ours against Fetch."""

    tasks: list[str] = field(default_factory=lambda: ["reach", "push", "pickplace", "fetch_pickplace"])
    """Tasks to time (short names)."""
    workers: list[int] = field(default_factory=lambda: [1, 2])
    """Worker-process counts to time each task with."""
    steps: int = 1000
    """Env steps per measurement."""
    repeats: int = 3
    """Measurements per (task, workers); the median is reported."""

    def __post_init__(self) -> None:
        bad = [t for t in self.tasks if t not in TASK_IDS]
        if bad:
            raise ValueError(f"bench.envs.tasks: unknown {bad}; choose from {list(TASK_IDS)}")
        if not self.workers or min(self.workers) < 1 or self.steps < 1 or self.repeats < 1:
            raise ValueError("bench.envs.workers entries, steps and repeats must be >= 1")


@dataclass
class LatencyBenchConfig:
    """`robo-hybrid bench latency`: batch-1 inference rows and the controller cycle, pinned to one core."""

    iters: int = 1000
    """Timed inference calls per row."""
    cycles: int = 1000
    """Controller cycles on a MockRobot."""
    rate_hz: float = 100.0
    """Controller rate of the cycle measurement."""
    cpu: int | None = None
    """Core to pin to (None: the last core of this process's affinity mask)."""
    sb3: bool = True
    """Add stable-baselines3's exported MultiInputPolicy rows (needs the [bench] extra)."""
    sb3_algo: str = "ppo"
    """SB3 algorithm of those rows: ppo or sac."""
    sb3_model: str = ""
    """A trained SB3 .zip to export (empty: an untrained policy of the same architecture; timing only)."""
    json: str = ""
    """Also write every figure to this JSON file."""

    def __post_init__(self) -> None:
        if self.iters < 1 or self.cycles < 0 or self.rate_hz <= 0:
            raise ValueError("bench.latency.iters must be >= 1, cycles >= 0 and rate_hz > 0")
        if self.sb3_algo not in ("ppo", "sac"):
            raise ValueError(f"bench.latency.sb3_algo={self.sb3_algo!r}: choose ppo or sac")


@dataclass
class LearnBenchConfig:
    """`robo-hybrid bench learn`: our BC, BC + PPO and SB3 PPO / SAC under one wall-clock budget each."""

    budget_s: float = 1800.0
    """Training wall-clock per system and seed (evaluations are not counted)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Training seeds; every system runs once per seed."""
    systems: list[str] = field(default_factory=lambda: list(LEARN_SYSTEMS))
    """Systems to run, in order: bc, bc_ppo, sb3_ppo, sb3_sac."""
    eval_every_s: float = 0.0
    """Held-out evaluation every this many training seconds (0: budget_s / 10)."""
    bc_fraction: float = 0.5
    """bc_ppo: share of the budget spent on BC before PPO takes over."""
    sb3_reward: str = "dense"
    """Env reward the SB3 systems learn from (sparse or dense)."""
    sb3_vec: str = "subproc"
    """SB3 vector env: subproc or dummy."""
    cores: int = 2
    """Cores every system may use (the process's affinity mask; workers inherit it)."""
    torch_threads: int = 0
    """Learner threads of BC and SB3 (0: one per core); our PPO uses bench.learn.ppo.num_threads."""
    json: str = ""
    """JSON output (empty: <out>/bench_learn.json)."""
    plot: str = ""
    """PNG output (empty: <out>/bench_learn.png)."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """PPO settings of the bc_ppo system (bench.learn.ppo.num_envs=4 ...); BC settings are algo.*."""
    sb3_ppo: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for SB3's PPO (e.g. bench.learn.sb3_ppo.n_steps=64)."""
    sb3_sac: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for SB3's SAC."""

    def __post_init__(self) -> None:
        if isinstance(self.ppo, dict):
            self.ppo = PPOConfig(**{str(k): v for k, v in self.ppo.items()})
        bad = [s for s in self.systems if s not in LEARN_SYSTEMS]
        if bad:
            raise ValueError(f"bench.learn.systems: unknown {bad}; choose from {list(LEARN_SYSTEMS)}")
        if self.budget_s <= 0 or self.eval_every_s < 0 or not 0.0 < self.bc_fraction < 1.0:
            raise ValueError("bench.learn.budget_s must be > 0, eval_every_s >= 0, bc_fraction within (0, 1)")
        if self.sb3_reward not in ("sparse", "dense") or self.sb3_vec not in ("subproc", "dummy"):
            raise ValueError("bench.learn.sb3_reward: sparse|dense; bench.learn.sb3_vec: subproc|dummy")
        if self.cores < 1 or self.torch_threads < 0 or not self.seeds:
            raise ValueError("bench.learn.cores must be >= 1, torch_threads >= 0 and seeds non-empty")


@dataclass
class RLBenchConfig:
    """`robo-hybrid bench rl`: env-alone vs end-to-end PPO env steps/s (today's full fine-tuning, the default)."""

    tasks: list[str] = field(default_factory=lambda: ["push", "pickplace"])
    """Tasks, each with its task config's cameras (push: front; pickplace: front + wrist)."""
    checkpoints: list[str] = field(default_factory=list)
    """BC checkpoints per task (same order; empty or '' = an untrained policy of policy.*: the speed is the same)."""
    iterations: int = 4
    """Timed PPO iterations per mode (after the warm-up ones)."""
    warmup_iterations: int = 1
    """Untimed iterations first (worker start-up, allocator, first GL frames)."""
    env_repeats: int = 3
    """Env-alone measurements (one rollout of algo num_steps each); the median is reported."""
    json: str = ""
    """JSON output (empty: none)."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """The default PPO settings measured (bench.rl.ppo.num_envs=4 ...); today's full mode is these plus
    finetune=full, bc_reg=kl, critic.use_images=true."""

    def __post_init__(self) -> None:
        if isinstance(self.ppo, dict):
            self.ppo = PPOConfig(**{str(k): v for k, v in self.ppo.items()})
        if not self.tasks or self.iterations < 1 or self.warmup_iterations < 0 or self.env_repeats < 1:
            raise ValueError("bench.rl.tasks must be non-empty, iterations and env_repeats >= 1, warmup >= 0")
        if self.checkpoints and len(self.checkpoints) != len(self.tasks):
            raise ValueError("bench.rl.checkpoints: one entry per bench.rl.tasks entry ('' = untrained)")


@dataclass
class TrainBenchConfig:
    """`robo-hybrid bench train`: samples/s of the BC step, the configured default against the original one."""

    steps: int = 100
    """Timed gradient steps per configuration (each timed on its own)."""
    warmup: int = 10
    """Untimed steps per configuration first."""
    rounds: int = 5
    """The timed steps run in this many alternating blocks (background load hits both configurations alike)."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.warmup < 0 or not 1 <= self.rounds <= self.steps:
            raise ValueError("bench.train.steps must be >= 1, warmup >= 0 and rounds within [1, steps]")


@dataclass
class BenchConfig:
    """Benchmarks that print figures (`robo-hybrid bench envs|latency|learn|rl|train`)."""

    envs: EnvsBenchConfig = field(default_factory=EnvsBenchConfig)
    latency: LatencyBenchConfig = field(default_factory=LatencyBenchConfig)
    learn: LearnBenchConfig = field(default_factory=LearnBenchConfig)
    train: TrainBenchConfig = field(default_factory=TrainBenchConfig)
    rl: RLBenchConfig = field(default_factory=RLBenchConfig)
    """`robo-hybrid bench rl`: RL throughput against the env alone."""


@dataclass
class AblationConfig:
    """`robo-hybrid ablate`: PPO variants from one BC checkpoint under the same budget (algo.time_budget_s)."""

    variants: list[str] = field(default_factory=lambda: ["bc_only", "residual", "full", "mlp_critic", "dense",
                                                         "learned", "rnd", "residual_no_kl"])
    """Rows of the table, in order (see robo_hybrid/rl/ablation.py VARIANTS). The default: BC only; residual (the
    PPO default: transformer critic, sparse reward, KL to BC, no RND) against full fine-tuning, an MLP critic, dense
    and learned shaping, RND on and KL off."""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """Training seeds of every PPO variant; all variants run under the first seed before any runs under the next
    (an interrupted ablation has every row once). bc_only is evaluated once."""
    episodes: int = 100
    """Held-out episodes of each row's final evaluation (seeds eval.seed_base + i)."""
    out: str = "runs/ablation"
    """Folder of the per-variant runs, ablation.md / .json and the curve PNG."""

    def __post_init__(self) -> None:
        from robo_hybrid.rl.ablation import VARIANTS  # noqa: PLC0415  (torch-free)

        bad = [v for v in self.variants if v not in VARIANTS]
        if bad:
            raise ValueError(f"ablation.variants: unknown {bad}; choose from {sorted(VARIANTS)}")
        if self.episodes < 1:
            raise ValueError("ablation.episodes must be >= 1")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"ablation.seeds must be distinct and non-empty, got {self.seeds}; e.g. [0,1]")


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
    bench: BenchConfig = field(default_factory=BenchConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    model: str = ""
    """ONNX policy file for `deploy` and `bench latency`."""
    robot: str = "sim"
    """Robot backend for `deploy`: sim (in-process MuJoCo), sim_server (own process, ZeroMQ), mock or franka."""
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
        if self.robot not in ("sim", "sim_server", "mock", "franka"):
            raise ValueError(f"robot={self.robot!r}: choose sim, sim_server, mock or franka")


def register_configs(cs: ConfigStore | None = None) -> None:
    """Register the schemas: `base_config` (root) and `algo/base_bc`."""
    cs = cs or ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="algo", name="base_bc", node=BCConfig)
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


class ConfigError(ValueError):
    """A bad command-line override or config value, as one line naming the key, why, and the valid choices."""


_TYPE_WORDS = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false", "String": "a string"}


def _valid_keys(root: DictConfig, dotted: str) -> list[str]:
    """The keys that exist beside `dotted` (the last part replaced), for 'did you mean' messages."""
    parent = ".".join(dotted.split(".")[:-1])
    node = OmegaConf.select(root, parent) if parent else root
    return sorted(str(k) for k in node.keys()) if isinstance(node, DictConfig) else []


def _explain(e: Exception, overrides: list[str]) -> str:
    """One line for a Hydra / OmegaConf composition error."""
    import difflib  # noqa: PLC0415

    from hydra.errors import MissingConfigException  # noqa: PLC0415
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError  # noqa: PLC0415

    if isinstance(e, MissingConfigException):
        group = str(getattr(e, "missing_cfg_file", "") or "").split("/")[0] or "?"
        choices = [o for o in (e.options or []) if not o.startswith("base_")]
        given = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == group), "?")
        return f"{group}={given}: no such {group}; choose one of {', '.join(choices)}"
    cause = e.__cause__
    override = next((o for o in overrides if f"'{o.split('=', 1)[0]}'" in str(e) or f"override {o}" in str(e)), "")
    key = override.split("=", 1)[0].lstrip("+~")
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and key:
        groups = [o for o in overrides if o != override and "." not in o.split("=", 1)[0]]  # algo=ppo, task=...
        valid = _valid_keys(compose_config(groups), key)
        leaf = key.split(".")[-1]
        close = difflib.get_close_matches(leaf, valid, n=1)
        hint = f"did you mean '{'.'.join([*key.split('.')[:-1], close[0]])}'? " if close else ""
        return f"unknown key '{key}': {hint}valid keys here: {', '.join(valid)}"
    if isinstance(cause, ValidationError) and override:
        msg = str(cause).split("\n")[0]
        want = next((w for t, w in _TYPE_WORDS.items() if f"to {t}" in msg), "")
        return f"{override}: expected {want}" if want else f"{override}: {msg}"
    return str(e).split("\n")[0]


def load_config(overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Composed and validated root Config for command-line overrides; ConfigError (one line) on any bad input."""
    overrides = list(overrides)
    try:
        return to_dataclass(compose_config(overrides))
    except ValueError as e:  # __post_init__ validation: already one actionable line
        raise ConfigError(str(e).split("\n")[0]) from e
    except Exception as e:
        if type(e).__module__.split(".")[0] not in ("hydra", "omegaconf"):
            raise
        raise ConfigError(_explain(e, overrides)) from e
