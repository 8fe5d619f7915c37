"""ONNX export: one graph from raw sensors to actuator units, metadata, parity with torch eager."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from robo_hybrid.envs import make_env
from robo_hybrid.envs.demos import load_demos
from robo_hybrid.export import ParityError, check_parity, export_onnx, quantize_int8, recorded_obs
from robo_hybrid.policy.config import PolicyConfig
from robo_hybrid.policy.model import MultimodalPolicy
from robo_hybrid.spec import IOSpec


def _fitted_policy(spec, cfg, demos):
    torch.manual_seed(0)
    policy = MultimodalPolicy(cfg, spec)
    stats = {}
    for k in ("proprio", "goal"):
        x = np.concatenate([e.obs[k] for e in demos.episodes])
        stats[k] = (x.mean(0), x.std(0))
    a = np.concatenate([e.actions for e in demos.episodes])
    stats["action"] = (a.mean(0), a.std(0))
    policy.fit_normalizers(stats)
    return policy.eval()


@pytest.fixture(scope="module")
def exported(push_demos_32, tiny_policy_cfg, tmp_path_factory):
    demos = load_demos(push_demos_32)
    policy = _fitted_policy(demos.spec, tiny_policy_cfg, demos)
    obs = recorded_obs(demos, demos.spec.policy_keys, n=32)
    path = tmp_path_factory.mktemp("onnx") / "policy.onnx"
    report = export_onnx(policy, path, parity_obs=obs, train_config={"lr": 1e-3})
    return policy, path, obs, report


def test_parity_on_recorded_observations(exported):
    policy, path, obs, report = exported
    assert report.parity_samples == 32 and report.parity_max_abs_diff <= 1e-4
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["action"], {k: obs[k] for k in policy.spec.policy_keys})[0]
    with torch.no_grad():
        ref = policy.act({k: torch.as_tensor(v) for k, v in obs.items()}).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert got.min() >= -1 and got.max() <= 1  # clipping lives in the graph


def test_graph_takes_raw_sensors_with_dynamic_batch(exported):
    policy, path, obs, _ = exported
    model = onnx.load(str(path))
    types = {i.name: i.type.tensor_type for i in model.graph.input}
    assert list(types) == ["image", "proprio", "goal"]
    assert types["image"].elem_type == onnx.TensorProto.UINT8
    assert types["image"].shape.dim[0].dim_param  # symbolic batch
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b in (1, 5):
        out = sess.run(None, {k: v[:b] for k, v in obs.items()})[0]
        assert out.shape == (b, 4) and out.dtype == np.float32


def test_metadata_carries_the_spec(exported):
    policy, path, _, report = exported
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert IOSpec.from_json(meta["io_spec"]) == policy.spec
    assert meta["model_hash"] == report.model_hash and len(meta["config_hash"]) == 16
    assert json.loads(meta["action_meaning"]) == list(policy.spec.action_meaning)
    assert float(meta["control_rate_hz"]) == 25.0
    assert json.loads(meta["joint_names"]) == list(policy.spec.joint_names)


def test_parity_check_catches_a_different_graph(exported, tiny_policy_cfg):
    policy, path, obs, _ = exported
    other = MultimodalPolicy(tiny_policy_cfg, policy.spec).eval()  # different weights
    with pytest.raises(ParityError):
        check_parity(other.as_onnx(), path, obs)


def test_int8_keeps_metadata_and_roughly_the_actions(exported, tmp_path):
    policy, path, obs, _ = exported
    q = quantize_int8(path, tmp_path / "int8.onnx")
    meta = {p.key: p.value for p in onnx.load(q).metadata_props}
    assert IOSpec.from_json(meta["io_spec"]) == policy.spec and "quantization" in meta
    a = ort.InferenceSession(str(path)).run(None, obs)[0]
    b = ort.InferenceSession(q).run(None, obs)[0]
    assert np.max(np.abs(a - b)) < 0.2


def test_chunk_head_is_exported(push_demos_32, tmp_path):
    demos = load_demos(push_demos_32)
    cfg = PolicyConfig(d_model=32, n_layers=1, n_heads=2, conv_channels=[8, 16], chunk_size=4)
    policy = _fitted_policy(demos.spec, cfg, demos)
    report = export_onnx(policy, tmp_path / "chunk.onnx", recorded_obs(demos, demos.spec.policy_keys, 8))
    assert report.outputs == ["action", "action_chunk"]
    out = ort.InferenceSession(report.path).run(None, recorded_obs(demos, demos.spec.policy_keys, 3))
    assert out[1].shape == (3, 4, 4)


def test_env_spec_matches_export_inputs():
    spec = make_env("pickplace", render=False, wrist_camera=True).unwrapped.io_spec
    policy = MultimodalPolicy(PolicyConfig(d_model=32, n_layers=1, n_heads=2, conv_channels=[8]), spec)
    assert policy.as_onnx().input_names == ("image", "image_wrist", "proprio", "goal")
