"""`robo-hybrid bench latency`: batch-1 p50 / p99 of torch eager, onnxruntime fp32 and int8, and
stable-baselines3's exported policy on the same frame, pinned to one core, plus the full controller cycle on a
MockRobot at 100 Hz (timing by robo_hybrid.deploy.bench, the same code the robot computer runs).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from robo_hybrid.fileio import atomic_write_json

# targets for the default policy at 84 x 84 on one core
TARGET_FP32_P99_MS, TARGET_SPEEDUP, TARGET_JITTER_P99_MS = 1.5, 1.5, 0.5
RAW_ROW = "onnxruntime_fp32_session"  # our graph through a bare session.run (no input checks): graph vs graph


def _torch_eager_fn(checkpoint: str, onnx_spec, onnx_hash: str, notes: list[str]):
    """Batch-1 torch eager callable of the checkpoint: the same wrapper (raw sensors -> clipped action) as exported."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from robo_hybrid.export import state_dict_hash  # noqa: PLC0415
    from robo_hybrid.training.checkpoint import load_policy  # noqa: PLC0415

    policy = load_policy(checkpoint, expect_spec=onnx_spec)[0]
    wrapper = policy.as_onnx().eval()
    if onnx_hash and state_dict_hash(wrapper) != onnx_hash:
        notes.append(f"torch eager: {checkpoint} holds other weights than the ONNX file (model_hash differs); "
                     "same architecture, so the timing still compares")
    k = policy.cfg.history

    def feeds(obs: dict) -> list:
        if k == 1:
            return [torch.from_numpy(obs[n][None]) for n in wrapper.input_names]
        out = [torch.from_numpy(np.repeat(obs[n][None, None], k, axis=1)) for n in wrapper.input_names[:-1]]
        return [*out, torch.ones(1, k, dtype=torch.bool)]  # (1, K, ...) and the (1, K) history mask

    def fn(obs: dict) -> object:
        with torch.inference_mode():
            return wrapper(*feeds(obs))

    return fn


def _bare_session_fn(model: str, keys: tuple[str, ...]):
    """Batch-1 session.run of the file with the deploy runtime's session options, without OnnxPolicy's checks."""
    import onnxruntime as ort  # noqa: PLC0415

    from robo_hybrid.deploy.policy import session_options  # noqa: PLC0415

    sess = ort.InferenceSession(model, session_options(1), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    if set(names) != set(keys):  # a history model also takes history_mask: no bare row for it
        return None
    return lambda obs: sess.run(None, {k: obs[k][None] for k in names})


def _quiet(fn, *args):
    """Call fn with the root logger at ERROR (onnxruntime's quantizer logs a pre-processing hint as a warning)."""
    import logging  # noqa: PLC0415

    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.ERROR)
    try:
        return fn(*args)
    finally:
        root.setLevel(level)


def run_latency(model: str, checkpoint: str = "", iters: int = 1000, cycles: int = 1000, rate_hz: float = 100.0,
                cpu: int | None = None, sb3: bool = True, sb3_algo: str = "ppo", sb3_model: str = "",
                json_path: str = "", verbose: bool = True) -> dict:
    """All latency rows in one pinned run; returns the deploy bench's dict plus `ratios`, `targets` and `notes`."""
    import torch  # noqa: PLC0415  (before any MuJoCo context: the SB3 row builds the task env)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batch-1 torch eager on the one pinned core (restored at the end)
    try:
        return _run_latency(model, checkpoint, iters, cycles, rate_hz, cpu, sb3, sb3_algo, sb3_model, json_path,
                            verbose)
    finally:
        torch.set_num_threads(threads)


def _run_latency(model: str, checkpoint: str, iters: int, cycles: int, rate_hz: float, cpu: int | None, sb3: bool,
                 sb3_algo: str, sb3_model: str, json_path: str, verbose: bool) -> dict:
    from robo_hybrid.deploy.bench import bench_latency as deploy_bench  # noqa: PLC0415
    from robo_hybrid.deploy.bench import format_bench  # noqa: PLC0415
    from robo_hybrid.deploy.policy import OnnxPolicy  # noqa: PLC0415
    from robo_hybrid.export import quantize_int8  # noqa: PLC0415

    ours = OnnxPolicy(model)
    notes: list[str] = []
    extra: dict = {}
    info: dict = {}
    with tempfile.TemporaryDirectory(prefix="rh_bench_") as tmp:
        if checkpoint:
            extra["torch_eager"] = _torch_eager_fn(checkpoint, ours.spec, ours.model_hash, notes)
        else:
            notes.append("torch eager: skipped; pass checkpoint=<run dir of the exported policy> for this row")
        extra[RAW_ROW] = _bare_session_fn(model, ours.spec.policy_keys)
        try:
            extra["onnxruntime_int8"] = OnnxPolicy(_quiet(quantize_int8, model, Path(tmp) / "int8.onnx"))
        except Exception as e:  # a graph without MatMul / Gemm, an old onnxruntime...
            notes.append(f"onnxruntime int8: skipped ({type(e).__name__}: {e})")
        if sb3:
            try:
                fns, info = _sb3_rows(ours.spec, sb3_algo, sb3_model, tmp)
                extra.update(fns)
            except Exception as e:  # SB3 missing (its message says how to install), or an unusable frame size
                notes.append(f"stable-baselines3 rows: skipped ({e})")
        extra = {k: v for k, v in extra.items() if v is not None}
        res = deploy_bench(model, iters=iters, cycles=cycles, cycle_rate_hz=rate_hz, pin_cpu=cpu, extra=extra,
                           verbose=False)
    res.update(sb3=info, notes=notes, **_ratios_and_targets(res, ours.spec))
    if verbose:
        print(format_bench(res))
        print(format_latency_summary(res))
    if json_path:
        atomic_write_json(json_path, res)
        print(f"wrote {json_path}")
    return res


