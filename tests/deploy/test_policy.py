"""OnnxPolicy: the file contract (metadata round trip, refusals with clear messages) and input validation."""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import onnx
import pytest
from deploy_testlib import build_history_onnx
from onnx import TensorProto, helper

from robo_hybrid.deploy.mock import mock_io_spec
from robo_hybrid.deploy.policy import ModelLoadError, OnnxPolicy
from robo_hybrid.spec import IOSpec, SpecMismatchError


def _obs(spec: IOSpec) -> dict[str, np.ndarray]:
    out = {t.name: np.zeros(t.shape, dtype=t.dtype) for t in spec.observations}
    out["proprio"][list(spec.proprio_layout).index("ee.x_m")] = 0.5
    out["goal"][:] = (0.51, 0.0, 0.2)
    return out


def test_metadata_round_trip(model_path, spec100):
    pol = OnnxPolicy(model_path)
    assert pol.spec == spec100
    assert pol.spec.to_json() == spec100.to_json()
    assert pol.spec.hash() == spec100.hash()
    assert (pol.model_hash, pol.config_hash, pol.chunk_horizon) == ("m123", "c456", 0)


def test_action_values_and_batch1(model_path, spec100):
    pol = OnnxPolicy(model_path)
    obs = _obs(spec100)
    a = pol(obs)
    assert a.shape == (4,) and a.dtype == np.float32
    # P controller: clip((goal - ee) / 0.05): x = 0.01/0.05 = 0.2, y = 0, z = 0.2/0.05 -> clipped to 1, gripper 1
    np.testing.assert_allclose(a, [0.2, 0.0, 1.0, 1.0], atol=1e-5)
    batched = {k: v[None] for k, v in obs.items()}  # an explicit batch of one is accepted too
    np.testing.assert_allclose(pol(batched), a)


def test_action_chunk(make_model, spec100):
    pol = OnnxPolicy(make_model(spec100, chunk_horizon=4))
    out = pol.infer(_obs(spec100))
    assert pol.chunk_horizon == 4 and out.chunk is not None and out.chunk.shape == (4, 4)
    np.testing.assert_allclose(out.chunk[2], out.action * 0.25, atol=1e-6)


def test_session_is_single_threaded_without_spinning(model_path):
    so = OnnxPolicy(model_path).session.get_session_options()
    assert so.intra_op_num_threads == 1 and so.inter_op_num_threads == 1
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.get_session_config_entry("session.inter_op.allow_spinning") == "0"


class _SpySession:
    """Stands in for the onnxruntime session: records whether run() was reached."""

    def __init__(self, real):
        self.real, self.calls = real, 0

    def run(self, *a, **k):
        self.calls += 1
        return self.real.run(*a, **k)


@pytest.mark.parametrize(
    "key,bad",
    [
        ("image", np.zeros((64, 64, 3), np.uint8)),  # wrong shape
        ("image", np.zeros((32, 32, 3), np.float32)),  # wrong dtype
        ("proprio", np.zeros(18, np.float64)),  # wrong dtype
        ("goal", np.zeros((2, 3), np.float32)),  # batch of 2
        ("goal", [0.0, 0.0, 0.0]),  # not an array
    ],
)
def test_wrong_input_rejected_before_onnxruntime(model_path, spec100, key, bad):
    pol = OnnxPolicy(model_path)
    spy = _SpySession(pol.session)
    pol.session = spy  # type: ignore[assignment]
    obs = _obs(spec100)
    obs[key] = bad
    with pytest.raises(SpecMismatchError, match=key):
        pol(obs)
    assert spy.calls == 0
    del obs[key]
    with pytest.raises(SpecMismatchError, match="missing"):
        pol(obs)
    assert spy.calls == 0


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        OnnxPolicy(str(tmp_path / "nope.onnx"))


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "empty"),
        (b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01garbage", "not a valid ONNX|cannot load"),
        (b"\x08\x07", "cannot load"),  # valid protobuf (ir_version=7) but no graph: onnxruntime refuses
        (json.dumps({"a": 1}).encode(), "text file"),
        (pickle.dumps({"state_dict": [1, 2, 3]}), "pickle"),
    ],
)
def test_corrupt_or_not_onnx(tmp_path, content, match):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    with pytest.raises(ModelLoadError, match=match):
        OnnxPolicy(str(p))


def test_torch_zip_checkpoint_refused(tmp_path):
    p = tmp_path / "policy.pt"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": 1}))
    with pytest.raises(ModelLoadError, match="unpickl"):
        OnnxPolicy(str(p))


