"""The stable-baselines3 side of `robo-hybrid bench`: Gymnasium wrapper, SB3's ONNX export recipe, PPO / SAC learners.

stable-baselines3 is a benchmark-only extra (`pip install -e ".[bench]"`): it is imported inside the functions that
need it, so this module (and the wrapper) import without it. SB3 stores models with cloudpickle; nothing here
saves or loads one unless the user passes `sb3_model=<file.zip>` to the latency bench (a file they made).
"""

from __future__ import annotations

import functools
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch  # before any MuJoCo GL context in this process (and in SB3's env workers, which unpickle from here)

SB3_MISSING = ('stable-baselines3 is not installed; it is a benchmark-only extra: pip install -e ".[bench]" '
               '(or pip install "stable-baselines3>=2.3")')
ONNX_OPSET = 17

# rl-baselines3-zoo's PPO preset for CNN policies (its Atari entry: 8 envs x 128 steps, 4 epochs of 256-sample
# minibatches, lr 2.5e-4, clip 0.1, ent 0.01); SB3's MuJoCo defaults (2048 steps x 10 epochs of 64) would give a
# pixel policy only a handful of updates in a CPU budget. Override any key with sb3_ppo.<key>=value.
SB3_PPO_DEFAULTS: dict[str, Any] = {"n_steps": 128, "batch_size": 256, "n_epochs": 4, "learning_rate": 2.5e-4,
                                    "clip_range": 0.1, "ent_coef": 0.01, "vf_coef": 0.5}
# SB3's SAC defaults, except a replay buffer that fits memory: each transition keeps two 84x84x3 uint8 frames
# (obs and next obs, ~42 kB), so 20k transitions take ~0.85 GB. Override with sb3_sac.<key>=value.
SB3_SAC_DEFAULTS: dict[str, Any] = {"buffer_size": 20_000}
SB3_N_ENVS = {"ppo": 8, "sac": 1}


class SB3MissingError(ImportError):
    """stable-baselines3 is needed and not installed; the message says how to install it."""


def require_sb3():
    """The stable_baselines3 module, or SB3MissingError with the install command."""
    try:
        import stable_baselines3  # noqa: PLC0415
    except ImportError as e:
        raise SB3MissingError(SB3_MISSING) from e
    return stable_baselines3


class PolicyObsWrapper(gym.ObservationWrapper):
    """Keeps exactly the policy's inputs (the I/O spec's policy keys: image(s), proprio, goal).

    The env's observation also carries "privileged" simulator state (object pose and twist) for our asymmetric
    critic; a peer policy must not see it, exactly like ours. Images stay uint8 H x W x 3: SB3 detects image
    spaces and transposes them to C x H x W itself (VecTransposeImage) and divides by 255 in its policy.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.policy_keys: tuple[str, ...] = tuple(env.unwrapped.io_spec.policy_keys)  # type: ignore[attr-defined]
        space = env.observation_space
        assert isinstance(space, gym.spaces.Dict)
        self.observation_space = gym.spaces.Dict({k: space[k] for k in self.policy_keys})

    def observation(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Drop every key the policy may not read."""
        return {k: observation[k] for k in self.policy_keys}


def make_sb3_env(task: str, env_cfg: dict, monitor: bool = True) -> gym.Env:
    """One task env for SB3 (picklable through functools.partial for SubprocVecEnv workers)."""
    from robo_hybrid.envs import EnvConfig, make_env  # noqa: PLC0415

    env: gym.Env = PolicyObsWrapper(make_env(task, cfg=EnvConfig(**env_cfg)))
    if monitor:
        from stable_baselines3.common.monitor import Monitor  # noqa: PLC0415

        env = Monitor(env)
    return env


def sb3_act_fn(model, keys: tuple[str, ...]) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """Batched obs dict (N, ...) -> deterministic actions (N, A) of an SB3 model (its predict clips to the bounds)."""

    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(model.predict({k: obs[k] for k in keys}, deterministic=True)[0], dtype=np.float32)

    return act


