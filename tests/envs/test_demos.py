"""Demo files: round trip, atomic writes, clear errors on damaged or mismatched files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from robo_hybrid.envs import EnvConfig, make_env
from robo_hybrid.envs.demos import DemoFileError, collect, load_demos


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("demos") / "push.hdf5"
    report = collect("push", EnvConfig(image_size=32), episodes=3, out=path, seed=5, workers=1, progress=False)
    assert report.episodes == 3 and report.env_steps > 0
    return path


def test_round_trip(demo_file):
    demos = load_demos(demo_file)
    assert demos.task == "push" and demos.seeds == [5, 6, 7]
    assert demos.success_rate == 1.0
    spec = make_env("push", image_size=32, render=False).unwrapped.io_spec
    assert demos.spec == spec
    ep = demos.episodes[0]
    t = len(ep)
    assert ep.obs["image"].shape == (t, 32, 32, 3) and ep.obs["image"].dtype == np.uint8
    assert ep.actions.shape == (t, 4) and ep.dones[-1] and not ep.dones[:-1].any()
    with h5py.File(demo_file) as f:  # robomimic layout
        assert {"obs", "actions", "rewards", "dones", "states"} <= set(f["data/demo_0"])
        assert f["data"].attrs["total"] == sum(len(e) for e in demos.episodes)


def test_replaying_recorded_actions_reproduces_the_episode(demo_file):
    ep = load_demos(demo_file).episodes[1]
    env = make_env("push", image_size=32, render=False)
    obs, _ = env.reset(seed=ep.seed)
    np.testing.assert_allclose(obs["proprio"], ep.obs["proprio"][0], atol=1e-6)
    for a in ep.actions:
        obs, _, term, trunc, info = env.step(a)
    assert info["is_success"] == ep.success


def test_truncated_file_is_a_clear_error(demo_file, tmp_path):
    bad = tmp_path / "truncated.hdf5"
    bad.write_bytes(demo_file.read_bytes()[: demo_file.stat().st_size // 3])
    with pytest.raises(DemoFileError, match="truncated or corrupt|damaged"):
        load_demos(bad)


def test_garbage_and_missing_files(tmp_path):
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"not hdf5 at all" * 100)
    with pytest.raises(DemoFileError, match="not a readable HDF5"):
        load_demos(junk)
    with pytest.raises(DemoFileError, match="does not exist"):
        load_demos(tmp_path / "nope.hdf5")


def test_incomplete_file_never_reads_as_complete(demo_file, tmp_path):
    partial = tmp_path / "partial.hdf5"
    partial.write_bytes(demo_file.read_bytes())
    with h5py.File(partial, "a") as f:
        del f["data"].attrs["complete"]
    with pytest.raises(DemoFileError, match="incomplete"):
        load_demos(partial)


def test_wrong_spec_is_a_clear_error(demo_file):
    other = make_env("push", image_size=48, render=False).unwrapped.io_spec
    with pytest.raises(DemoFileError, match="image"):
        load_demos(demo_file, expect_spec=other)


def test_wrong_array_shape_is_a_clear_error(demo_file, tmp_path):
    bad = tmp_path / "shape.hdf5"
    bad.write_bytes(demo_file.read_bytes())
    with h5py.File(bad, "a") as f:
        del f["data/demo_0/obs/proprio"]
        f["data/demo_0/obs/proprio"] = np.zeros((3, 5), np.float32)
    with pytest.raises(DemoFileError, match="proprio"):
        load_demos(bad)


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    import robo_hybrid.envs.demos as demos_mod

    out = tmp_path / "crash.hdf5"

    def boom(*a, **k):
        raise RuntimeError("simulated crash mid-write")

    monkeypatch.setattr(demos_mod.Episode, "__len__", boom)
    with pytest.raises(RuntimeError):
        collect("reach", EnvConfig(image_size=16, render=False), episodes=1, out=out, progress=False)
    assert not out.exists()
    assert not list(tmp_path.glob(".crash.hdf5.tmp-*"))


def test_dart_noise_perturbs_states_but_records_expert_labels():
    from robo_hybrid.envs import make_expert
    from robo_hybrid.envs.demos import rollout_expert

    env = make_env("push", render=False)
    expert = make_expert(env)
    clean = rollout_expert(env, expert, seed=3)
    noisy = rollout_expert(env, expert, seed=3, action_noise=0.3)
    assert not np.allclose(clean.obs["proprio"][5], noisy.obs["proprio"][5])
    # labels are the expert's own actions at the visited states, not the noisy executed ones
    env.reset(seed=3)
    expert.reset()
    first = expert.act(noisy.obs, env)
    np.testing.assert_allclose(noisy.actions[0], first)
    with pytest.raises(ValueError, match="action_noise"):
        collect("push", EnvConfig(render=False), 1, "/tmp/never.hdf5", action_noise=2.0, progress=False)