def _sb3_rows(spec, algo: str, sb3_model: str, tmp: str) -> tuple[dict, dict]:
    """SB3 callables on the same task and frame as the ONNX model's I/O spec."""
    from robo_hybrid.bench.sb3 import require_sb3, sb3_latency_fns  # noqa: PLC0415
    from robo_hybrid.envs import task_name  # noqa: PLC0415

    require_sb3()
    env_cfg = {"image_size": spec.obs(spec.image_keys[0]).shape[0], "wrist_camera": "image_wrist" in spec.image_keys,
               "control_rate_hz": spec.control_rate_hz}
    return sb3_latency_fns(task_name(spec.task_id), env_cfg, algo, sb3_model, tmp)


def _ratios_and_targets(r: dict, spec) -> dict:
    """Speed-ups between rows (> 1: the first named is faster) and the issue-5 targets (True / False / None)."""
    ort: dict = r["onnxruntime"]
    eager, int8, raw = (r.get(k) for k in ("torch_eager", "onnxruntime_int8", RAW_ROW))
    ratios: dict[str, float] = {}
    if eager:
        ratios["fp32_vs_eager_p50"] = eager["p50"] / ort["p50"]
        ratios["fp32_vs_eager_p99"] = eager["p99"] / ort["p99"]
    if int8:
        ratios["int8_vs_fp32_p50"] = ort["p50"] / int8["p50"]
    for name, d in r.items():  # graph vs graph: SB3's row is a bare session.run, so compare with ours bare
        if name.startswith("sb3_") and name.endswith("_onnxruntime") and isinstance(d, dict) and raw:
            ratios[f"ours_session_vs_{name}_p50"] = d["p50"] / raw["p50"]
    size = spec.obs(spec.image_keys[0]).shape[0] if spec.image_keys else 0
    targets = {"frame_px": size,
               "fp32_p99_le_1.5ms": ort["p99"] <= TARGET_FP32_P99_MS,
               "fp32_ge_1.5x_faster_than_eager": None if not eager else ratios["fp32_vs_eager_p50"] >= TARGET_SPEEDUP}
    c = r.get("cycle")
    if c:
        targets["cycle_0_deadline_misses"] = c["deadline_misses"] == 0
        targets["cycle_jitter_p99_le_0.5ms"] = c["period_jitter_ms"].get("p99", math.inf) <= TARGET_JITTER_P99_MS
    return {"ratios": ratios, "targets": targets}


def format_latency_summary(r: dict) -> str:
    """Ratios and targets under the deploy bench's table."""
    mark = {True: "PASS", False: "FAIL", None: "n/a"}
    t, lines = r["targets"], ["speed-ups (> 1: the first named is faster):"]
    names = {"fp32_vs_eager_p50": "onnxruntime fp32 vs torch eager, p50", "fp32_vs_eager_p99": "  same, p99",
             "int8_vs_fp32_p50": "onnxruntime int8 vs fp32, p50"}
    for k, v in r["ratios"].items():
        peer = k.removeprefix("ours_session_vs_").removesuffix("_p50")
        label = names.get(k) or f"ours vs {peer} (both bare runs), p50"
        lines.append(f"  {label:<58}{v:>6.2f}x")
    rows = [(f"onnxruntime fp32 p99 <= {TARGET_FP32_P99_MS} ms", t["fp32_p99_le_1.5ms"], ""),
            (f"onnxruntime fp32 >= {TARGET_SPEEDUP}x faster than torch eager", t["fp32_ge_1.5x_faster_than_eager"], "")]
    if "cycle_0_deadline_misses" in t:
        rows += [("controller cycle: 0 deadline misses", t["cycle_0_deadline_misses"], "  (MockRobot)"),
                 (f"controller cycle: period jitter p99 <= {TARGET_JITTER_P99_MS} ms", t["cycle_jitter_p99_le_0.5ms"],
                  "  (MockRobot)")]
    lines.append(f"targets (issue 5: default policy at 84x84 on one core; this frame: {t['frame_px']} px):")
    lines += [f"  {label:<58}{mark[ok]:>7}{note}" for label, ok, note in rows]
    lines += [f"note: {n}" for n in r.get("notes", [])]
    return "\n".join(lines)
