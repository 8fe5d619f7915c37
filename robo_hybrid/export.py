"""Export a policy to one ONNX graph (raw sensors in, actuator units out) with the I/O spec in its metadata."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robo_hybrid.constants import HISTORY_MASK_KEY
from robo_hybrid.fileio import atomic_path
from robo_hybrid.policy.model import MultimodalPolicy

OPSET = 17
PARITY_ATOL = 1e-4


class ParityError(RuntimeError):
    """onnxruntime and torch eager disagree on the same observations."""


@dataclass
class ExportReport:
    """What export produced and how well the graph matches torch."""

    path: str
    opset: int
    inputs: list[str]
    outputs: list[str]
    model_hash: str
    parity_max_abs_diff: float
    parity_samples: int
    size_bytes: int


def state_dict_hash(module: torch.nn.Module) -> str:
    """SHA-256 over parameter and buffer names and bytes: identifies the weights, not the file."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def config_hash(cfg: dict | None) -> str:
    """SHA-256 of the canonical JSON of the training config."""
    return hashlib.sha256(json.dumps(cfg or {}, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _metadata(policy: MultimodalPolicy, model_hash: str, cfg_hash: str, outputs: list[str]) -> dict[str, str]:
    spec = policy.spec
    return {
        "io_spec": spec.to_json(),
        "model_hash": model_hash,
        "config_hash": cfg_hash,
        "action_chunk_horizon": str(policy.cfg.chunk_size if "action_chunk" in outputs else 0),
        "control_rate_hz": str(spec.control_rate_hz),
        "action_meaning": json.dumps(list(spec.action_meaning)),
        "action_bounds": json.dumps([spec.action.low, spec.action.high]),
        "joint_names": json.dumps(list(spec.joint_names)),
        "inputs": json.dumps({t.name: [list(t.shape), t.dtype, t.units] for t in spec.observations}),
        "outputs": json.dumps(outputs),
        "producer": "robo-hybrid export",
    }


def export_onnx(
    policy: MultimodalPolicy,
    out: str | os.PathLike,
    parity_obs: dict[str, np.ndarray] | None = None,
    train_config: dict | None = None,
    opset: int = OPSET,
) -> ExportReport:
    """Trace policy.as_onnx() to `out` (atomically), check it fully, and check parity on `parity_obs` (batched)."""
    import onnx  # noqa: PLC0415

    wrapper = policy.as_onnx().eval()
    inputs = wrapper.example_inputs(batch=2)
    in_names, out_names = list(wrapper.input_names), list(wrapper.output_names)
    out = Path(out)
    with atomic_path(out, suffix=".onnx") as tmp:
        with torch.no_grad():
            torch.onnx.export(
                wrapper, inputs, str(tmp), input_names=in_names, output_names=out_names, opset_version=opset,
                dynamic_axes={n: {0: "batch"} for n in in_names + out_names}, dynamo=False, do_constant_folding=True,
            )
        model = onnx.load(str(tmp))
        model_hash = state_dict_hash(wrapper)
        for k, v in _metadata(policy, model_hash, config_hash(train_config), out_names).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(tmp))
    if parity_obs is None:
        parity_obs = {n: t.numpy() for n, t in zip(in_names, inputs, strict=True)}
    diff = check_parity(wrapper, out, parity_obs)
    return ExportReport(str(out), opset, in_names, out_names, model_hash, diff, _batch(parity_obs), out.stat().st_size)


def _batch(obs: dict[str, np.ndarray]) -> int:
    return len(next(iter(obs.values())))


def ort_session(path: str | os.PathLike):
    """onnxruntime CPU session with 1 intra-op and 1 inter-op thread."""
    import onnxruntime as ort  # noqa: PLC0415

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def check_parity(wrapper: torch.nn.Module, onnx_path: str | os.PathLike, obs: dict[str, np.ndarray],
                 atol: float = PARITY_ATOL) -> float:
    """Max |torch eager - onnxruntime| over every output on batched observations; ParityError above atol."""
    names = list(wrapper.input_names)  # type: ignore[attr-defined]
    feeds = {n: obs[n] if n in obs else np.ones((_batch(obs), wrapper.policy.cfg.history), bool)  # type: ignore
             for n in names}
    with torch.no_grad():
        ref = wrapper(*[torch.as_tensor(feeds[n]) for n in names])
    ref = ref if isinstance(ref, tuple) else (ref,)
    got = ort_session(onnx_path).run(None, feeds)
    diff = max(float(np.max(np.abs(r.numpy() - g))) for r, g in zip(ref, got, strict=True))
    if not diff <= atol:
        raise ParityError(f"onnxruntime differs from torch by {diff:.2e} > {atol:.0e} on {_batch(obs)} observations")
    return diff


def quantize_int8(fp32_path: str | os.PathLike, out: str | os.PathLike) -> str:
    """Dynamic int8 quantization of the MatMul / Gemm weights (onnxruntime.quantization); returns the path."""
    import onnx  # noqa: PLC0415
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

    with atomic_path(out, suffix=".onnx") as tmp:
        quantize_dynamic(str(fp32_path), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
        src, dst = onnx.load(str(fp32_path)), onnx.load(str(tmp))
        del dst.metadata_props[:]
        for p in src.metadata_props:
            e = dst.metadata_props.add()
            e.key, e.value = p.key, p.value
        e = dst.metadata_props.add()
        e.key, e.value = "quantization", "dynamic int8 (MatMul, Gemm)"
        onnx.save(dst, str(tmp))
    return str(out)


def ort_latency_ms(path: str | os.PathLike, feeds: dict[str, np.ndarray], iters: int = 300) -> tuple[float, float]:
    """Batch-1 onnxruntime latency (p50, p99) in ms on one thread."""
    sess = ort_session(path)
    for _ in range(20):
        sess.run(None, feeds)
    t = []
    for _ in range(iters):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        t.append(time.perf_counter() - t0)
    return float(np.percentile(t, 50) * 1e3), float(np.percentile(t, 99) * 1e3)


def recorded_obs(demos, keys: tuple[str, ...], n: int = 64, history: int = 1) -> dict[str, np.ndarray]:
    """Up to n observations from a demo file (batched), for parity checks on real sensor values."""
    rng = np.random.default_rng(0)
    obs = {k: np.concatenate([ep.obs[k] for ep in demos.episodes]) for k in keys if k != HISTORY_MASK_KEY}
    total = len(next(iter(obs.values())))
    idx = rng.choice(total, size=min(n, total), replace=False)
    out = {k: v[idx] for k, v in obs.items()}
    if history > 1:  # repeat the frame K times: parity does not need real histories
        out = {k: np.repeat(v[:, None], history, axis=1) for k, v in out.items()}
    return out