# ------------------------------------------------------------------------------------------------ ONNX export
class OnnxableSB3Policy(torch.nn.Module):
    """SB3's documented ONNX export recipe (docs/guide/export.rst): forward calls policy(obs, deterministic=True).

    The dict observation arrives as positional tensors (ONNX inputs are flat) and the images as raw uint8 H x W x 3,
    transposed here to the C x H x W that SB3's VecTransposeImage feeds the policy, so the graph reads the same
    frame as ours. SB3's own preprocessing (uint8 -> float / 255) is inside `policy`; like the recipe says, action
    post-processing (clip / unscale) is not. PPO returns (actions, values, log_prob), SAC the actions.
    """

    def __init__(self, policy: torch.nn.Module, keys: tuple[str, ...], image_keys: tuple[str, ...]) -> None:
        super().__init__()
        self.policy, self.keys, self.image_keys = policy, tuple(keys), tuple(image_keys)

    def forward(self, *inputs: torch.Tensor):
        obs = dict(zip(self.keys, inputs, strict=True))
        for k in self.image_keys:
            obs[k] = obs[k].permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
        return self.policy(obs, deterministic=True)


def _shape(space: gym.Space) -> tuple[int, ...]:
    assert space.shape is not None, "SB3's MultiInputPolicy needs Box sub-spaces"
    return tuple(space.shape)


