"""OnnxPolicy: loads an exported policy, checks it against its own I/O spec, and runs it batch-1 on one CPU thread.

Contract of the file (written by the exporter): inputs named as `spec.policy_keys` with a dynamic batch dim;
output "action" float32 (B, A) in the env's action units, optional "action_chunk" float32 (B, H, A);
metadata_props "io_spec" (IOSpec.to_json()), "model_hash", "config_hash", "action_chunk_horizon".
A policy with observation history K > 1 takes every key as (B, K, ...) (newest last) plus "history_mask"
(B, K) bool (True = a real step); OnnxPolicy then keeps the last K observations itself (`reset` per episode).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import onnxruntime as ort

from robo_hybrid.constants import HISTORY_MASK_KEY
from robo_hybrid.spec import IOSpec, SpecMismatchError

from .onnx_file import ProtobufError, check_external_data, sniff_kind

_ORT_TYPES = {"tensor(uint8)": "uint8", "tensor(float)": "float32", "tensor(double)": "float64"}


class ModelLoadError(RuntimeError):
    """The model file cannot be used; the message names the problem and the fix."""


@dataclass
class PolicyOutput:
    """One inference: the action (A,) and, when the model predicts one, the chunk (H, A)."""

    action: np.ndarray
    chunk: np.ndarray | None = None


class Policy(Protocol):
    """What the controller loop needs from a policy (OnnxPolicy, or a fake in tests)."""

    spec: IOSpec

    def infer(self, obs: dict[str, np.ndarray]) -> PolicyOutput:
        """Run once on unbatched raw observations."""
        ...


class CallablePolicy:
    """Wrap a plain function obs -> action (A,) as a Policy (fakes in tests, scripted controllers)."""

    def __init__(self, spec: IOSpec, fn: Callable[[dict[str, np.ndarray]], np.ndarray]) -> None:
        self.spec = spec
        self._fn = fn

    def infer(self, obs: dict[str, np.ndarray]) -> PolicyOutput:
        """Call the wrapped function."""
        return PolicyOutput(np.asarray(self._fn(obs), dtype=np.float32))

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.infer(obs).action


def session_options(intra_op_threads: int = 1) -> ort.SessionOptions:
    """onnxruntime options for a control loop: one thread each, no spinning, sequential, full graph opts."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = intra_op_threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # spinning threads burn a core while waiting; on a shared 2-core robot computer that steals from the loop
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def _read_model_bytes(path: str) -> bytes:
    if not os.path.exists(path):
        raise ModelLoadError(f"model file not found: {path!r}. Fix: pass the path of the exported policy.onnx")
    if not os.path.isfile(path):
        raise ModelLoadError(f"model path {path!r} is not a file. Fix: pass the .onnx file itself")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise ModelLoadError(f"model file {path!r} is empty. Fix: re-export the policy")
    kind = sniff_kind(data[:16])
    if kind is not None:
        raise ModelLoadError(
            f"{path!r} is {kind}, not an ONNX model; deploy never unpickles checkpoints. "
            "Fix: export the checkpoint to ONNX (robo-hybrid export) and pass the .onnx file"
        )
    return data


def _check_file(path: str, data: bytes) -> None:
    try:
        problems = check_external_data(path, data)
    except ProtobufError as e:
        raise ModelLoadError(f"{path!r} is not a valid ONNX file ({e}). Fix: re-export the policy") from e
    if problems:
        raise ModelLoadError(
            f"refusing {path!r}: external data must live next to the model:\n  - "
            + "\n  - ".join(problems)
            + "\nFix: re-export with the weights inside the .onnx file or in a file beside it"
        )


