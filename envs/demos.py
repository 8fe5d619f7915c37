"""Demonstration files in robomimic's HDF5 layout: collection by scripted experts, validated loading.

Layout: data/demo_<i>/{obs/<key>, actions, rewards, dones, states}; `data` attributes hold the I/O spec,
env config, task and a `complete` flag written last; each demo holds its `seed`, `success`, `num_samples`.
Collection writes each episode as it finishes into `<out>.partial/`, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from robo_hybrid.fileio import atomic_path, atomic_write_json, atomic_write_with
from robo_hybrid.spec import IOSpec, SpecMismatchError

FORMAT_VERSION = 1
PARTIAL_SUFFIX = ".partial"  # <out>.partial/: the episodes of an unfinished collection, one file each
MANIFEST_FILE = "manifest.json"  # in <out>.partial/: what the episodes were collected with


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


@dataclass
class CollectReport:
    """What a collection run produced (`episodes`, `success_rate` and `env_steps` count the whole file)."""

    path: str
    episodes: int
    success_rate: float
    env_steps: int
    wall_s: float
    resumed: int = 0
    """Episodes that were already on disk from an interrupted run of the same collection."""
    new_env_steps: int | None = None
    """Env steps taken by this run (None: all of env_steps)."""

    @property
    def steps_per_s(self) -> float:
        """Environment steps per second of this run, rendering and writing included."""
        steps = self.env_steps if self.new_env_steps is None else self.new_env_steps
        return steps / max(self.wall_s, 1e-9)


def partial_dir(out: str | os.PathLike) -> Path:
    """Where `collect` keeps the episodes of an unfinished `out`: one file per episode, plus a manifest."""
    out = Path(out)
    return out.with_name(out.name + PARTIAL_SUFFIX)


def _int_attr(node: Any, key: str) -> int:
    """An HDF5 object's scalar attribute as an int (h5py's attrs are untyped)."""
    return int(node.attrs[key])


def _episode_path(pdir: Path, index: int) -> Path:
    return pdir / f"episode_{index:06d}.hdf5"


def _write_episode_file(path: Path, ep: Episode, index: int) -> None:
    """One episode in its own small HDF5 file (group `demo`), written atomically."""
    import h5py  # noqa: PLC0415

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            _write_demo_group(f.create_group("demo"), ep)
            f.attrs["index"] = index

    atomic_write_with(path, write)


def _collect_chunk(task: str, env_cfg: dict, seed: int, indices: list[int], action_noise: float,
                   pdir: str) -> list[tuple[int, int]]:
    """Worker: build the env once, roll out the expert on seed + i for each index i, write each episode file as
    soon as it is done; returns (index, env steps) per episode."""
    from . import EnvConfig, make_env, make_expert  # noqa: PLC0415

    env = make_env(task, cfg=EnvConfig(**env_cfg))
    done = []
    try:
        expert = make_expert(env)
        for i in indices:
            ep = rollout_expert(env, expert, seed + i, action_noise)
            _write_episode_file(_episode_path(Path(pdir), i), ep, i)
            done.append((i, len(ep)))
    finally:
        env.close()
    return done


def _manifest(task: str, spec: IOSpec, cfg_dict: dict, seed: int, action_noise: float) -> dict:
    """What makes two collections the same (episode i is then the same episode in both); JSON-normalized."""
    return json.loads(json.dumps({
        "format_version": FORMAT_VERSION, "task": task, "seed": int(seed), "action_noise": float(action_noise),
        "env_config": cfg_dict, "io_spec": json.loads(spec.to_json()),
    }, sort_keys=True))


def _resume(pdir: Path, manifest: dict, episodes: int) -> list[int]:
    """Indices < episodes already on disk in `pdir` (after checking it belongs to this collection)."""
    import h5py  # noqa: PLC0415

    path = pdir / MANIFEST_FILE
    if not path.is_file():
        if any(pdir.glob("episode_*.hdf5")):
            raise DemoFileError(f"{pdir} holds episodes but no {MANIFEST_FILE}; delete it (rm -r {pdir}) and rerun")
        atomic_write_json(path, manifest)
        return []
    try:
        on_disk = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DemoFileError(f"{path} is unreadable ({e}); delete {pdir} (rm -r {pdir}) and rerun") from e
    differ = sorted(k for k in set(manifest) | set(on_disk) if manifest.get(k) != on_disk.get(k))
    if differ:
        raise DemoFileError(f"{pdir} holds episodes of another collection ({', '.join(differ)} differ); delete it "
                            f"(rm -r {pdir}) or rerun with the task, seed and settings it was started with")
    for stray in pdir.glob(".*"):  # a writer killed mid-episode leaves its temporary file
        stray.unlink()
    done = []
    for i in range(episodes):
        p = _episode_path(pdir, i)
        if not p.is_file():
            continue
        try:
            with h5py.File(p, "r") as f:
                ok = _int_attr(f, "index") == i and _int_attr(f["demo"], "seed") == manifest["seed"] + i
        except (OSError, KeyError):
            ok = False
        if ok:
            done.append(i)
        else:
            p.unlink()  # unreadable or foreign: collected again
    return done


def collect(
    task: str, env_cfg, episodes: int, out: str | os.PathLike, seed: int = 0, workers: int = 1, progress: bool = True,
    action_noise: float = 0.0,
) -> CollectReport:
    """Roll out the scripted expert on seeds seed..seed+episodes-1 into `out`, resuming an interrupted run.

    Each episode is written to its own file in `<out>.partial/` as soon as it is done; a rerun with the same
    arguments collects only the missing ones (episode i always has seed seed + i, so the result is the same file
    as an uninterrupted run); the complete file is then assembled atomically and the partial directory removed.
    """
    from . import EnvConfig, make_env  # noqa: PLC0415

    if episodes < 1:
        raise ValueError(f"episodes={episodes}: need at least 1")
    if not 0.0 <= action_noise <= 1.0:
        raise ValueError(f"action_noise={action_noise}: must be within [0, 1] (0 = clean expert)")
    cfg_dict = asdict(env_cfg) if not isinstance(env_cfg, dict) else dict(env_cfg)
    probe = make_env(task, cfg=EnvConfig(**cfg_dict))
    spec = probe.unwrapped.io_spec  # type: ignore[attr-defined]
    probe.close()
    out, t0 = Path(out), time.perf_counter()
    pdir = partial_dir(out)
    manifest = _manifest(task, spec, cfg_dict, seed, action_noise)
    done = _resume(pdir, manifest, episodes) if pdir.is_dir() else []
    _remove_stale_tmp(out)
    if not done:
        atomic_write_json(pdir / MANIFEST_FILE, manifest)
    else:
        print(f"resuming {out}: {len(done)} of {episodes} episodes on disk", flush=True)
    todo = sorted(set(range(episodes)) - set(done))
    new_steps = _run_chunks(task, cfg_dict, seed, todo, action_noise, pdir, workers, progress, len(done), episodes)
    success_rate, env_steps = _assemble(out, pdir, episodes, spec, cfg_dict, task)
    shutil.rmtree(pdir)
    wall = time.perf_counter() - t0
    return CollectReport(str(out), episodes, success_rate, env_steps, wall, len(done), new_steps)


def _remove_stale_tmp(out: Path) -> None:
    """Remove temporary siblings of `out` whose writer was killed (robo_hybrid.fileio names them .<name>.tmp-<pid>)."""
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        pid = tmp.name.rsplit(".tmp-", 1)[1].split(".")[0]
        try:
            os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (ValueError, PermissionError):
            pass  # not one of ours, or a live process of another user


def _run_chunks(task: str, cfg_dict: dict, seed: int, todo: list[int], action_noise: float, pdir: Path,
                workers: int, progress: bool, initial: int, episodes: int) -> int:
    """Collect the episodes `todo` (in-process, or in `workers` spawned processes); returns the env steps taken."""
    from tqdm import tqdm  # noqa: PLC0415

    chunk = max(1, min(10, len(todo) // max(1, workers * 4)))
    chunks = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
    bar = tqdm(total=episodes, initial=initial, desc=f"collect {task}", unit="ep", disable=not progress)
    steps = 0
    try:
        if workers <= 1:
            for c in chunks:
                done = _collect_chunk(task, cfg_dict, seed, c, action_noise, str(pdir))
                steps += sum(n for _, n in done)
                bar.update(len(done))
            return steps
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_collect_chunk, task, cfg_dict, seed, c, action_noise, str(pdir)) for c in chunks]
            try:
                for f in as_completed(futures):
                    done = f.result()
                    steps += sum(n for _, n in done)
                    bar.update(len(done))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # what the running workers finish stays on disk
                raise
        return steps
    finally:
        bar.close()


def _assemble(out: Path, pdir: Path, episodes: int, spec: IOSpec, cfg_dict: dict, task: str) -> tuple[float, int]:
    """Copy episodes 0..episodes-1 from `pdir` into one demo file, atomically; returns (success rate, env steps)."""
    import h5py  # noqa: PLC0415

    successes, total = 0, 0
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        for i in range(episodes):
            with h5py.File(_episode_path(pdir, i), "r") as src:
                src.copy(src["demo"], data, name=f"demo_{i}")  # datasets copied as stored (compression kept)
                successes += _int_attr(src["demo"], "success")
                total += _int_attr(src["demo"], "num_samples")
        _write_file_attrs(data, spec, cfg_dict, task, total)
    return successes / episodes, total


# ----------------------------------------------------------------------------------------------- writing
def _write_demo_group(g, ep: Episode) -> None:
    """One episode's arrays and attributes into an HDF5 group (robomimic's demo layout)."""
    for k, v in ep.obs.items():
        kw = {"compression": "lzf", "chunks": (1, *v.shape[1:])} if v.dtype == np.uint8 else {}
        g.create_dataset(f"obs/{k}", data=v, **kw)
    g.create_dataset("actions", data=ep.actions)
    g.create_dataset("rewards", data=ep.rewards)
    g.create_dataset("dones", data=ep.dones)
    g.create_dataset("states", data=ep.states)
    g.attrs.update(num_samples=len(ep), seed=ep.seed, success=bool(ep.success))


def _write_file_attrs(data, spec: IOSpec, env_config: dict, task: str, total: int) -> None:
    """The `data` group's attributes; `complete` is written last, so a file without it never reads as complete."""
    data.attrs["io_spec"] = spec.to_json()
    data.attrs["env_config"] = json.dumps(env_config, sort_keys=True)
    data.attrs["env_args"] = json.dumps({"env_name": spec.task_id, "env_kwargs": env_config})
    data.attrs["task"] = task
    data.attrs["total"] = int(total)
    data.attrs["format_version"] = FORMAT_VERSION
    data.attrs["complete"] = True


def write_demos(path: str | os.PathLike, demos: Demos) -> None:
    """Write a demo file atomically (robo_hybrid.fileio): readers see the old file or the complete new one."""
    import h5py  # noqa: PLC0415

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        for i, ep in enumerate(demos.episodes):
            _write_demo_group(data.create_group(f"demo_{i}"), ep)
        _write_file_attrs(data, demos.spec, demos.env_config, demos.task, sum(map(len, demos.episodes)))


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