def example_inputs(raw_space: gym.spaces.Dict, keys: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    """Batch-1 zero tensors of the raw (H x W x C) observation space, in `keys` order."""
    return tuple(torch.zeros((1, *_shape(raw_space[k])), dtype=getattr(torch, str(raw_space[k].dtype))) for k in keys)


def export_sb3_onnx(policy: torch.nn.Module, raw_space: gym.spaces.Dict, out: str | Path) -> tuple[str, ...]:
    """torch.onnx.export of OnnxableSB3Policy with a dynamic batch axis; returns the output names."""
    keys = tuple(raw_space.spaces)
    image_keys = tuple(k for k in keys if raw_space[k].dtype == np.uint8 and len(_shape(raw_space[k])) == 3)
    wrapper = OnnxableSB3Policy(policy.cpu().eval(), keys, image_keys).eval()
    dummy = example_inputs(raw_space, keys)
    with torch.no_grad():
        probe = wrapper(*dummy)
    n_out = len(probe) if isinstance(probe, tuple) else 1
    out_names = ("action", "value", "log_prob")[:n_out] if n_out <= 3 else tuple(f"out{i}" for i in range(n_out))
    with torch.no_grad(), warnings.catch_warnings():
        # SB3's distributions validate their arguments in Python; the tracer warns that those checks become constants
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # pyright: ignore[reportPrivateImportUsage]
        torch.onnx.export(wrapper, dummy, str(out), opset_version=ONNX_OPSET, input_names=list(keys),
                          output_names=list(out_names), dynamic_axes={n: {0: "batch"} for n in (*keys, *out_names)},
                          dynamo=False)
    return out_names


def build_sb3_model(algo: str, env: gym.Env | Any, seed: int = 0, sb3_model: str = "", **kwargs):
    """An SB3 PPO / SAC with MultiInputPolicy on `env` (untrained), or `sb3_model` loaded onto it."""
    require_sb3()
    from stable_baselines3 import PPO, SAC  # noqa: PLC0415

    cls = {"ppo": PPO, "sac": SAC}.get(algo)
    if cls is None:
        raise ValueError(f"sb3_algo={algo!r}: choose ppo or sac")
    if sb3_model:
        return cls.load(sb3_model, env=env, device="cpu")
    defaults = SB3_PPO_DEFAULTS if algo == "ppo" else SB3_SAC_DEFAULTS
    return cls("MultiInputPolicy", env, seed=seed, device="cpu", verbose=0, **{**defaults, **kwargs})


def sb3_latency_fns(task: str, env_cfg: dict, algo: str = "ppo", sb3_model: str = "",
                    tmp_dir: str | None = None) -> tuple[dict[str, Callable[[dict], object]], dict]:
    """Batch-1 callables for the latency bench: SB3's exported policy in onnxruntime, and SB3 in torch eager.

    The SB3 model is built on the same task and frame size as ours (untrained unless `sb3_model` is given:
    latency does not depend on the weights) and exported with SB3's recipe; onnxruntime runs it with the same
    session options as our deploy runtime (1 thread, no spinning). Returns (callables, info).
    """
    from robo_hybrid.deploy.policy import session_options  # noqa: PLC0415

    env = make_sb3_env(task, {**env_cfg, "render": False}, monitor=False)
    try:
        # PPO's rollout buffer is allocated at construction: keep it small, it is never filled here
        model = build_sb3_model(algo, env, sb3_model=sb3_model, **({"n_steps": 8, "batch_size": 8}
                                                                    if algo == "ppo" and not sb3_model else {}))
        raw_space = env.observation_space
        assert isinstance(raw_space, gym.spaces.Dict)
        keys = tuple(raw_space.spaces)
        out = Path(tmp_dir or tempfile.mkdtemp()) / f"sb3_{algo}.onnx"
        out_names = export_sb3_onnx(model.policy, raw_space, out)
    finally:
        env.close()
    import onnxruntime as ort  # noqa: PLC0415

    sess = ort.InferenceSession(str(out), session_options(1), providers=["CPUExecutionProvider"])
    wrapper = OnnxableSB3Policy(model.policy, keys, tuple(k for k in keys if raw_space[k].dtype == np.uint8)).eval()

    def onnx_fn(obs: dict) -> object:
        return sess.run(None, {k: obs[k][None] for k in keys})

    def eager_fn(obs: dict) -> object:
        with torch.inference_mode():
            return wrapper(*[torch.from_numpy(obs[k][None]) for k in keys])

    info = {"algo": algo, "onnx": str(out), "outputs": list(out_names), "trained": bool(sb3_model),
            "params": int(sum(p.numel() for p in model.policy.parameters())),
            "policy_class": type(model.policy).__name__}
    return {f"sb3_{algo}_onnxruntime": onnx_fn, f"sb3_{algo}_torch_eager": eager_fn}, info


# ------------------------------------------------------------------------------------------------ learning
def learn_sb3(algo: str, task: str, env_cfg: dict, seed: int, tracker, n_envs: int = 0, vec_env: str = "subproc",
              kwargs: dict | None = None) -> dict:
    """Train SB3 `algo` (MultiInputPolicy) on the task until tracker.clock's budget runs out.

    `tracker` (robo_hybrid.bench.clock.EvalSchedule) owns the wall clock: building the vector env and the model is
    inside the budget, the held-out evaluations it runs at its wall-clock checkpoints are outside it.
    """
    require_sb3()
    from stable_baselines3.common.callbacks import BaseCallback  # noqa: PLC0415
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv  # noqa: PLC0415

    class BudgetCallback(BaseCallback):
        """Evaluates at the tracker's checkpoints; stops learning when the budget is spent."""

        def _on_training_start(self) -> None:
            stats["setup_s"] = round(tracker.clock.elapsed(), 1)  # vector env workers + model construction

        def _on_step(self) -> bool:
            if tracker.due():
                tracker.evaluate(sb3_act_fn(self.model, keys), 1, keys, f"sb3 {algo}")
            return not tracker.clock.expired()

    n_envs, stats = n_envs or SB3_N_ENVS[algo], {}  # stats: what the callback measures
    tracker.clock.start()
    fns = [functools.partial(make_sb3_env, task, env_cfg) for _ in range(n_envs)]
    venv = SubprocVecEnv(fns, start_method="forkserver") if vec_env == "subproc" else DummyVecEnv(fns)  # type: ignore
    try:
        keys = tuple(venv.observation_space.spaces)  # type: ignore[union-attr]
        model = build_sb3_model(algo, venv, seed=seed, **(kwargs or {}))
        model.learn(total_timesteps=10**12, callback=BudgetCallback())
        tracker.finish(sb3_act_fn(model, keys), 1, keys, f"sb3 {algo}")
        return {**stats, "env_steps": int(model.num_timesteps), "n_envs": n_envs, "vec_env": vec_env,
                "hyperparameters": {**(SB3_PPO_DEFAULTS if algo == "ppo" else SB3_SAC_DEFAULTS), **(kwargs or {})},
                "params": int(sum(p.numel() for p in model.policy.parameters()))}
    finally:
        venv.close()