def _spec_from_metadata(path: str, meta: dict[str, str]) -> IOSpec:
    if "io_spec" not in meta:
        raise ModelLoadError(
            f"{path!r} has no 'io_spec' metadata (found keys {sorted(meta)}); the controller cannot check it "
            "against the robot. Fix: export with robo-hybrid's exporter, which writes the I/O spec"
        )
    try:
        return IOSpec.from_json(meta["io_spec"])
    except SpecMismatchError as e:
        raise ModelLoadError(f"{path!r}: malformed 'io_spec' metadata: {e}. Fix: re-export the policy") from e


class OnnxPolicy:
    """An exported policy on onnxruntime (CPU, 1 intra-op + 1 inter-op thread, spinning off), batch 1."""

    def __init__(self, path: str, providers: list[str] | None = None, warmup_iters: int = 5) -> None:
        self.path = str(path)
        data = _read_model_bytes(self.path)
        _check_file(self.path, data)
        try:
            # load from the path (not the bytes) so onnxruntime resolves external data beside the model
            self.session = ort.InferenceSession(
                self.path, sess_options=session_options(), providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own pybind exception types
            raise ModelLoadError(
                f"onnxruntime {ort.__version__} cannot load {self.path!r}: {e}. Fix: if it names an operator, "
                "re-export with an opset this onnxruntime supports (or upgrade onnxruntime); otherwise re-export"
            ) from e
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.spec = _spec_from_metadata(self.path, meta)
        self.model_hash = meta.get("model_hash", "")
        self.config_hash = meta.get("config_hash", "")
        try:
            self.chunk_horizon = int(meta.get("action_chunk_horizon", "0") or 0)
        except ValueError as e:
            raise ModelLoadError(f"{self.path!r}: action_chunk_horizon metadata is not an int: {e}") from e
        self.history = 1
        self._check_graph_io()
        self._hist: dict[str, np.ndarray] = {}
        self.reset()
        try:
            self.warmup_s = self._warmup(warmup_iters)
        except Exception as e:  # a graph that cannot run on zeros of the declared shapes is unusable
            raise ModelLoadError(f"{self.path!r}: warm-up inference failed: {e}. Fix: re-export the policy") from e
        self.reset()

    def _history_len(self, inputs: dict) -> int:
        """K from the graph's history_mask input (1 when there is none)."""
        node = inputs.get(HISTORY_MASK_KEY)
        if node is None:
            return 1
        if node.type != "tensor(bool)" or len(node.shape) != 2 or not isinstance(node.shape[1], int):
            raise ModelLoadError(f"{self.path!r}: '{HISTORY_MASK_KEY}' must be bool (B, K) with a fixed K, got "
                                 f"{node.type} {node.shape}. Fix: re-export")  # fmt: skip
        return int(node.shape[1])

    def _check_graph_io(self) -> None:
        """The graph's inputs/outputs must be exactly what the spec promises."""
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.history = self._history_len(inputs)
        want = self.spec.policy_keys + ((HISTORY_MASK_KEY,) if self.history > 1 else ())
        if set(inputs) != set(want):
            raise ModelLoadError(
                f"{self.path!r}: graph inputs {sorted(inputs)} != io_spec policy keys {sorted(want)}. Fix: re-export"
            )
        lead = (self.history,) if self.history > 1 else ()
        for key in self.spec.policy_keys:
            t, node = self.spec.obs(key), inputs[key]
            if _ORT_TYPES.get(node.type) != t.dtype:
                raise ModelLoadError(f"{self.path!r}: input '{key}' is {node.type}, io_spec says {t.dtype}")
            dims = tuple(d if isinstance(d, int) else -1 for d in node.shape[1:])
            full = lead + t.shape
            if len(dims) != len(full) or any(d not in (-1, s) for d, s in zip(dims, full, strict=False)):
                raise ModelLoadError(f"{self.path!r}: input '{key}' has shape {node.shape}, io_spec says {full}")
        outs = {o.name: o for o in self.session.get_outputs()}
        if "action" not in outs:
            raise ModelLoadError(f"{self.path!r}: no 'action' output (outputs {sorted(outs)}). Fix: re-export")
        node, n_act = outs["action"], self.spec.action.shape[0]
        last = node.shape[-1] if node.shape else None
        if node.type != "tensor(float)" or len(node.shape) != 2 or (isinstance(last, int) and last != n_act):
            raise ModelLoadError(
                f"{self.path!r}: output 'action' is {node.type} {node.shape}, expected float (B, {n_act}). "
                "Fix: re-export"
            )
        self._out_names = ["action"] + (["action_chunk"] if "action_chunk" in outs and self.chunk_horizon else [])
        self._feed_keys = want

    def _warmup(self, iters: int) -> float:
        """Run zeros through the graph so the first control cycle pays no allocation / first-run cost."""
        feeds = {t.name: np.zeros(t.shape, dtype=t.dtype) for t in self.spec.observations}
        t0 = time.perf_counter()
        for _ in range(max(iters, 0)):
            self.infer(feeds)
        return time.perf_counter() - t0

    def check_obs(self, obs: dict[str, np.ndarray]) -> None:
        """Raise SpecMismatchError on a missing key or a wrong shape / dtype (batch-1 or unbatched)."""
        for t in self.spec.observations:
            if t.name not in obs:
                raise SpecMismatchError(f"observation '{t.name}' missing (got keys {sorted(obs)})")
            arr = obs[t.name]
            if not isinstance(arr, np.ndarray):
                raise SpecMismatchError(f"'{t.name}': expected a numpy array, got {type(arr).__name__}")
            shape = arr.shape[1:] if arr.ndim == len(t.shape) + 1 and arr.shape[0] == 1 else arr.shape
            if shape != t.shape:
                raise SpecMismatchError(f"'{t.name}': expected shape {t.shape} (or (1, ...)), got {arr.shape}")
            if arr.dtype != np.dtype(t.dtype):
                raise SpecMismatchError(f"'{t.name}': expected dtype {t.dtype}, got {arr.dtype}")

    def reset(self) -> None:
        """Forget the observation history (call at every episode start; a no-op without history)."""
        if self.history > 1:
            K = self.history
            self._hist = {t.name: np.zeros((1, K, *t.shape), dtype=t.dtype) for t in self.spec.observations}
            self._hist[HISTORY_MASK_KEY] = np.zeros((1, K), dtype=bool)

    def _feeds(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Batch-1 feeds: a view of the current observation, or the history buffers with it appended (newest last)."""
        if self.history == 1:
            return {t.name: obs[t.name].reshape((1, *t.shape)) for t in self.spec.observations}
        for name, buf in self._hist.items():
            buf[:, :-1] = buf[:, 1:]  # (1, K, ...): shift one step into the past
            buf[0, -1] = True if name == HISTORY_MASK_KEY else obs[name].reshape(buf.shape[2:])
        return self._hist

    def infer(self, obs: dict[str, np.ndarray]) -> PolicyOutput:
        """Validate, then run batch-1; returns the action (A,) and the chunk (H, A) when the model has one."""
        self.check_obs(obs)
        feeds = self._feeds(obs)
        outs = self.session.run(self._out_names, feeds)
        action = np.asarray(outs[0], dtype=np.float32).reshape(-1)
        if action.shape != self.spec.action.shape:
            raise SpecMismatchError(f"output 'action' has {action.size} values, spec says {self.spec.action.shape}")
        chunk = np.asarray(outs[1], dtype=np.float32)[0] if len(outs) > 1 else None
        return PolicyOutput(action, chunk)

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The action (A,) for one unbatched observation dict."""
        return self.infer(obs).action

    def describe(self) -> str:
        """One line for logs: path, task, hashes, rate."""
        return (
            f"{os.path.basename(self.path)} task={self.spec.task_id} rate={self.spec.control_rate_hz:g}Hz "
            f"inputs={list(self.spec.policy_keys)} chunk={self.chunk_horizon} model_hash={self.model_hash or '-'} "
            f"config_hash={self.config_hash or '-'}"
        )
