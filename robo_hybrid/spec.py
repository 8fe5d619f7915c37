"""The I/O spec: the one contract that travels from env to dataset to checkpoint to ONNX file to robot.

numpy + stdlib only: the deploy runtime imports this module on the robot computer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np

SPEC_VERSION = 1

# Layout of the `proprio` vector, shared by the sim envs and by any real robot driver.
# (n_joints joint positions, n_joints joint velocities, 3 end-effector position, 1 gripper opening)
PROPRIO_PARTS = ("joint_pos_rad", "joint_vel_rad_s", "ee_pos_m", "gripper_opening_m")


class SpecMismatchError(ValueError):
    """Two I/O specs (model vs env, model vs robot, file vs env) disagree."""


@dataclass(frozen=True)
class TensorSpec:
    """One named array: shape (without batch), dtype, units, optional bounds."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    units: str = ""
    low: float | None = None
    high: float | None = None
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        np.dtype(self.dtype)  # raises TypeError on an unknown dtype

    def check(self, value: np.ndarray, batched: bool = False) -> None:
        """Raise SpecMismatchError when `value` does not have this spec's shape and dtype."""
        arr = np.asarray(value)
        shape = arr.shape[1:] if batched else arr.shape
        if tuple(shape) != self.shape:
            raise SpecMismatchError(f"'{self.name}': expected shape {self.shape}, got {tuple(shape)}")
        if arr.dtype != np.dtype(self.dtype):
            raise SpecMismatchError(f"'{self.name}': expected dtype {self.dtype}, got {arr.dtype}")


