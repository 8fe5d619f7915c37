"""Config dataclasses of the RL fine-tuning stage: PPO, the transformer critic, the reward model, RND.

One docstring per field; `__post_init__` says what to change when a value is unusable (lerobot style).
`PPOConfig` is the schema of the Hydra `algo=ppo` group (configs/algo/ppo.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass, field

REWARDS = ("sparse", "dense", "learned")
BC_REGULARIZERS = ("none", "kl", "kl_mean", "bc_nll")
KL_REGULARIZERS = ("kl", "kl_mean")
"""The regularizers anchored on a frozen copy of the pretrained policy."""
VECTOR_ENVS = ("async", "sync")
FINETUNE_MODES = ("full", "residual", "partial")
START_METHODS = ("spawn", "forkserver")


@dataclass
class CriticConfig:
    """Architecture of the asymmetric transformer critic (policy tokens + privileged-state tokens)."""

    arch: str = "transformer"
    """'transformer' (tokens of every input, a readout token) or 'mlp' (vector inputs only, width 4 * d_model:
    the ablation's baseline of similar cost)."""
    d_model: int = 64
    """Token width D of the critic (its own weights; the actor's tokenizer classes are reused)."""
    n_layers: int = 1
    """Pre-norm transformer blocks (2 blocks: 1.6x the critic's update time, which is most of a residual
    iteration's learning work on the CPU; `robo-hybrid bench rl` and the README's RL runs use 1)."""
    n_heads: int = 4
    """Attention heads; must divide d_model."""
    mlp_ratio: int = 4
    """Hidden width of each block's MLP is mlp_ratio * d_model."""
    conv_channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    """Hidden channels of the critic's conv image stem (same layout as the policy's 'conv' stem)."""
    privileged_split: list[int] = field(default_factory=lambda: [3, 4, 3, 3])
    """Sizes of the privileged-state parts that each become one token (object pos, quat, linvel, angvel), repeated
    for each object when the vector is a multiple of their sum (Stack: two cubes); otherwise, or with [], the whole
    vector is one token."""
    use_images: bool = False
    """Tokenize the camera images too; False (default) gives a much cheaper critic on proprio, goal and privileged
    state (`robo-hybrid bench rl` measures both)."""
    time_input: bool = False
    """Also read the episode's elapsed time (steps taken / the env's episode_steps, one more privileged input), and
    end episodes at the time limit like a termination instead of bootstrapping their tail: under a time limit the
    return left depends on the time, which the state alone does not show (Pardo et al. 2018, "Time Limits in
    Reinforcement Learning"). Simulator-only, like the privileged state; never an actor input. (On Stack with
    2048-step batches: 81.5% against 84.0% without, one seed each, so off by default.)"""
    init_std: float = 0.02
    """Std of the normal init of linear layers and embeddings (nanoGPT)."""

    def __post_init__(self) -> None:
        if self.arch not in ("transformer", "mlp"):
            raise ValueError(f"critic.arch={self.arch!r}: choose transformer or mlp")
        if self.arch == "mlp" and self.use_images:
            raise ValueError("critic.arch=mlp reads no images; set algo.critic.use_images=false")
        if self.d_model < 8 or self.d_model % self.n_heads != 0:
            raise ValueError(f"critic.d_model={self.d_model} must be >= 8 and divisible by n_heads={self.n_heads}")
        if self.n_layers < 1 or self.mlp_ratio < 1:
            raise ValueError("critic.n_layers and critic.mlp_ratio must be >= 1")
        self.conv_channels = [int(c) for c in self.conv_channels]
        self.privileged_split = [int(c) for c in self.privileged_split]
        if not self.conv_channels or min(self.conv_channels) < 1:
            raise ValueError("critic.conv_channels needs at least one positive entry, e.g. [16, 32, 64]")
        if self.privileged_split and min(self.privileged_split) < 1:
            raise ValueError("critic.privileged_split entries must be >= 1 (or [] for one privileged token)")


@dataclass
class RewardModelConfig:
    """The transformer progress model Phi(s) used for learned, potential-based reward shaping."""

    d_model: int = 48
    """Token width D."""
    n_layers: int = 2
    """Pre-norm transformer blocks."""
    n_heads: int = 4
    """Attention heads; must divide d_model."""
    conv_channels: list[int] = field(default_factory=lambda: [16, 32])
    """Hidden channels of the conv image stem (a coarser grid than the policy's keeps the history cheap)."""
    history: int = 3
    """K: observations the model reads (current one included, newest last); earlier steps are padded and masked."""
    use_images: bool = True
    """Tokenize the camera images (False: proprio, goal and privileged state only, much faster)."""
    checkpoint: str | None = None
    """A trained reward model (.safetensors written by `train_reward_model`); None trains one before PPO."""
    negatives: int = 16
    """Rollouts of the initial policy collected before PPO; the failed ones are negatives (progress 0)."""
    failure_target: float = 0.0
    """Progress target of every step of a failed rollout."""
    epochs: int = 10
    """Passes over the (demo + negative) windows when training before PPO."""
    batch_size: int = 64
    """Windows per gradient step."""
    learning_rate: float = 3e-4
    """AdamW learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    max_demo_episodes: int = 100
    """Use at most this many successful demos (keeps pre-training within the time budget)."""
    shaping_scale: float = 1.0
    """Phi = shaping_scale * predicted progress in [0, 1]. With scale <= 1 the shaped reward of the success step
    (1 + gamma * 0 - Phi(s)) stays >= 0."""
    init_std: float = 0.02
    """Std of the normal init of linear layers and embeddings."""

    def __post_init__(self) -> None:
        if self.d_model < 8 or self.d_model % self.n_heads != 0:
            raise ValueError(
                f"reward_model.d_model={self.d_model} must be >= 8 and divisible by n_heads={self.n_heads}"
            )
        if self.history < 1:
            raise ValueError("reward_model.history must be >= 1 (1 = current observation only)")
        self.conv_channels = [int(c) for c in self.conv_channels]
        if not self.conv_channels or min(self.conv_channels) < 1:
            raise ValueError("reward_model.conv_channels needs at least one positive entry, e.g. [16, 32]")
        if not 0.0 <= self.failure_target < 1.0:
            raise ValueError("reward_model.failure_target must be in [0, 1) (0 = failed rollouts make no progress)")
        if self.negatives < 0 or self.epochs < 0 or self.batch_size < 1 or self.max_demo_episodes < 1:
            raise ValueError("reward_model.negatives/epochs must be >= 0, batch_size and max_demo_episodes >= 1")
        if self.shaping_scale <= 0:
            raise ValueError("reward_model.shaping_scale must be > 0 (use algo.reward=sparse to switch shaping off)")


@dataclass
class RNDConfig:
    """Random network distillation (Burda et al. 2018): intrinsic reward = predictor error on a fixed random net."""

    coef: float = 0.0
    """Weight of the normalized intrinsic reward added to the task reward; 0 disables RND."""
    keys: list[str] = field(default_factory=lambda: ["proprio", "privileged"])
    """Vector observations the RND nets read (the bonus is a training signal only, so privileged state is allowed)."""
    hidden: int = 128
    """Hidden width of the target and predictor MLPs."""
    out_dim: int = 32
    """Embedding size of the target net."""
    learning_rate: float = 1e-4
    """Adam learning rate of the predictor."""

    def __post_init__(self) -> None:
        if self.coef < 0:
            raise ValueError("rnd.coef must be >= 0 (0 disables RND)")
        if self.coef > 0 and not self.keys:
            raise ValueError("rnd.keys is empty; name the vector observations RND should read, e.g. [proprio]")


@dataclass
class ResidualConfig:
    """The bounded residual head of algo.finetune=residual (on the frozen BC policy's features and action)."""

    scale: float = 0.3
    """Bound on |residual| per action dim, in normalized action units (dataset std): a = base + scale * tanh(r)."""
    scale_init: float = 0.05
    """Bound at iteration 0; annealed linearly to `scale` over scale_anneal_iters (the residual is 0 at init
    either way: its last layer starts at zero)."""
    scale_anneal_iters: int = 30
    """Iterations over which the bound goes from scale_init to scale."""
    hidden: int = 256
    """Hidden width of the residual MLP."""
    n_layers: int = 2
    """Hidden layers of the residual MLP."""
    init_std: float = 0.1
    """Initial exploration std of the residual Gaussian (state independent, learned), normalized action units."""
    learning_rate: float = 1e-4
    """Adam learning rate of the residual head (a fresh small net; the actor's learning_rate is for full/partial).
    (3e-4 without a KL term let a 96% Push policy drift to 86% on the fixed seeds over 20 minutes.)"""
    state_inputs: bool = False
    """Also feed the head the base's vector inputs of the latest step (proprio, goal; normalized as the base's
    tokens see them) beside its readout features and action: the tool's position and the goal, directly rather than
    through the readout trained for BC (on Stack: 84.0% against 82.5% without, one seed each). Never privileged."""

    def __post_init__(self) -> None:
        if not 0.0 < self.scale_init <= self.scale:
            raise ValueError(f"residual.scale_init={self.scale_init} / scale={self.scale}: "
                             "need 0 < scale_init <= scale")
        if self.hidden < 1 or self.n_layers < 0 or self.scale_anneal_iters < 0:
            raise ValueError("residual.hidden must be >= 1, n_layers and scale_anneal_iters >= 0")
        if self.init_std <= 0 or self.learning_rate <= 0:
            raise ValueError("residual.init_std and residual.learning_rate must be > 0")


@dataclass
class PPOConfig:
    """PPO fine-tuning of the (BC-initialised) policy: rollouts, losses, regularizers, schedule, logging."""

    name: str = "ppo"
    """Name of the Hydra `algo` group entry (informational)."""
    finetune: str = "residual"
    """'residual' (frozen BC base + bounded residual head; the base runs once per env step and updates train only
    the head and the critic), 'full' (every actor weight) or 'partial' (the last `partial_blocks` transformer
    blocks and the heads)."""
    residual: ResidualConfig = field(default_factory=ResidualConfig)
    """The residual head (finetune=residual)."""
    partial_blocks: int = 1
    """Transformer blocks trained by finetune=partial (counted from the last one)."""
    # ----- rollouts -----
    num_envs: int = 8
    """Parallel environments."""
    num_steps: int = 64
    """Control steps per env per iteration; a batch holds num_envs * num_steps transitions."""
    base_runtime: str = "onnx"
    """Residual fine-tuning: where the frozen base runs in rollouts: 'onnx' (onnxruntime, one thread, on a graph
    exported from the base at the start and parity-checked; CPU only) or 'torch'."""
    env_groups: int = 2
    """Env groups stepped in turn: while one group's workers step and render, the learner records the other
    group's step and computes its next actions (1: one vector env, the learner and the workers wait for each
    other). The batch is the same either way; groups differ by at most one env, and there are at most num_envs."""
    vector_env: str = "async"
    """'async' (one worker process per env, rendering inside the workers) or 'sync' (in-process, tests)."""
    start_method: str = "forkserver"
    """Start method of async workers: 'forkserver' or 'spawn' (never fork: a GL context may exist)."""
    # ----- optimisation -----
    learning_rate: float = 3e-5
    """Actor Adam learning rate (small: the BC policy is already good)."""
    critic_learning_rate: float = 3e-4
    """Critic Adam learning rate."""
    num_epochs: int = 4
    """Passes over each batch."""
    async_critic: bool = True
    """Run each batch's critic epochs in a background thread during the next rollout (which never reads the critic:
    its values are computed after the rollout, once that update has finished): the same updates in the same order
    of batches, on the learner core that otherwise waits on the env workers. Off under torchrun (collectives)."""
    num_minibatches: int = 4
    """Minibatches per epoch (2 of 256 instead of 4 of 128 cut the update time by a third on CPU, but residual PPO
    on Push then drifted below BC)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda (bias / variance trade-off of the advantage estimate)."""
    clip_coef: float = 0.2
    """Clip range epsilon of the probability ratio."""
    value_clip_coef: float = 0.2
    """Clip range of each update's value change, around the critic's outputs at the start of the update (in
    normalized value units when value_normalization is on); 0 disables."""
    value_loss_coef: float = 0.5
    """Weight of the value loss (the critic has its own optimizer; this scales its gradient)."""
    normalize_advantages: bool = True
    """Standardize advantages per minibatch."""
    value_normalization: bool = True
    """Critic predicts returns standardized by running statistics (dense returns can be large)."""
    value_norm_std_floor: float = 0.1
    """Floor on the return std used by value normalization: while sparse returns are still all ~0 a tiny std
    would blow up the targets (and value clipping would then zero the critic's gradient)."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip, applied to actor and critic separately."""
    target_kl: float = 0.02
    """Stop the epoch loop when the approximate KL(old || new) of a minibatch exceeds 1.5 * target_kl; 0 disables."""
    augment: bool = False
    """Run the actor in training mode (image augmentation, dropout) during updates; rollouts always use eval mode."""
    # ----- staying close to the pretrained policy -----
    bc_reg: str = "kl"
    """'kl' (default): + coef * KL(pi || pi_BC) on rollout states (residual: the frozen base's Gaussian is pi_BC,
    so the term pulls the residual back to 0 wherever the advantages do not consistently push it); 'kl_mean': the
    KL's mean term only, sum (mu - mu_BC)^2 / (2 sigma_BC^2): the same pull on the action, in units of the BC
    policy's own uncertainty, leaving the exploration std to PPO and [std_min, std_max] (the full KL also pulls
    the policy's std up to the BC head's, 0.2-0.3 on PickPlace's xyz, where noise of 0.1 alone costs the BC
    policy ~20 points); 'bc_nll': + coef * -log pi(a_demo | s_demo) on demo minibatches (needs demos); 'none'."""
    bc_reg_coef: float = 0.1
    """Initial weight of the BC regularizer."""
    bc_reg_coef_final: float = 0.1
    """Weight after annealing (linear in iterations)."""
    bc_reg_anneal_iters: int = 100
    """Iterations over which the weight goes from bc_reg_coef to bc_reg_coef_final."""
    critic_warmup_iters: int = 5
    """First iterations update only the critic (actor frozen), so noisy early advantages leave the BC policy intact."""
    # ----- exploration -----
    entropy_coef: float = 1e-3
    """Initial entropy-bonus weight."""
    entropy_coef_final: float = 0.0
    """Entropy-bonus weight after annealing."""
    entropy_anneal_iters: int = 100
    """Iterations over which the entropy weight is annealed linearly."""
    std_min: float = 0.05
    """Floor of the policy std, in normalized action units (keeps exploring)."""
    std_max: float = 1.0
    """Ceiling of the policy std, in normalized action units (keeps the BC behaviour recognisable)."""
    rnd: RNDConfig = field(default_factory=RNDConfig)
    """Optional random-network-distillation bonus."""
    failure_replay: float = 0.0
    """Probability that a training episode starts from a seed an earlier episode of the same env failed from
    (envs/replay.py: each env keeps its failed seeds; a seed leaves on a success or after 4 replays); 0 = every
    episode from a fresh seed. Puts a strong policy's rare failures into every batch; evaluations are unaffected."""
    # ----- reward -----
    reward: str = "sparse"
    """'sparse' (1 on success), 'dense' (the env's named terms, each logged) or 'learned' (sparse +
    gamma * Phi(s') - Phi(s) from the reward model)."""
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    """Reward model used when reward='learned'."""
    critic: CriticConfig = field(default_factory=CriticConfig)
    """Asymmetric transformer critic."""
    # ----- schedule, evaluation, checkpoints -----
    iterations: int = 200
    """Maximum PPO iterations."""
    time_budget_s: float = 0.0
    """Stop after this much wall-clock time (the final eval and checkpoint are extra); 0 = no limit."""
    eval_every: int = 10
    """Held-out evaluation every this many iterations (and at start and end); 0 = only at start and end."""
    eval_episodes: int = 50
    """Episodes per held-out evaluation along the run: the same fixed seeds (eval.seed_base + i) every time, so
    the run's minimum vs the start (`min_vs_bc` in the result) is the no-collapse check."""
    eval_num_envs: int = 0
    """Envs used for evaluation; 0 = num_envs."""
    train_seed_offset: int = 500_000
    """Training rollouts reset from seed + train_seed_offset (disjoint from demo and evaluation seeds)."""
    checkpoint_every: int = 10
    """Write a checkpoint every this many iterations (and at the end)."""
    keep_last: int = 3
    """Checkpoint directories kept (the best-success one is kept as well)."""
    device: str = "cpu"
    """Torch device for the networks."""
    num_threads: int = 1
    """torch.set_num_threads for the learner process (the env workers take the other cores: 2 learner threads on
    2 cores made end-to-end PPO ~10x slower in `bench rl`, the threads' spin-waits starving the workers)."""
    progress: bool = True
    """Show a tqdm progress bar."""

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("reward", self.reward, REWARDS),
            ("bc_reg", self.bc_reg, BC_REGULARIZERS),
            ("vector_env", self.vector_env, VECTOR_ENVS),
            ("start_method", self.start_method, START_METHODS),
            ("finetune", self.finetune, FINETUNE_MODES),
            ("base_runtime", self.base_runtime, ("onnx", "torch")),
        ):
            if value not in allowed:
                raise ValueError(f"algo.{name}={value!r}: choose one of {allowed}")
        # plain dicts (e.g. PPOConfig(**dict(DictConfig))) become their dataclasses
        if isinstance(self.critic, dict):
            self.critic = CriticConfig(**{str(k): v for k, v in self.critic.items()})
        if isinstance(self.reward_model, dict):
            self.reward_model = RewardModelConfig(**{str(k): v for k, v in self.reward_model.items()})
        if isinstance(self.residual, dict):
            self.residual = ResidualConfig(**{str(k): v for k, v in self.residual.items()})
        if isinstance(self.rnd, dict):
            self.rnd = RNDConfig(**{str(k): v for k, v in self.rnd.items()})
        if self.num_envs < 1 or self.num_steps < 1:
            raise ValueError("algo.num_envs and algo.num_steps must be >= 1")
        if self.env_groups < 1:
            raise ValueError(f"algo.env_groups={self.env_groups} must be >= 1 (1: no pipelining)")
        if self.num_minibatches < 1 or self.num_envs * self.num_steps < self.num_minibatches:
            raise ValueError(
                f"algo.num_minibatches={self.num_minibatches} must be in 1..num_envs*num_steps "
                f"({self.num_envs * self.num_steps})"
            )
        if self.num_epochs < 1 or self.iterations < 1:
            raise ValueError("algo.num_epochs and algo.iterations must be >= 1")
        if not (0.0 < self.gamma <= 1.0 and 0.0 <= self.gae_lambda <= 1.0):
            raise ValueError("algo.gamma must be in (0, 1] and algo.gae_lambda in [0, 1]")
        if self.clip_coef <= 0 or self.value_clip_coef < 0 or self.target_kl < 0:
            raise ValueError("algo.clip_coef must be > 0; value_clip_coef and target_kl >= 0 (0 disables)")
        if not 0.0 < self.std_min < self.std_max:
            raise ValueError(f"algo.std_min={self.std_min} / std_max={self.std_max}: need 0 < std_min < std_max")
        if not 0.0 <= self.failure_replay <= 1.0:
            raise ValueError(f"algo.failure_replay={self.failure_replay}: a probability in [0, 1] (0 turns it off)")
        if min(self.bc_reg_coef, self.bc_reg_coef_final, self.entropy_coef, self.entropy_coef_final) < 0:
            raise ValueError("algo.bc_reg_coef(_final) and entropy_coef(_final) must be >= 0")
        if self.critic_warmup_iters < 0 or self.bc_reg_anneal_iters < 0 or self.entropy_anneal_iters < 0:
            raise ValueError("algo.critic_warmup_iters and the *_anneal_iters must be >= 0")
        if self.eval_episodes < 1 or self.checkpoint_every < 1 or self.eval_every < 0 or self.keep_last < 1:
            raise ValueError("algo.eval_episodes, checkpoint_every and keep_last must be >= 1, eval_every >= 0")
        if self.partial_blocks < 1:
            raise ValueError("algo.partial_blocks must be >= 1 (or use algo.finetune=full)")
        if self.value_norm_std_floor <= 0:
            raise ValueError("algo.value_norm_std_floor must be > 0 (or set algo.value_normalization=false)")
        if self.learning_rate <= 0 or self.critic_learning_rate <= 0 or self.max_grad_norm <= 0:
            raise ValueError("algo.learning_rate, critic_learning_rate and max_grad_norm must be > 0")

    @property
    def batch_size(self) -> int:
        """Transitions per iteration."""
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        """Transitions per gradient step."""
        return self.batch_size // self.num_minibatches


def linear_schedule(start: float, end: float, iters: int, it: int) -> float:
    """Linear interpolation from `start` (iteration 0) to `end` (iteration >= iters)."""
    if iters <= 0:
        return end
    frac = min(max(it / iters, 0.0), 1.0)
    return start + frac * (end - start)


def register(cs=None) -> None:
    """Register PPOConfig as `algo/base_ppo` in Hydra's ConfigStore (configs/algo/ppo.yaml builds on it)."""
    from hydra.core.config_store import ConfigStore  # noqa: PLC0415

    cs = cs or ConfigStore.instance()
    cs.store(group="algo", name="base_ppo", node=PPOConfig)
