"""Checkpoints: round trips, resume after a crash equals an uninterrupted run, and clear refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robo_hybrid.commands.train import train_bc
from robo_hybrid.config import BCConfig, compose_config
from robo_hybrid.envs.demos import write_demos
from robo_hybrid.policy import MultimodalPolicy, PolicyConfig
from robo_hybrid.spec import SpecMismatchError
from robo_hybrid.training.bc import make_optimizer
from robo_hybrid.training.checkpoint import (
    CheckpointError,
    find_checkpoint,
    load_optimizer,
    load_policy,
    optimizer_to_bytes,
    save_checkpoint,
    save_policy,
)
from robo_hybrid.training.data import DemoDataset, make_synthetic_demos

torch.set_num_threads(1)


def _policy(chunk: int = 0):
    torch.manual_seed(0)
    demos = make_synthetic_demos(n_episodes=2, steps=6, image_size=32)
    cfg = PolicyConfig(d_model=32, n_layers=1, n_heads=2, conv_channels=[8, 16], chunk_size=chunk, history=2)
    policy = MultimodalPolicy(cfg, demos.spec)
    ds = DemoDataset(demos.episodes, demos.spec.policy_keys, history=2, chunk_size=chunk)
    policy.fit_normalizers(ds.stats())
    return policy.eval(), demos, ds


def test_policy_file_round_trip(tmp_path):
    policy, demos, ds = _policy(chunk=3)
    batch = ds.get_batch(np.arange(len(ds)))
    path = save_policy(tmp_path / "p.safetensors", policy)
    loaded, spec, cfg = load_policy(path, expect_spec=demos.spec)
    assert spec == policy.spec and loaded.cfg == policy.cfg and cfg is None and not loaded.training
    for k, v in policy.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0)
    torch.testing.assert_close(loaded.act(batch), policy.act(batch))
    torch.testing.assert_close(loaded.act_chunk(batch), policy.act_chunk(batch))


def test_optimizer_state_round_trip():
    policy, _, ds = _policy()
    opt = make_optimizer(policy, BCConfig())
    for _ in range(2):
        policy.train()
        policy(ds.get_batch(np.arange(4))).mean.pow(2).mean().backward()
        opt.step()
    fresh = make_optimizer(policy, BCConfig())
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".safetensors") as f:
        f.write(optimizer_to_bytes(opt))
        f.flush()
        load_optimizer(fresh, f.name)
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for pid, st in a["state"].items():
        for name, v in st.items():
            torch.testing.assert_close(b["state"][pid][name], v)


@pytest.fixture()
def demo_file(tmp_path):
    path = tmp_path / "push32.hdf5"
    write_demos(path, make_synthetic_demos(n_episodes=3, steps=8, image_size=32, task="push"))
    return path


def _overrides(path, run):
    # augmentation on, so that a resume that lost the RNG state would diverge
    return ["experiment=smoke", f"data={path}", f"run_dir={run}", "algo.steps=6", "algo.checkpoint_every=2",
            "policy.augment=true", "policy.dropout=0.1", "algo.val_fraction=0.34", "algo.val_every=3"]


def test_resume_after_a_crash_matches_an_uninterrupted_run(demo_file, tmp_path):
    straight = train_bc(compose_config(_overrides(demo_file, tmp_path / "a")))

    def crash_at_5(policy, step):
        if step == 5:
            raise KeyboardInterrupt("simulated kill")
        return {"success_rate": 0.0}

    crashed = _overrides(demo_file, tmp_path / "b") + ["algo.eval_every=1"]
    with pytest.raises(KeyboardInterrupt):
        train_bc(compose_config(crashed), eval_fn=crash_at_5)
    ckpts = tmp_path / "b" / "checkpoints"
    assert json.loads((ckpts / "latest.json").read_text())["step"] == 4  # lost less than one interval
    (ckpts / ".step_00000006.tmp-999").mkdir()  # a checkpoint half-written when the process died
    (ckpts / ".step_00000006.tmp-999" / "model.safetensors").write_bytes(b"\x00" * 10)
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "st')  # a log line cut short by the kill
    resumed = train_bc(compose_config([*_overrides(demo_file, tmp_path / "b"), "resume=true"]))
    assert resumed.step == straight.step == 6
    for k, v in straight.policy.state_dict().items():
        torch.testing.assert_close(resumed.policy.state_dict()[k], v, rtol=0, atol=0, msg=k)
    rows = [json.loads(r) for r in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]  # no duplicates after resume
    assert json.loads((ckpts / "best.json").read_text())["step"] == 1


def test_keep_last_prunes_old_checkpoints_but_keeps_best(tmp_path):
    policy, _, _ = _policy()
    from robo_hybrid.training.checkpoint import write_pointer

    for step in (1, 2, 3, 4):
        path = save_checkpoint(tmp_path, step, policy, keep_last=2)
        if step == 1:
            write_pointer(tmp_path, "best", 1, path.name)
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_00000001", "step_00000003", "step_00000004"]
    assert find_checkpoint(tmp_path).name == "step_00000004"
    assert find_checkpoint(tmp_path, "best").name == "step_00000001"
    assert not list(tmp_path.glob(".*tmp*"))


def test_spec_mismatch_is_a_clear_error(tmp_path):
    policy, _, _ = _policy()
    path = save_policy(tmp_path / "p.safetensors", policy)
    env_spec = make_synthetic_demos(n_episodes=1, steps=2, image_size=64, wrist_camera=True).spec
    with pytest.raises(SpecMismatchError, match=r"(?s)p\.safetensors.*'image': model expects \(32, 32, 3\)"):
        load_policy(path, expect_spec=env_spec)


def test_missing_corrupt_and_pickled_files_are_refused(tmp_path):
    policy, _, _ = _policy()
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        load_policy(tmp_path / "nothing_here")
    good = save_policy(tmp_path / "good.safetensors", policy).read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_policy(tmp_path / "cut.safetensors")
    torch.save(policy.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match="pickle"):
        load_policy(tmp_path / "weights.pt")
    (tmp_path / "renamed.safetensors").write_bytes((tmp_path / "weights.pt").read_bytes())
    with pytest.raises(CheckpointError, match="pickle"):
        load_policy(tmp_path / "renamed.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a policy file"):
        load_policy(tmp_path / "other.safetensors")


def _crafted(tmp_path, name, tensors, **config):
    """A small policy file whose metadata claims the architecture `config` (over a real tiny spec)."""
    from dataclasses import asdict

    from safetensors.torch import save

    from robo_hybrid.training.checkpoint import FORMAT

    spec = make_synthetic_demos(n_episodes=1, steps=2, image_size=32).spec
    cfg = asdict(PolicyConfig(d_model=32, n_layers=1, n_heads=2, conv_channels=[8, 16]))
    cfg.update(config)
    path = tmp_path / name
    meta = {"format": FORMAT, "io_spec": spec.to_json(), "policy_config": json.dumps(cfg)}
    path.write_bytes(save(tensors, metadata=meta))
    return path


@pytest.mark.parametrize("config, match", [
    ({"d_model": 65536, "n_heads": 8, "n_layers": 96}, "d_model=65536 is outside"),  # ~40 GB of weights
    ({"d_model": 4096, "n_heads": 8, "n_layers": 64}, r"about 1\.\d+e\+10 parameters"),
    ({"d_model": 512, "n_heads": 8, "n_layers": 8}, r"does not fit the stored weights|n_layers=8 but the file holds"),
])
def test_a_crafted_small_file_asking_for_a_huge_model_is_refused_before_building(tmp_path, monkeypatch, config, match):
    import tracemalloc

    from robo_hybrid.training import checkpoint as ckpt

    policy, _, _ = _policy()
    small = {k: v for k, v in policy.state_dict().items() if k.startswith(("encoder.", "tokenizer.readout"))}
    path = _crafted(tmp_path, "crafted.safetensors", small, **config)
    assert path.stat().st_size < 64_000

    def no_build(*a, **kw):
        raise AssertionError("the model was built")

    monkeypatch.setattr(ckpt, "MultimodalPolicy", no_build)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=match) as err:
            load_policy(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000 and "\n" not in str(err.value) and "refusing to build" in str(err.value)


def test_header_check_accepts_every_real_architecture(tmp_path):
    from robo_hybrid.training.checkpoint import check_architecture, estimate_params, read_header

    demos = make_synthetic_demos(n_episodes=1, steps=2, image_size=32, wrist_camera=True)
    for kw in ({}, {"history": 3, "chunk_size": 4}, {"image_encoder": "resnet18"}, {"coord_channels": False}):
        cfg = PolicyConfig(d_model=32, n_layers=2, n_heads=2, conv_channels=[8, 16], **kw)
        policy = MultimodalPolicy(cfg, demos.spec)
        path = save_policy(tmp_path / "p.safetensors", policy)
        shapes, _ = read_header(path)
        assert shapes == {k: tuple(v.shape) for k, v in policy.state_dict().items()}
        check_architecture(path, cfg, demos.spec, shapes)
        assert 0.8 < estimate_params(cfg, demos.spec) / policy.num_params() < 1.25, kw


def test_files_from_before_the_one_tokenizer_still_load(tmp_path):
    policy, demos, ds = _policy(chunk=3)
    legacy = {}
    for k, v in policy.state_dict().items():  # the state-dict names of the earlier layout
        k = k.replace("tokenizer.normalizers.", "obs_normalizers.").replace(".0.net.", ".net.")
        legacy[k.removeprefix("tokenizer.")] = v
    assert "readout" in legacy and "vec_tokenizers.proprio.net.0.weight" in legacy
    from dataclasses import asdict

    from safetensors.torch import save_file

    from robo_hybrid.training.checkpoint import FORMAT

    path = tmp_path / "old.safetensors"
    save_file(legacy, str(path), metadata={"format": FORMAT, "io_spec": policy.spec.to_json(),
                                           "policy_config": json.dumps(asdict(policy.cfg))})
    loaded, _, _ = load_policy(path)
    batch = ds.get_batch(np.arange(len(ds)))
    torch.testing.assert_close(loaded.act(batch), policy.act(batch), rtol=0, atol=0)
