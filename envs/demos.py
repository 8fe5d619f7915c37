"""Demonstration files in robomimic's HDF5 layout: collection by scripted experts, validated loading.

Layout: data/demo_<i>/{obs/<key>, actions, rewards, dones, states}; `data` attributes hold the I/O spec,
env config, task and a `complete` flag written last; each demo holds its `seed`, `success`, `num_samples`.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from robo_hybrid.spec import IOSpec, SpecMismatchError

FORMAT_VERSION = 1


class DemoFileError(ValueError):
    """A demo file that cannot be used: missing, truncated, corrupt, or for another spec."""


@dataclass
class Episode:
    """One demonstration: per-step arrays (observation before the action at the same index)."""

    obs: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    states: np.ndarray
    seed: int
    success: bool

    def __len__(self) -> int:
        return len(self.actions)


@dataclass
class Demos:
    """A loaded, validated demo file."""

    spec: IOSpec
    env_config: dict
    task: str
    episodes: list[Episode] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        """Fraction of episodes the expert solved."""
        return float(np.mean([e.success for e in self.episodes])) if self.episodes else 0.0

    @property
    def seeds(self) -> list[int]:
        """Reset seeds of the episodes (evaluation must use disjoint seeds)."""
        return [e.seed for e in self.episodes]


# ----------------------------------------------------------------------------------------------- collection
def rollout_expert(env, expert, seed: int, action_noise: float = 0.0) -> Episode:
    """Run the scripted expert for one episode and record it.

    action_noise > 0 (DART): the env executes expert + N(0, action_noise) on the xyz axes while the file records the
    expert's clean action, so the demos visit (and label) the states a slightly-off policy drifts into.
    """
    rng = np.random.default_rng(seed + 7_777_777)
    obs, _ = env.reset(seed=seed)
    expert.reset()
    keys = list(obs)
    buf: dict[str, list] = {k: [] for k in keys}
    actions, rewards, dones, states = [], [], [], []
    success = False
    while True:
        for k in keys:
            buf[k].append(obs[k])
        states.append(env.unwrapped.get_state())
        action = expert.act(obs, env)
        executed = action
        if action_noise > 0:
            noise = rng.normal(0.0, action_noise, action.shape) * np.array([1, 1, 1, 0])
            executed = np.clip(action + noise, -1.0, 1.0).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(executed)
        actions.append(action)
        rewards.append(reward)
        dones.append(terminated or truncated)
        success = success or bool(info["is_success"])
        if terminated or truncated:
            break
    return Episode(
        obs={k: np.stack(v) for k, v in buf.items()},
        actions=np.asarray(actions, np.float32),
        rewards=np.asarray(rewards, np.float32),
        dones=np.asarray(dones, bool),
        states=np.asarray(states, np.float64),
        seed=int(seed),
        success=success,
    )


def _collect_chunk(task: str, env_cfg: dict, seeds: list[int], action_noise: float = 0.0) -> list[Episode]:
    """Worker: build the env once, roll out the expert on each seed."""
    from . import EnvConfig, make_env, make_expert  # noqa: PLC0415

    env = make_env(task, cfg=EnvConfig(**env_cfg))
    try:
        expert = make_expert(env)
        return [rollout_expert(env, expert, s, action_noise) for s in seeds]
    finally:
        env.close()


@dataclass
class CollectReport:
    """What a collection run produced."""

    path: str
    episodes: int
    success_rate: float
    env_steps: int
    wall_s: float

    @property
    def steps_per_s(self) -> float:
        """Environment steps per second, rendering and writing included."""
        return self.env_steps / max(self.wall_s, 1e-9)


def collect(
    task: str, env_cfg, episodes: int, out: str | os.PathLike, seed: int = 0, workers: int = 1, progress: bool = True,
    action_noise: float = 0.0,
) -> CollectReport:
    """Roll out the scripted expert on seeds seed..seed+episodes-1 and write one demo file atomically."""
    from tqdm import tqdm  # noqa: PLC0415

    from . import EnvConfig, make_env  # noqa: PLC0415

    if episodes < 1:
        raise ValueError(f"episodes={episodes}: need at least 1")
    if not 0.0 <= action_noise <= 1.0:
        raise ValueError(f"action_noise={action_noise}: must be within [0, 1] (0 = clean expert)")
    cfg_dict = asdict(env_cfg) if not isinstance(env_cfg, dict) else dict(env_cfg)
    probe = make_env(task, cfg=EnvConfig(**cfg_dict))
    spec = probe.unwrapped.io_spec  # type: ignore[attr-defined]
    probe.close()
    seeds = list(range(seed, seed + episodes))
    chunk = max(1, min(10, episodes // max(1, workers * 4)))
    chunks = [seeds[i : i + chunk] for i in range(0, len(seeds), chunk)]
    results: dict[int, Episode] = {}
    t0 = time.perf_counter()
    bar = tqdm(total=episodes, desc=f"collect {task}", unit="ep", disable=not progress)
    if workers <= 1:
        for c in chunks:
            for ep in _collect_chunk(task, cfg_dict, c, action_noise):
                results[ep.seed] = ep
            bar.update(len(c))
            bar.set_postfix(success=f"{np.mean([e.success for e in results.values()]):.2f}")
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_collect_chunk, task, cfg_dict, c, action_noise) for c in chunks]
            for f in as_completed(futures):
                eps = f.result()
                for ep in eps:
                    results[ep.seed] = ep
                bar.update(len(eps))
                bar.set_postfix(success=f"{np.mean([e.success for e in results.values()]):.2f}")
    bar.close()
    eps = [results[s] for s in seeds]
    write_demos(out, Demos(spec=spec, env_config=cfg_dict, task=task, episodes=eps))
    wall = time.perf_counter() - t0
    return CollectReport(str(out), len(eps), float(np.mean([e.success for e in eps])), sum(map(len, eps)), wall)


# ----------------------------------------------------------------------------------------------- writing
def write_demos(path: str | os.PathLike, demos: Demos) -> None:
    """Write a demo file atomically: a temporary file renamed into place only once complete."""
    import h5py  # noqa: PLC0415

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            data = f.create_group("data")
            for i, ep in enumerate(demos.episodes):
                g = data.create_group(f"demo_{i}")
                for k, v in ep.obs.items():
                    kw = {"compression": "lzf", "chunks": (1, *v.shape[1:])} if v.dtype == np.uint8 else {}
                    g.create_dataset(f"obs/{k}", data=v, **kw)
                g.create_dataset("actions", data=ep.actions)
                g.create_dataset("rewards", data=ep.rewards)
                g.create_dataset("dones", data=ep.dones)
                g.create_dataset("states", data=ep.states)
                g.attrs.update(num_samples=len(ep), seed=ep.seed, success=bool(ep.success))
            data.attrs["io_spec"] = demos.spec.to_json()
            data.attrs["env_config"] = json.dumps(demos.env_config, sort_keys=True)
            data.attrs["env_args"] = json.dumps({"env_name": demos.spec.task_id, "env_kwargs": demos.env_config})
            data.attrs["task"] = demos.task
            data.attrs["total"] = int(sum(map(len, demos.episodes)))
            data.attrs["format_version"] = FORMAT_VERSION
            data.attrs["complete"] = True  # written last: a file without it never reads as complete
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ----------------------------------------------------------------------------------------------- reading
def load_demos(path: str | os.PathLike, expect_spec: IOSpec | None = None, only_success: bool = False) -> Demos:
    """Read and validate a demo file; DemoFileError names the problem and the fix."""
    import h5py  # noqa: PLC0415

    path = Path(path)
    fix = f"re-create it with `robo-hybrid collect task=<task> out={path}`"
    if not path.exists():
        raise DemoFileError(f"demo file {path} does not exist; {fix}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DemoFileError(f"{path} is not a readable HDF5 file (truncated or corrupt: {e}); {fix}") from e
    with f:
        data = f.get("data")
        if not isinstance(data, h5py.Group) or not data.attrs.get("complete", False):
            raise DemoFileError(f"{path} is incomplete (no `data` group or `complete` flag: the writer stopped); {fix}")
        try:
            spec = IOSpec.from_json(str(data.attrs["io_spec"]))
            env_config = json.loads(str(data.attrs["env_config"]))
            task = str(data.attrs["task"])
        except (KeyError, SpecMismatchError, json.JSONDecodeError) as e:
            raise DemoFileError(f"{path}: missing or malformed file attributes ({e}); {fix}") from e
        if expect_spec is not None:
            try:
                spec.require_compatible(expect_spec, what="env")
            except SpecMismatchError as e:
                raise DemoFileError(f"{path} was recorded for another I/O spec:\n{e}") from e
        names = sorted((str(k) for k in data.keys() if str(k).startswith("demo_")), key=lambda k: int(k.split("_")[1]))
        if not names:
            raise DemoFileError(f"{path} holds no demos; {fix}")
        episodes = [_read_episode(path, data[n], n, spec) for n in names]
    if only_success:
        episodes = [e for e in episodes if e.success]
    return Demos(spec=spec, env_config=env_config, task=task, episodes=episodes)


def _read_episode(path: Path, g, name: str, spec: IOSpec) -> Episode:
    """Read one demo group and check it against the spec."""
    try:
        obs = {k: g["obs"][k][()] for k in g["obs"]}
        ep = Episode(
            obs=obs,
            actions=g["actions"][()],
            rewards=g["rewards"][()],
            dones=g["dones"][()],
            states=g["states"][()],
            seed=int(g.attrs["seed"]),
            success=bool(g.attrs["success"]),
        )
    except (KeyError, OSError) as e:
        raise DemoFileError(f"{path}: demo {name} is damaged or incomplete ({e}); re-collect the file") from e
    t = len(ep.actions)
    for ts in spec.observations + spec.privileged:
        if ts.name not in obs:
            raise DemoFileError(f"{path}: {name} lacks observation '{ts.name}' that its I/O spec declares")
        arr = obs[ts.name]
        if arr.shape != (t, *ts.shape) or arr.dtype != np.dtype(ts.dtype):
            raise DemoFileError(
                f"{path}: {name}/obs/{ts.name} is {arr.shape} {arr.dtype}, spec says ({t}, *{ts.shape}) {ts.dtype}"
            )
    if ep.actions.shape != (t, *spec.action.shape) or not np.all(np.isfinite(ep.actions)):
        raise DemoFileError(f"{path}: {name}/actions has shape {ep.actions.shape} or non-finite values")
    if len(ep.rewards) != t or len(ep.dones) != t or len(ep.states) != t:
        raise DemoFileError(f"{path}: {name} has arrays of different lengths (actions {t})")
    return ep