def test_truncated_model_refused(model_path):
    data = open(model_path, "rb").read()
    with open(model_path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"not a valid ONNX|cannot load"):
        OnnxPolicy(model_path)


def test_missing_io_spec(make_model, spec100):
    with pytest.raises(ModelLoadError, match="no 'io_spec' metadata"):
        OnnxPolicy(make_model(spec100, drop_metadata=("io_spec",)))


@pytest.mark.parametrize("bad", ["{not json", json.dumps({"version": 1, "task_id": "x"}), json.dumps({"version": 99})])
def test_malformed_io_spec(make_model, spec100, bad):
    with pytest.raises(ModelLoadError, match="malformed 'io_spec'"):
        OnnxPolicy(make_model(spec100, metadata={"io_spec": bad}))


def test_io_spec_disagrees_with_graph(make_model, spec100):
    wrist = mock_io_spec(image_size=32, control_rate_hz=100.0, wrist_camera=True)
    path = make_model(spec100, metadata={"io_spec": wrist.to_json()})  # graph has no image_wrist input
    with pytest.raises(ModelLoadError, match="graph inputs"):
        OnnxPolicy(path)
    big = mock_io_spec(image_size=84, control_rate_hz=100.0)
    with pytest.raises(ModelLoadError, match="shape"):
        OnnxPolicy(make_model(spec100, name="b.onnx", metadata={"io_spec": big.to_json()}))


def _tiny_model(nodes, opsets, inits=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 3])
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y], list(inits)), opset_imports=opsets)
    m.ir_version = 9
    return m


def test_unknown_operator(tmp_path):
    m = _tiny_model([helper.make_node("FooBar", ["x"], ["y"], domain="com.evil")],
                    [helper.make_opsetid("", 17), helper.make_opsetid("com.evil", 1)])  # fmt: skip
    onnx.save(m, str(tmp_path / "unk.onnx"))
    with pytest.raises(ModelLoadError, match="FooBar"):
        OnnxPolicy(str(tmp_path / "unk.onnx"))


def _external_model(tmp_path, spec: IOSpec, location: str):
    from onnx import numpy_helper

    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    w = numpy_helper.from_array(np.ones((3, 3), np.float32), "W")
    m = _tiny_model([helper.make_node("MatMul", ["x", "W"], ["y"])], [helper.make_opsetid("", 17)], [w])
    m.metadata_props.append(onnx.StringStringEntryProto(key="io_spec", value=spec.to_json()))
    onnx.save(m, str(folder / "policy.onnx"), save_as_external_data=True, location="w.bin", size_threshold=0)
    if location != "w.bin":
        m2 = onnx.load(str(folder / "policy.onnx"), load_external_data=False)
        for e in m2.graph.initializer[0].external_data:
            if e.key == "location":
                e.value = location
        (tmp_path / "outside.bin").write_bytes((folder / "w.bin").read_bytes())
        onnx.save(m2, str(folder / "policy.onnx"))
    return str(folder / "policy.onnx")


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd"])
def test_external_data_outside_folder_refused(tmp_path, spec100, location):
    with pytest.raises(ModelLoadError, match="outside the model's folder"):
        OnnxPolicy(_external_model(tmp_path, spec100, location))


def test_external_data_inside_folder_passes_the_file_check(tmp_path, spec100):
    # the file check accepts data beside the model; the graph then fails the spec check (inputs x != keys)
    with pytest.raises(ModelLoadError, match="graph inputs"):
        OnnxPolicy(_external_model(tmp_path, spec100, "w.bin"))


def test_history_policy_keeps_the_last_k_observations(tmp_path, spec100):
    pol = OnnxPolicy(build_history_onnx(str(tmp_path / "hist.onnx"), spec100, history=3))
    assert pol.history == 3
    obs = _obs(spec100)
    outs = []
    for n in range(1, 5):
        obs["proprio"][0] = n
        outs.append(pol(obs))
    # a0 = 0.1 * real steps (capped at K); a1 = proprio[0] of the oldest slot (0 = padding until K steps)
    np.testing.assert_allclose([o[0] for o in outs], [0.1, 0.2, 0.3, 0.3], atol=1e-6)
    np.testing.assert_allclose([o[1] for o in outs], [0.0, 0.0, 1.0, 2.0], atol=1e-6)
    pol.reset()
    assert pol(obs)[0] == pytest.approx(0.1)
