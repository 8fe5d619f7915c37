"""Helpers for the deploy tests: tiny ONNX policies built with onnx.helper and a command-safety checker."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from robo_hybrid.deploy.mock import MockRobot
from robo_hybrid.deploy.safety import SafetyConfig
from robo_hybrid.spec import IOSpec

_ONNX_TYPES = {"uint8": TensorProto.UINT8, "float32": TensorProto.FLOAT}


def build_policy_onnx(
    path: str,
    spec: IOSpec,
    chunk_horizon: int = 0,
    add_nan: bool = False,
    metadata: dict | None = None,
    drop_metadata: tuple[str, ...] = (),
    gain: float | None = None,
) -> str:
    """A proportional reach controller as an ONNX graph: action = clip(gain * (goal - ee), -1, 1) ++ [1.0].

    Uses every input (the image through a zero-weighted mean) so the graph has the spec's exact inputs.
    """
    layout = list(spec.proprio_layout)
    ee0 = layout.index("ee.x_m")
    gain = gain if gain is not None else 1.0 / spec.max_ee_delta_m
    inits = [
        numpy_helper.from_array(np.array([ee0], np.int64), "ee_start"),
        numpy_helper.from_array(np.array([ee0 + 3], np.int64), "ee_end"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array(gain, np.float32), "gain"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(-1.0, np.float32), "minus_one"),
    ]
    nodes = [
        helper.make_node("Slice", ["proprio", "ee_start", "ee_end", "axis1"], ["ee"]),
        helper.make_node("Sub", ["goal", "ee"], ["err"]),
        helper.make_node("Mul", ["err", "gain"], ["err_scaled"]),
        helper.make_node("Clip", ["err_scaled", "minus_one", "one"], ["xyz_raw"]),
    ]
    last_zero = "zero_b"
    nodes.append(helper.make_node("ReduceMean", ["goal"], ["goal_mean"], axes=[1], keepdims=1))
    nodes.append(helper.make_node("Mul", ["goal_mean", "zero"], [last_zero]))  # (B, 1) zeros
    for k in spec.image_keys:
        nodes += [
            helper.make_node("Cast", [k], [f"{k}_f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", [f"{k}_f"], [f"{k}_m"], axes=[1, 2, 3], keepdims=0),
            helper.make_node("Unsqueeze", [f"{k}_m", "axis1"], [f"{k}_m1"]),
            helper.make_node("Mul", [f"{k}_m1", "zero"], [f"{k}_z"]),
            helper.make_node("Add", [last_zero, f"{k}_z"], [f"{k}_acc"]),
        ]
        last_zero = f"{k}_acc"
    nodes += [
        helper.make_node("Add", ["xyz_raw", last_zero], ["xyz"]),
        helper.make_node("Add", [last_zero, "one"], ["grip"]),
        helper.make_node("Concat", ["xyz", "grip"], ["action_pre"], axis=1),
    ]
    if add_nan:
        inits.append(numpy_helper.from_array(np.array(np.nan, np.float32), "nan"))
        nodes.append(helper.make_node("Add", ["action_pre", "nan"], ["action"]))
    else:
        nodes.append(helper.make_node("Identity", ["action_pre"], ["action"]))
    outputs = [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["B", 4])]
    if chunk_horizon:
        # chunk[i] = action * 0.5**i, so each chunk entry is distinguishable
        w = (0.5 ** np.arange(chunk_horizon, dtype=np.float32)).reshape(1, chunk_horizon, 1)
        inits.append(numpy_helper.from_array(w, "chunk_w"))
        nodes += [
            helper.make_node("Unsqueeze", ["action", "axis1"], ["action_1"]),
            helper.make_node("Mul", ["action_1", "chunk_w"], ["action_chunk"]),
        ]
        outputs.append(helper.make_tensor_value_info("action_chunk", TensorProto.FLOAT, ["B", chunk_horizon, 4]))
    inputs = [helper.make_tensor_value_info(t.name, _ONNX_TYPES[t.dtype], ["B", *t.shape]) for t in spec.observations]
    graph = helper.make_graph(nodes, "p_reach", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    meta = {"io_spec": spec.to_json(), "model_hash": "m123", "config_hash": "c456",
            "action_chunk_horizon": str(chunk_horizon), **(metadata or {})}  # fmt: skip
    for k, v in meta.items():
        if k not in drop_metadata:
            model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def assert_commands_safe(
    robot: MockRobot,
    max_step: float | None = SafetyConfig.max_action_step,
    max_jerk: float | None = SafetyConfig.max_action_jerk,
    tol: float = 1e-5,
) -> None:
    """Every command the mock received: finite, in bounds, ee target inside the allowed box, rate-limited.

    Holds and episode resets restart the limiter from rest. `max_step` / `max_jerk` None skips that check.
    """
    spec = robot.io_spec
    lo, hi = np.asarray(spec.workspace_low_m), np.asarray(spec.workspace_high_m)
    v_prev, dv_prev = np.zeros(3), np.zeros(3)
    for i, c in enumerate(robot.commands):
        a = c.action
        if i in robot.reset_at:  # new episode: the arm was re-placed, the limiter starts from rest
            v_prev, dv_prev = np.zeros(3), np.zeros(3)
        assert a.shape == (4,) and np.isfinite(a).all(), f"command {i} not finite: {a}"
        assert np.all(np.abs(a) <= 1.0 + tol), f"command {i} out of bounds: {a}"
        target = c.ee_before_m + a[:3] * spec.max_ee_delta_m
        allowed_lo, allowed_hi = np.minimum(lo, c.ee_before_m), np.maximum(hi, c.ee_before_m)
        assert np.all(target >= allowed_lo - tol) and np.all(target <= allowed_hi + tol), (
            f"command {i} ({c.kind}) moves the ee to {target}, outside the allowed box"
        )
        if c.kind != "action":
            assert np.all(a[:3] == 0.0), f"{c.kind} command {i} is not zero motion: {a}"
            v_prev, dv_prev = np.zeros(3), np.zeros(3)
            continue
        dv = a[:3] - v_prev
        if max_step is not None:
            assert np.all(np.abs(dv) <= max_step + tol), f"command {i}: step {dv} over the rate limit"
        if max_jerk is not None:
            assert np.all(np.abs(dv - dv_prev) <= max_jerk + tol), f"command {i}: jerk {dv - dv_prev} over limit"
        v_prev, dv_prev = a[:3].astype(np.float64), dv


def build_history_onnx(path: str, spec: IOSpec, history: int) -> str:
    """A history-K graph (inputs (B, K, ...) + history_mask (B, K) bool, as robo_hybrid's exporter writes them).

    action = [0.1 * number of real steps, proprio[oldest step, 0], 0, 1].
    """
    inputs = [helper.make_tensor_value_info(t.name, _ONNX_TYPES[t.dtype], ["B", history, *t.shape])
              for t in spec.observations]  # fmt: skip
    inputs.append(helper.make_tensor_value_info("history_mask", TensorProto.BOOL, ["B", history]))
    inits = [
        numpy_helper.from_array(np.array([0, 0], np.int64), "s0"),
        numpy_helper.from_array(np.array([1, 1], np.int64), "s1"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "ax12"),
        numpy_helper.from_array(np.array([-1, 1], np.int64), "shape_b1"),
        numpy_helper.from_array(np.array(0.1, np.float32), "tenth"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
    ]
    nodes = [
        helper.make_node("Cast", ["history_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["mask_f", "s1"], ["n_valid"], keepdims=1),  # (B, 1)
        helper.make_node("Mul", ["n_valid", "tenth"], ["a0"]),
        helper.make_node("Slice", ["proprio", "s0", "s1", "ax12"], ["p_old"]),  # (B, 1, 1)
        helper.make_node("Reshape", ["p_old", "shape_b1"], ["a1"]),
        helper.make_node("Mul", ["a0", "zero"], ["a2"]),
        helper.make_node("Add", ["a2", "one"], ["a3"]),
        helper.make_node("Concat", ["a0", "a1", "a2", "a3"], ["action"], axis=1),
    ]
    outputs = [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["B", 4])]
    model = helper.make_model(helper.make_graph(nodes, "hist", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])  # fmt: skip
    model.ir_version = 9
    for k, v in {"io_spec": spec.to_json(), "model_hash": "h", "config_hash": "c", "action_chunk_horizon": "0"}.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path