@dataclass(frozen=True)
class IOSpec:
    """What a policy reads and writes, as declared by the env that produced its data."""

    task_id: str
    observations: tuple[TensorSpec, ...]  # policy inputs only (deployable sensors)
    action: TensorSpec
    action_meaning: tuple[str, ...]
    control_rate_hz: float
    joint_names: tuple[str, ...]
    proprio_layout: tuple[str, ...]
    privileged: tuple[TensorSpec, ...] = ()  # simulator-only state for critic / reward model
    max_ee_delta_m: float = 0.0  # action unit: +1 on an xyz axis moves the end effector this far per step
    workspace_low_m: tuple[float, float, float] = (-1.0, -1.0, -1.0)
    workspace_high_m: tuple[float, float, float] = (1.0, 1.0, 1.0)
    episode_steps: int = 0
    version: int = SPEC_VERSION
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # refused here, at load, so a bad file never reaches a division by the rate or an inverted box
        rate = self.control_rate_hz
        if not isinstance(rate, (int, float)) or not np.isfinite(rate) or rate <= 0:
            raise SpecMismatchError(f"I/O spec of {self.task_id!r}: control_rate_hz={rate!r} must be a finite "
                                    "number > 0. Fix: re-export with the env's control rate")  # fmt: skip
        if not np.isfinite(self.max_ee_delta_m) or self.max_ee_delta_m < 0:
            raise SpecMismatchError(f"I/O spec of {self.task_id!r}: max_ee_delta_m={self.max_ee_delta_m!r} "
                                    "must be >= 0")  # fmt: skip
        lo, hi = np.asarray(self.workspace_low_m, float), np.asarray(self.workspace_high_m, float)
        finite = bool(np.isfinite(lo).all() and np.isfinite(hi).all())
        if lo.shape != (3,) or hi.shape != (3,) or not finite or (lo > hi).any():
            raise SpecMismatchError(f"I/O spec of {self.task_id!r}: workspace {list(lo)}..{list(hi)} must be 3 finite "
                                    "values each with low <= high")  # fmt: skip
        if int(self.episode_steps) < 0:
            raise SpecMismatchError(f"I/O spec of {self.task_id!r}: episode_steps={self.episode_steps} must be >= 0")

    # ----- views -----
    @property
    def policy_keys(self) -> tuple[str, ...]:
        """Observation keys the policy (and the exported graph) takes, in order."""
        return tuple(t.name for t in self.observations)

    @property
    def image_keys(self) -> tuple[str, ...]:
        """Policy inputs that are uint8 H x W x 3 camera images."""
        return tuple(t.name for t in self.observations if t.dtype == "uint8")

    @property
    def privileged_keys(self) -> tuple[str, ...]:
        """Keys that only the simulator has (critic / reward model inputs)."""
        return tuple(t.name for t in self.privileged)

    @property
    def control_dt_s(self) -> float:
        """Control period in seconds."""
        return 1.0 / self.control_rate_hz

    def obs(self, key: str) -> TensorSpec:
        """The TensorSpec of observation `key` (policy or privileged)."""
        for t in self.observations + self.privileged:
            if t.name == key:
                return t
        raise KeyError(f"observation '{key}' is not in the spec of {self.task_id} (has {self.policy_keys})")

    def check_obs(self, obs: dict, batched: bool = False) -> None:
        """Raise SpecMismatchError if `obs` lacks a policy key or has a wrong shape / dtype."""
        for t in self.observations:
            if t.name not in obs:
                raise SpecMismatchError(f"observation '{t.name}' missing (got keys {sorted(obs)})")
            t.check(obs[t.name], batched=batched)

    # ----- comparison -----
    def mismatches(self, other: IOSpec, check_rate: bool = True, check_task: bool = True) -> list[str]:
        """Human-readable differences that make a policy for `self` unsafe to run on `other`.

        Workspace boxes need not be equal (the robot side enforces their intersection) but must overlap.
        """
        out: list[str] = []
        if check_task and self.task_id != other.task_id:
            out.append(f"task: model trained for {self.task_id!r}, robot/env provides {other.task_id!r}")
        lo = np.maximum(self.workspace_low_m, other.workspace_low_m)
        hi = np.minimum(self.workspace_high_m, other.workspace_high_m)
        if (lo > hi).any():
            out.append(f"workspace boxes do not overlap: model {list(self.workspace_low_m)}.."
                       f"{list(self.workspace_high_m)}, robot {list(other.workspace_low_m)}.."
                       f"{list(other.workspace_high_m)}")  # fmt: skip
        mine = {t.name: t for t in self.observations}
        theirs = {t.name: t for t in other.observations}
        for k in mine:
            if k not in theirs:
                out.append(f"observation '{k}' required by the model is not provided (provided: {sorted(theirs)})")
            elif (mine[k].shape, mine[k].dtype) != (theirs[k].shape, theirs[k].dtype):
                out.append(
                    f"observation '{k}': model expects {mine[k].shape} {mine[k].dtype}, "
                    f"got {theirs[k].shape} {theirs[k].dtype}"
                )
        if self.action.shape != other.action.shape:
            out.append(f"action shape: model {self.action.shape}, robot {other.action.shape}")
        if tuple(self.action_meaning) != tuple(other.action_meaning):
            out.append(f"action meaning: model {list(self.action_meaning)}, robot {list(other.action_meaning)}")
        if (self.action.low, self.action.high) != (other.action.low, other.action.high):
            out.append(
                f"action bounds: model [{self.action.low}, {self.action.high}], "
                f"robot [{other.action.low}, {other.action.high}]"
            )
        if not np.isclose(self.max_ee_delta_m, other.max_ee_delta_m):
            out.append(f"action scale max_ee_delta_m: model {self.max_ee_delta_m}, robot {other.max_ee_delta_m}")
        if tuple(self.proprio_layout) != tuple(other.proprio_layout):
            out.append(f"proprio layout: model {list(self.proprio_layout)}, robot {list(other.proprio_layout)}")
        if check_rate and not np.isclose(self.control_rate_hz, other.control_rate_hz):
            out.append(f"control rate: model {self.control_rate_hz} Hz, robot {other.control_rate_hz} Hz")
        return out

    def require_compatible(
        self, other: IOSpec, what: str = "robot", check_rate: bool = True, check_task: bool = True
    ) -> None:
        """Raise SpecMismatchError listing every mismatch between this (model) spec and `other`."""
        problems = self.mismatches(other, check_rate=check_rate, check_task=check_task)
        if problems:
            raise SpecMismatchError(
                f"the model's I/O spec ({self.task_id}) does not match the {what}'s ({other.task_id}):\n  - "
                + "\n  - ".join(problems)
                + f"\nFix: use a model trained for this {what}, or configure the {what} to match the model."
            )

    # ----- serialization -----
    def to_dict(self) -> dict:
        """Plain-JSON dict."""
        return asdict(self)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys) so that hashes are stable."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def hash(self) -> str:
        """Short SHA-256 of the canonical JSON."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @staticmethod
    def from_dict(d: dict) -> IOSpec:
        """Inverse of to_dict; raises SpecMismatchError naming what is missing."""
        try:
            d = dict(d)
            if int(d.get("version", 0)) != SPEC_VERSION:
                raise SpecMismatchError(f"I/O spec version {d.get('version')} != supported {SPEC_VERSION}")
            d["observations"] = tuple(TensorSpec(**t) for t in d["observations"])
            d["privileged"] = tuple(TensorSpec(**t) for t in d.get("privileged", ()))
            d["action"] = TensorSpec(**d["action"])
            for k in ("action_meaning", "joint_names", "proprio_layout", "workspace_low_m", "workspace_high_m"):
                if k in d:
                    d[k] = tuple(d[k])
            return IOSpec(**d)
        except SpecMismatchError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise SpecMismatchError(f"malformed I/O spec: {e!r}; the file was not written by this version") from e

    @staticmethod
    def from_json(s: str | bytes) -> IOSpec:
        """Parse JSON written by to_json."""
        try:
            d = json.loads(s)
        except json.JSONDecodeError as e:
            raise SpecMismatchError(f"I/O spec is not valid JSON: {e}") from e
        return IOSpec.from_dict(d)


def proprio_layout(joint_names: tuple[str, ...]) -> tuple[str, ...]:
    """Element names of the proprio vector for an arm with these joints."""
    return (
        tuple(f"{j}.pos_rad" for j in joint_names)
        + tuple(f"{j}.vel_rad_s" for j in joint_names)
        + ("ee.x_m", "ee.y_m", "ee.z_m", "gripper.opening_m")
    )


def assemble_proprio(
    joint_pos_rad: np.ndarray, joint_vel_rad_s: np.ndarray, ee_pos_m: np.ndarray, gripper_opening_m: float
) -> np.ndarray:
    """Build the float32 proprio vector from robot state; the sim envs and real robot drivers share this."""
    return np.concatenate(
        [
            np.asarray(joint_pos_rad, dtype=np.float32).ravel(),
            np.asarray(joint_vel_rad_s, dtype=np.float32).ravel(),
            np.asarray(ee_pos_m, dtype=np.float32).ravel()[:3],
            np.asarray([gripper_opening_m], dtype=np.float32),
        ]
    ).astype(np.float32)
