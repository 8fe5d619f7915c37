"""envs/demos.py: round trip, atomic writes, clear errors on damaged or mismatched files, resumable collection."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from robo_hybrid.envs import EnvConfig, make_env
from robo_hybrid.envs.demos import DemoFileError, collect, load_demos, partial_dir

SMALL = EnvConfig(image_size=16)  # rendering on: the images are compared too


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
    assert not list(tmp_path.rglob(".*")), "a hidden temporary file was left behind"


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


def _assert_same_demos(a, b):
    """Same episodes, arrays and file attributes (the content of two demo files)."""
    da, db = load_demos(a), load_demos(b)
    assert da.seeds == db.seeds and [e.success for e in da.episodes] == [e.success for e in db.episodes]
    for ea, eb in zip(da.episodes, db.episodes, strict=True):
        assert set(ea.obs) == set(eb.obs)
        for k in ea.obs:
            np.testing.assert_array_equal(ea.obs[k], eb.obs[k], err_msg=k)
        for name in ("actions", "rewards", "dones", "states"):
            np.testing.assert_array_equal(getattr(ea, name), getattr(eb, name), err_msg=name)
    with h5py.File(a) as fa, h5py.File(b) as fb:
        assert dict(fa["data"].attrs) == dict(fb["data"].attrs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted collection of 4 Reach episodes (2 worker processes) to compare resumed ones with."""
    path = tmp_path_factory.mktemp("ref") / "reach.hdf5"
    report = collect("reach", SMALL, episodes=4, out=path, seed=3, workers=2, progress=False)
    assert report.episodes == 4 and report.resumed == 0 and report.steps_per_s > 0
    assert not partial_dir(path).exists()
    return path


def test_interrupted_collect_resumes_to_the_same_file(reference, tmp_path, monkeypatch, capsys):
    import robo_hybrid.envs.demos as demos_mod

    out = tmp_path / "reach.hdf5"
    real, calls = demos_mod.rollout_expert, []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # what Ctrl-C does mid-collection
        return real(*args, **kwargs)

    monkeypatch.setattr(demos_mod, "rollout_expert", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        collect("reach", SMALL, episodes=4, out=out, seed=3, progress=False)
    monkeypatch.undo()
    assert not out.exists() and len(list(partial_dir(out).glob("episode_*.hdf5"))) == 2
    assert not list(tmp_path.rglob(".*")), "a hidden temporary file was left behind"
    report = collect("reach", SMALL, episodes=4, out=out, seed=3, progress=False)
    assert f"resuming {out}: 2 of 4 episodes on disk" in capsys.readouterr().out
    assert report.resumed == 2 and report.episodes == 4 and 0 < report.new_env_steps < report.env_steps
    assert not partial_dir(out).exists()
    _assert_same_demos(out, reference)


def test_killed_collect_keeps_its_episodes_and_resumes(reference, tmp_path, capsys):
    """kill -9 in the middle of the third episode: two episodes survive, no temporary file, the rerun finishes."""
    out = tmp_path / "reach.hdf5"
    script = textwrap.dedent(f"""
        import os, signal
        import robo_hybrid.envs.demos as d
        from robo_hybrid.envs import EnvConfig
        real, calls = d.rollout_expert, []
        def killed_on_third(*a, **k):
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*a, **k)
        d.rollout_expert = killed_on_third
        d.collect("reach", EnvConfig(image_size=16), 4, {str(out)!r}, seed=3, progress=False)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert res.returncode == -9, res.stderr[-2000:]
    assert not out.exists() and len(list(partial_dir(out).glob("episode_*.hdf5"))) == 2
    assert not list(tmp_path.rglob(".*")), "a hidden temporary file was left behind"
    stale = tmp_path / ".reach.hdf5.tmp-999999999"  # what a writer killed while assembling the file leaves
    stale.write_bytes(b"half a file")
    collect("reach", SMALL, episodes=4, out=out, seed=3, progress=False)
    assert "2 of 4 episodes on disk" in capsys.readouterr().out
    assert not stale.exists()
    _assert_same_demos(out, reference)


def test_partial_file_of_another_collection_is_refused(tmp_path, monkeypatch):
    import robo_hybrid.envs.demos as demos_mod

    out = tmp_path / "reach.hdf5"
    cfg = EnvConfig(image_size=16, render=False)

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(demos_mod, "rollout_expert", crash)
    with pytest.raises(RuntimeError):
        collect("reach", cfg, episodes=2, out=out, seed=3, progress=False)
    monkeypatch.undo()
    pdir = partial_dir(out)
    assert pdir.is_dir()
    for kwargs, what in [({"seed": 4}, "seed"), ({"action_noise": 0.2}, "action_noise"),
                         ({"env_cfg": EnvConfig(image_size=32, render=False)}, "env_config")]:
        args = {"task": "reach", "env_cfg": cfg, "episodes": 2, "out": out, "seed": 3, **kwargs}
        with pytest.raises(DemoFileError, match=what) as err:
            collect(**args, progress=False)
        msg = str(err.value)
        assert "\n" not in msg and str(pdir) in msg and f"rm -r {pdir}" in msg
    with pytest.raises(DemoFileError, match="task"):
        collect("push", cfg, 2, out, seed=3, progress=False)
    report = collect("reach", cfg, 2, out, seed=3, progress=False)  # the same collection continues
    assert report.episodes == 2 and out.exists() and not pdir.exists()
