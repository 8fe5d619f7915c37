"""as_onnx(): raw sensors -> clipped actions (+ chunk), history mask as an input, parity with onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from policy_testlib import random_obs, tiny_cfg

from robo_hybrid.policy import HISTORY_MASK_KEY, MultimodalPolicy


@pytest.mark.parametrize("encoder", ["conv", "patch"])
def test_as_onnx_with_history_chunk_and_wrist_camera(spec32_wrist, tmp_path, encoder):
    policy = MultimodalPolicy(tiny_cfg(history=2, chunk_size=3, image_encoder=encoder), spec32_wrist)
    policy.action_normalizer.set_stats(np.full(4, 0.2), np.full(4, 3.0))  # wide std: outputs hit the clip
    policy.train()  # the wrapper must still run in eval mode (no augmentation in the graph)
    wrapper = policy.as_onnx()
    assert wrapper.input_names == ("image", "image_wrist", "proprio", "goal", HISTORY_MASK_KEY)
    assert wrapper.output_names == ("action", "action_chunk")
    path = tmp_path / "p.onnx"
    names = list(wrapper.input_names) + list(wrapper.output_names)
    torch.onnx.export(wrapper, wrapper.example_inputs(2), str(path), input_names=list(wrapper.input_names),
                      output_names=list(wrapper.output_names), dynamic_axes={n: {0: "batch"} for n in names},
                      dynamo=False)
    obs = random_obs(spec32_wrist, 3, history=2, seed=1)
    obs[HISTORY_MASK_KEY] = torch.tensor([[True, True], [False, True], [True, True]])
    feeds = {n: obs[n].numpy() for n in wrapper.input_names}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    action, chunk = sess.run(None, feeds)
    ref_action, ref_chunk = wrapper(*[obs[n] for n in wrapper.input_names])
    np.testing.assert_allclose(action, ref_action.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(chunk, ref_chunk.detach().numpy(), atol=1e-5)
    assert action.shape == (3, 4) and chunk.shape == (3, 3, 4)
    assert np.abs(action).max() <= 1.0 and np.abs(chunk).max() <= 1.0
    policy.eval()
    np.testing.assert_allclose(action, policy.act(obs).numpy(), atol=1e-5)


def test_ignored_proprio_elements_change_nothing_in_torch_or_onnx(spec32, tmp_path):
    """policy.ignore_proprio: joint velocities hidden from the policy, in training mode and in the exported graph."""
    policy = MultimodalPolicy(tiny_cfg(ignore_proprio=["vel_rad_s"]), spec32)
    policy.tokenizer.normalizers["proprio"].set_stats(np.full(18, 0.1), np.full(18, 0.5))
    vel = [i for i, name in enumerate(spec32.proprio_layout) if name.endswith(".vel_rad_s")]
    assert len(vel) == 7
    obs = random_obs(spec32, 3, seed=2)
    moved = {k: v.clone() for k, v in obs.items()}
    moved["proprio"][:, vel] += 3.0  # a different velocity: nothing else changes
    torch.manual_seed(0)
    policy.train()
    ref = policy(obs).mean
    torch.manual_seed(0)
    np.testing.assert_allclose(policy(moved).mean.detach().numpy(), ref.detach().numpy(), atol=1e-6)
    other = {k: v.clone() for k, v in obs.items()}
    other["proprio"][:, 14:17] += 0.3  # the tcp position is still read
    policy.eval()
    assert (policy.act(other) - policy.act(obs)).abs().max() > 1e-4
    wrapper = policy.as_onnx()
    path = tmp_path / "p.onnx"
    torch.onnx.export(wrapper, wrapper.example_inputs(1), str(path), input_names=list(wrapper.input_names),
                      output_names=list(wrapper.output_names),
                      dynamic_axes={n: {0: "batch"} for n in [*wrapper.input_names, *wrapper.output_names]},
                      dynamo=False)  # fmt: skip
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    a, b = (sess.run(None, {n: o[n].numpy() for n in wrapper.input_names})[0] for o in (obs, moved))
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a, policy.act(obs).numpy(), atol=1e-5)


def test_ignore_proprio_names_an_element_that_does_not_exist(spec32):
    with pytest.raises(ValueError, match="ends no proprio element"):
        MultimodalPolicy(tiny_cfg(ignore_proprio=["torque_nm"]), spec32)
    for bad in ("vel_rad_s", [""]):  # a bare string, an empty suffix (it would hide everything)
        with pytest.raises(ValueError, match="non-empty name suffixes"):
            tiny_cfg(ignore_proprio=bad)
