"""`robo-hybrid export checkpoint=... out=policy.onnx [export.int8=true]`: ONNX with a parity check (+ int8)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from robo_hybrid.config import Config, load_config

from .common import load_checkpoint


def parity_observations(cfg: Config, policy, n: int = 64) -> dict:
    """Recorded observations for the parity check: from the demo file when it matches, else expert rollouts."""
    from robo_hybrid.envs import make_env, make_expert, task_name  # noqa: PLC0415
    from robo_hybrid.envs.demos import Demos, load_demos, rollout_expert  # noqa: PLC0415
    from robo_hybrid.export import recorded_obs  # noqa: PLC0415

    keys, k = policy.spec.policy_keys, policy.cfg.history
    if Path(cfg.data).exists():
        demos = load_demos(cfg.data)
        if not demos.spec.mismatches(policy.spec):
            return recorded_obs(demos, keys, n, k)
    env = make_env(task_name(policy.spec.task_id), image_size=policy.image_size)
    try:
        eps = [rollout_expert(env, make_expert(env), seed) for seed in range(2)]
    finally:
        env.close()
    return recorded_obs(Demos(policy.spec, {}, "", eps), keys, n, k)


def export(cfg: Config, policy, out: Path) -> dict:
    """Export + parity (+ int8); returns a dict of what was written and measured."""
    from robo_hybrid.export import export_onnx, ort_latency_ms, ort_session, quantize_int8  # noqa: PLC0415

    obs = parity_observations(cfg, policy)
    rep = export_onnx(policy, out, parity_obs=obs, train_config=asdict(cfg))
    print(f"[export] {rep.path}: inputs {rep.inputs} -> {rep.outputs}, opset {rep.opset}, "
          f"{rep.size_bytes / 1e3:.0f} kB; parity max |torch - onnxruntime| = {rep.parity_max_abs_diff:.2e} "
          f"on {rep.parity_samples} recorded obs")
    result = asdict(rep)
    if cfg.export.int8:
        q = quantize_int8(out, out.with_name(out.stem + ".int8.onnx"))
        a = np.asarray(ort_session(out).run(None, obs)[0])
        b = np.asarray(ort_session(q).run(None, obs)[0])
        one = {k: v[:1] for k, v in obs.items()}
        fp32, int8 = ort_latency_ms(out, one), ort_latency_ms(q, one)
        result["int8"] = {"path": q, "max_abs_diff_vs_fp32": float(np.max(np.abs(a - b))),
                          "p50_ms_fp32": fp32[0], "p50_ms_int8": int8[0], "speedup_p50": fp32[0] / int8[0]}
        print(f"[export] int8 {q}: max |fp32 - int8| = {result['int8']['max_abs_diff_vs_fp32']:.3f}, "
              f"p50 {fp32[0]:.3f} -> {int8[0]:.3f} ms ({fp32[0] / int8[0]:.2f}x)")
    return result


def main(args: list[str]) -> int:
    """Export cfg.checkpoint to cfg.out (default policy.onnx)."""
    cfg = load_config(args)
    policy, _ = load_checkpoint(cfg, args)  # a residual PPO run: base + residual, exported as one graph
    export(cfg, policy, Path(cfg.out or "policy.onnx"))
    return 0
