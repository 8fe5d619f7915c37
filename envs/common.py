"""Conventions shared by every task (own MuJoCo arm and Fetch adapters): config, spaces, the I/O spec."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import gymnasium as gym
import numpy as np

from robo_hybrid.spec import IOSpec, TensorSpec, proprio_layout

from .rewards import RewardWeights

# Action: Cartesian end-effector delta + gripper, all in [-1, 1].
# xyz: +1 moves the end effector by `max_ee_delta_m` along that world axis in one control step.
# gripper: +1 opens fully, -1 closes (the Fetch convention, so both robots share one meaning).
ACTION_MEANING = ("ee_delta_x", "ee_delta_y", "ee_delta_z", "gripper_open_close")
ACTION_DIM = 4
# Privileged (simulator-only) state: object position (3), quaternion wxyz (4), linear velocity (3),
# angular velocity (3). Zeros for tasks without an object. Never a policy input.
PRIVILEGED_DIM = 13
GOAL_DIM = 3


@dataclass
class RandomizationConfig:
    """Domain randomization; everything off by default."""

    enabled: bool = False
    """Master switch: when False nothing below is applied."""
    lighting: bool = True
    """Random light direction, diffuse and ambient intensity at each reset."""
    colors: bool = True
    """Random table and object RGB at each reset."""
    camera_pos_jitter_m: float = 0.01
    """Uniform jitter of each camera position per axis, metres."""
    camera_rot_jitter_rad: float = 0.02
    """Uniform jitter of each camera orientation (small-angle, per axis), radians."""
    object_mass_range: tuple[float, float] = (0.5, 1.5)
    """Multiplicative range on the object's mass."""
    friction_range: tuple[float, float] = (0.7, 1.3)
    """Multiplicative range on the object's sliding friction."""
    action_latency_steps: tuple[int, int] = (0, 1)
    """Inclusive range of control steps by which actions are delayed (sampled per episode)."""

    def __post_init__(self) -> None:
        for name in ("object_mass_range", "friction_range", "action_latency_steps"):
            lo, hi = getattr(self, name)
            if lo > hi or lo < 0:
                raise ValueError(f"randomization.{name}={lo, hi}: need 0 <= low <= high; fix the task config")
        if self.camera_pos_jitter_m < 0 or self.camera_rot_jitter_rad < 0:
            raise ValueError("randomization camera jitter must be >= 0; fix the task config")


@dataclass
class EnvConfig:
    """Options every task understands."""

    image_size: int = 84
    """Camera images are image_size x image_size x 3 uint8."""
    camera: str = "front"
    """Camera for the `image` key ('front' or 'wrist' on the own arm; 'external' on Fetch)."""
    wrist_camera: bool = False
    """Also return `image_wrist` from the wrist camera (own arm only)."""
    render: bool = True
    """When False, images are zeros (fast physics-only rollouts for experts and tests)."""
    control_rate_hz: float = 25.0
    """Policy / action rate; physics substeps fill each control period."""
    episode_steps: int = 0
    """Truncation horizon in control steps; 0 = the task's default."""
    terminate_on_success: bool = True
    """End the episode (terminated=True) on the first successful step."""
    reward: str = "sparse"
    """'sparse' (1 on success else 0) or 'dense' (the terms of envs/rewards.py weighted by `reward_weights`);
    either way info["reward_terms"] holds each weighted term (their sum is the reward)."""
    reward_weights: RewardWeights = field(default_factory=RewardWeights)
    """Weight of each named dense-reward term (set per task in configs/task/<task>.yaml)."""
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)

    def __post_init__(self) -> None:
        if isinstance(self.randomization, dict):
            self.randomization = RandomizationConfig(**self.randomization)
        if isinstance(self.reward_weights, dict):
            names = {f.name for f in fields(RewardWeights)}
            unknown = sorted(set(self.reward_weights) - names)
            if unknown:
                raise ValueError(f"reward_weights: unknown term(s) {unknown}; choose from {sorted(names)}")
            self.reward_weights = RewardWeights(**self.reward_weights)
        if not 16 <= self.image_size <= 512:
            raise ValueError(f"image_size={self.image_size}: must be within 16..512 pixels")
        if self.reward not in ("sparse", "dense"):
            raise ValueError(f"reward={self.reward!r}: choose 'sparse' or 'dense'")
        if not 1.0 <= self.control_rate_hz <= 500.0:
            raise ValueError(f"control_rate_hz={self.control_rate_hz}: must be within 1..500 Hz")
        if self.episode_steps < 0:
            raise ValueError("episode_steps must be >= 0 (0 = task default)")


def image_keys(cfg: EnvConfig) -> tuple[str, ...]:
    """Image observation keys this config produces."""
    return ("image", "image_wrist") if cfg.wrist_camera else ("image",)


def build_io_spec(
    task_id: str,
    cfg: EnvConfig,
    joint_names: tuple[str, ...],
    max_ee_delta_m: float,
    workspace_low_m: tuple[float, float, float],
    workspace_high_m: tuple[float, float, float],
    episode_steps: int,
    extras: dict | None = None,
) -> IOSpec:
    """The I/O spec for a task with the shared observation / action layout."""
    n = cfg.image_size
    layout = proprio_layout(joint_names)
    cams = {"image": cfg.camera, "image_wrist": "wrist"}
    obs = [
        TensorSpec(k, (n, n, 3), "uint8", "rgb_0_255", 0, 255, f"camera '{cams[k]}', H x W x 3")
        for k in image_keys(cfg)
    ]
    obs.append(TensorSpec("proprio", (len(layout),), "float32", "mixed_si", description=", ".join(layout)))
    obs.append(TensorSpec("goal", (GOAL_DIM,), "float32", "m", description="target position, world frame"))
    return IOSpec(
        task_id=task_id,
        observations=tuple(obs),
        action=TensorSpec("action", (ACTION_DIM,), "float32", "normalized", -1.0, 1.0, ", ".join(ACTION_MEANING)),
        action_meaning=ACTION_MEANING,
        control_rate_hz=float(cfg.control_rate_hz),
        joint_names=tuple(joint_names),
        proprio_layout=layout,
        privileged=(
            TensorSpec("privileged", (PRIVILEGED_DIM,), "float32", "mixed_si", description="object pose and twist"),
        ),
        max_ee_delta_m=float(max_ee_delta_m),
        workspace_low_m=tuple(float(x) for x in workspace_low_m),  # type: ignore[arg-type]
        workspace_high_m=tuple(float(x) for x in workspace_high_m),  # type: ignore[arg-type]
        episode_steps=int(episode_steps),
        extras=dict(extras or {}),
    )


def spaces_from_spec(spec: IOSpec) -> tuple[gym.spaces.Dict, gym.spaces.Box]:
    """Gymnasium observation (policy keys + privileged) and action spaces for a spec."""
    d = {}
    for t in spec.observations + spec.privileged:
        if t.dtype == "uint8":
            d[t.name] = gym.spaces.Box(0, 255, t.shape, np.uint8)
        else:
            big = np.finfo(np.float32).max  # finite bounds: unbounded physical quantities, no checker warnings
            d[t.name] = gym.spaces.Box(-big, big, t.shape, np.float32)
    act = gym.spaces.Box(-1.0, 1.0, spec.action.shape, np.float32)
    return gym.spaces.Dict(d), act
