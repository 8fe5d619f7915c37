"""`robo-hybrid bench latency|learn`: benchmarks that print figures (measurements, not tests).

latency: batch-1 p50 / p99 of torch eager, onnxruntime fp32 and int8, and stable-baselines3's exported policy on
         the same frame, pinned to one core, plus the full controller cycle on a MockRobot at 100 Hz
         (timing by robo_hybrid.deploy.bench, the same code the robot computer runs).
learn:   our BC, our BC + PPO, SB3 PPO and SB3 SAC on the same task, seeds, wall-clock budget and cores, one after
         another; held-out success (seeds eval.seed_base + i, deterministic actions) at wall-clock checkpoints,
         evaluation time outside the budget; a table (time to 50% / 90%, final success), a PNG and a JSON.

Arguments are `key=value`: the bench's own keys (listed in LATENCY_KEYS / LEARN_KEYS) and Hydra overrides of the
root config (model=, checkpoint=, task=, policy=, seed=, workers=, eval.episodes=, out=...).
"""

from __future__ import annotations

import ast
import contextlib
import copy
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

LATENCY_KEYS = ("iters", "cycles", "rate_hz", "cpu", "json", "sb3", "sb3_algo", "sb3_model")
LEARN_KEYS = ("budget_s", "seeds", "systems", "eval_every_s", "bc_fraction", "sb3_reward", "sb3_vec", "cores",
              "torch_threads", "json", "plot")
LEARN_PREFIXES = ("bc.", "ppo.", "sb3_ppo.", "sb3_sac.")
SYSTEMS = ("bc", "bc_ppo", "sb3_ppo", "sb3_sac")
THRESHOLDS = (0.5, 0.9)
# issue 5 targets for the default policy at 84 x 84 on one core
TARGET_FP32_P99_MS, TARGET_SPEEDUP, TARGET_JITTER_P99_MS = 1.5, 1.5, 0.5
RAW_ROW = "onnxruntime_fp32_session"  # our graph through a bare session.run (no input checks): graph vs graph


def split_args(args: list[str], keys: tuple[str, ...], prefixes: tuple[str, ...] = ()) -> tuple[dict[str, str], list]:
    """(the bench's own key=value options, the rest: Hydra overrides for load_config)."""
    own, rest = {}, []
    for a in args:
        key, eq, value = a.partition("=")
        if eq and (key in keys or key.startswith(prefixes)):
            own[key] = value
        else:
            rest.append(a)
    return own, rest


def _literal(value: str) -> Any:
    """'3e-4' -> 3e-4, '[64, 64]' -> [64, 64], 'auto' -> 'auto' (values of sb3_ppo.* / sb3_sac.* overrides)."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


# ================================================================================================ latency
def bench_latency(args: list[str]) -> int:
    """`robo-hybrid bench latency model=policy.onnx [checkpoint=<run dir>] [iters=1000] [cycles=1000] [json=f]`."""
    from robo_hybrid.cli import load_config  # noqa: PLC0415

    own, rest = split_args(args, LATENCY_KEYS)
    cfg = load_config(rest)
    if not cfg.model:
        raise ValueError("model=<policy.onnx> is required (make one with `robo-hybrid export checkpoint=...`)")
    run_latency(cfg.model, checkpoint=cfg.checkpoint, iters=int(own.get("iters", 1000)),
                cycles=int(own.get("cycles", 1000)), rate_hz=float(own.get("rate_hz", 100.0)),
                cpu=int(own["cpu"]) if "cpu" in own else None, sb3=_bool(own.get("sb3", "true")),
                sb3_algo=own.get("sb3_algo", "ppo"), sb3_model=own.get("sb3_model", ""), json_path=own.get("json", ""))
    return 0


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
        from robo_hybrid.evaluate import write_json_atomic  # noqa: PLC0415

        write_json_atomic(json_path, res)
        print(f"wrote {json_path}")
    return res


def _sb3_rows(spec, algo: str, sb3_model: str, tmp: str) -> tuple[dict, dict]:
    """SB3 callables on the same task and frame as the ONNX model's I/O spec."""
    from robo_hybrid.envs import task_name  # noqa: PLC0415
    from robo_hybrid.sb3_bench import require_sb3, sb3_latency_fns  # noqa: PLC0415

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


# ================================================================================================ learn: clocks
class WallClock:
    """Training time of one system against its budget; time spent inside `paused()` (evaluation) does not count."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = float(budget_s)
        self._t0: float | None = None
        self._paused_s, self._pause_t0, self._depth = 0.0, 0.0, 0

    def start(self) -> None:
        """Start (or restart) the clock at 0."""
        self._t0, self._paused_s, self._depth = time.perf_counter(), 0.0, 0

    def elapsed(self) -> float:
        """Seconds of counted time since start()."""
        if self._t0 is None:
            return 0.0
        now = self._pause_t0 if self._depth else time.perf_counter()
        return now - self._t0 - self._paused_s

    def expired(self) -> bool:
        """The budget is spent."""
        return self.elapsed() >= self.budget_s

    @contextlib.contextmanager
    def paused(self):
        """Stop counting inside the block (re-entrant)."""
        if self._depth == 0:
            self._pause_t0 = time.perf_counter()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._paused_s += time.perf_counter() - self._pause_t0


class HeldOutEval:
    """Deterministic episodes on seeds seed_base + i in a vector env kept for the whole bench (one for all systems)."""

    def __init__(self, task: str, env_cfg, episodes: int, seed_base: int, workers: int) -> None:
        from robo_hybrid.rl.rollout import make_vector_env  # noqa: PLC0415

        self.seeds = [seed_base + i for i in range(episodes)]
        n = max(1, min(workers, episodes))
        self.envs = make_vector_env(task, env_cfg, n, "async" if workers > 1 else "sync", "forkserver",
                                    autoreset="disabled")

    def __call__(self, act, history: int, keys: tuple[str, ...]) -> dict[str, float]:
        """Success rate (95% Wilson interval), mean return and length of `act` (batched obs -> actions)."""
        from robo_hybrid.evaluate import wilson_interval  # noqa: PLC0415
        from robo_hybrid.rl.evaluate import run_episodes  # noqa: PLC0415

        recs = run_episodes(self.envs, act, self.seeds, history, tuple(keys))
        wins = sum(r.success for r in recs)
        lo, hi = wilson_interval(wins, len(recs))
        n = len(recs)
        return {"success_rate": wins / n, "ci95_low": lo, "ci95_high": hi, "episodes": n,
                "mean_return": sum(r.ret for r in recs) / n, "mean_length": sum(r.length for r in recs) / n}

    def close(self) -> None:
        """Stop the worker processes."""
        self.envs.close()


class Checkpoints:
    """Held-out evaluations of one system every `every_s` of its training time, with its clock paused."""

    def __init__(self, clock: WallClock, evaluator, every_s: float, label: str) -> None:
        self.clock, self.evaluator, self.every_s, self.label = clock, evaluator, float(every_s), label
        self.points: list[dict] = []
        self._next_s, self._last_t = self.every_s, -1.0

    def due(self) -> bool:
        """A checkpoint time has been passed since the last evaluation."""
        return self.clock.elapsed() >= self._next_s

    def needs_final(self) -> bool:
        """No evaluation at the end of the budget yet (the loops train until the budget is spent, so an evaluation
        at or after the budget is the final one)."""
        return self._last_t < min(self.clock.budget_s, self.clock.elapsed())

    def evaluate(self, act, history: int = 1, keys: tuple[str, ...] = (), phase: str = "") -> dict[str, float]:
        """Evaluate now (clock paused), record and print the point; returns the metrics."""
        import torch  # noqa: PLC0415

        with self.clock.paused():
            t, t0, threads = self.clock.elapsed(), time.perf_counter(), torch.get_num_threads()
            torch.set_num_threads(1)  # batch-`workers` inference: extra threads only contend with the env workers
            try:
                m = self.evaluator(act, history, keys)
            finally:
                torch.set_num_threads(threads)
            self._last_t = t
            point = {"t_s": round(t, 2), **m, "eval_s": round(time.perf_counter() - t0, 2), "phase": phase}
            self.points.append(point)
            self._next_s = (math.floor(t / self.every_s) + 1) * self.every_s
            print(f"[bench learn] {self.label:<14} t={t:7.0f} s  success {m['success_rate']:6.1%} "
                  f"[{m['ci95_low']:.0%}, {m['ci95_high']:.0%}] n={m['episodes']}  {phase}  "
                  f"(eval {point['eval_s']:.0f} s, not counted)", flush=True)
        return {k: m[k] for k in ("success_rate", "mean_return", "mean_length")}

    def evaluate_policy(self, policy, phase: str = "") -> dict[str, float]:
        """Evaluate one of our MultimodalPolicy objects."""
        from robo_hybrid.rl.evaluate import policy_act_fn  # noqa: PLC0415

        return self.evaluate(policy_act_fn(policy), policy.cfg.history, tuple(policy.spec.policy_keys), phase)

    def finish(self, act, history: int = 1, keys: tuple[str, ...] = (), phase: str = "") -> None:
        """The evaluation at the end of the budget (skipped when nothing was trained since the last one)."""
        if self.needs_final():
            self.evaluate(act, history, keys, phase)


# ================================================================================================ learn: summary
def time_to(points: list[dict], threshold: float) -> float | None:
    """Training time of the first checkpoint with success >= threshold (None: not reached)."""
    for p in sorted(points, key=lambda p: p["t_s"]):
        if p["success_rate"] >= threshold - 1e-9:
            return float(p["t_s"])
    return None


def summarize(curves: dict[str, dict[int, list[dict]]]) -> list[dict]:
    """One row per system: time to each threshold (mean over seeds, None unless every seed got there), final success."""
    rows = []
    for system, by_seed in curves.items():
        runs = [pts for pts in by_seed.values() if pts]
        if not runs:
            continue
        row: dict[str, Any] = {"system": system, "seeds": len(runs)}
        for th in THRESHOLDS:
            ts = [time_to(pts, th) for pts in runs]
            got = [t for t in ts if t is not None]
            key = f"time_to_{round(th * 100)}_s"
            row[key] = sum(got) / len(got) if len(got) == len(ts) else None
            row[f"{key}_per_seed"], row[f"reached_{round(th * 100)}"] = ts, len(got)
        finals = [pts[-1]["success_rate"] for pts in runs]
        row["final_success"], row["final_success_per_seed"] = sum(finals) / len(finals), finals
        rows.append(row)
    return rows


def winners(rows: list[dict]) -> dict[str, str | None]:
    """Best system per column (fastest time to X, highest final success); ties joined by '='; None when nobody."""
    out: dict[str, str | None] = {}
    for th in THRESHOLDS:
        key = f"time_to_{round(th * 100)}_s"
        times = [r[key] for r in rows if r[key] is not None]
        out[key] = "=".join(r["system"] for r in rows if r[key] is not None and r[key] == min(times)) if times else None
    best = max((r["final_success"] for r in rows), default=0.0)
    out["final_success"] = "=".join(r["system"] for r in rows if r["final_success"] == best) if best > 0 else None
    return out


def format_learn_table(rows: list[dict], budget_s: float) -> str:
    """The README table: time to 50% / 90% success and the final success at the budget."""

    def cell(row: dict, th: float) -> str:
        pct = round(th * 100)
        t = row[f"time_to_{pct}_s"]
        if t is not None:
            return f"{t:.0f} s"
        k = row[f"reached_{pct}"]
        return "not reached" + (f" ({k}/{row['seeds']} seeds)" if k else "")

    lines = [f"{'system':<10}{'time to 50%':>24}{'time to 90%':>24}{f'success at {budget_s:.0f} s':>22}"]
    for r in rows:
        lines.append(f"{r['system']:<10}{cell(r, 0.5):>24}{cell(r, 0.9):>24}{r['final_success']:>22.1%}")
    w = winners(rows)
    lines.append("best: " + ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} -> {v or 'nobody'}"
                                      for k, v in w.items()))
    return "\n".join(lines)


def format_curves(curves: dict[str, dict[int, list[dict]]]) -> str:
    """Success vs training wall-clock, one line per system and seed."""
    lines = ["success vs training wall-clock (evaluation time excluded):"]
    for system, by_seed in curves.items():
        for seed, pts in by_seed.items():
            cells = "  ".join(f"{p['t_s']:.0f}s:{p['success_rate']:.0%}" for p in pts)
            lines.append(f"  {system:<8} s{seed}  {cells}")
    return "\n".join(lines)


def plot_curves(curves: dict[str, dict[int, list[dict]]], path: str | Path, title: str) -> None:
    """One PNG: success vs training wall-clock, one line (colour) per system, one line style per seed."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = ["-", "--", ":", "-."]
    last = max((p["t_s"] for by_seed in curves.values() for pts in by_seed.values() for p in pts), default=0.0)
    unit, scale = ("min", 60.0) if last >= 600 else ("s", 1.0)
    for i, (system, by_seed) in enumerate(curves.items()):
        for j, pts in enumerate(by_seed.values()):
            if pts:
                ax.plot([p["t_s"] / scale for p in pts], [p["success_rate"] for p in pts], styles[j % 4], marker="o",
                        ms=3, color=f"C{i}", label=system if j == 0 else None)
    for th in THRESHOLDS:
        ax.axhline(th, color="grey", lw=0.6, ls=":")
    ax.set(xlabel=f"training wall-clock [{unit}] (evaluation excluded)", ylabel="held-out success rate",
           ylim=(-0.03, 1.03), title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_name(f".{Path(path).name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


# ================================================================================================ learn: our systems
def _bc_phase(ctx: dict, seed: int, tracker: Checkpoints, phase_end_s: float, run_dir: Path, phase: str):
    """Collect demos and run BC until `phase_end_s` of training time; the cosine schedule ends at the phase end."""
    from robo_hybrid.envs.demos import collect  # noqa: PLC0415
    from robo_hybrid.training.bc import BCTrainer  # noqa: PLC0415
    from robo_hybrid.training.data import load_demo_file  # noqa: PLC0415

    cfg, clock = copy.deepcopy(ctx["cfg"]), tracker.clock
    cfg.seed, cfg.run_dir, cfg.algo.progress_bar = seed, str(run_dir / "bc"), False
    demo_path = run_dir / "demos.hdf5"
    rep = collect(cfg.task.name, cfg.task.env, cfg.episodes, demo_path, seed=seed * cfg.episodes,
                  workers=cfg.workers, progress=False, action_noise=cfg.task.demo_action_noise)
    info = {"demos": rep.episodes, "demos_s": round(clock.elapsed(), 1)}
    print(f"[bench learn] {tracker.label:<14} t={clock.elapsed():7.0f} s  {rep.episodes} demos collected "
          f"(expert success {rep.success_rate:.0%})", flush=True)
    demos = load_demo_file(demo_path, only_success=cfg.algo.only_successful)
    if not demos.episodes:
        raise ValueError(f"none of the {rep.episodes} expert demos of {cfg.task.name} succeeded (task.env."
                         "episode_steps too short?); BC needs successful demos (or pass bc.only_successful=false)")
    trainer = BCTrainer(cfg, eval_fn=lambda policy, step: tracker.evaluate_policy(policy, phase), demos=demos)
    bc, t0, step0 = trainer.bc, clock.elapsed(), trainer.step
    bc.steps = 10**9  # schedule horizon, set from the measured step time below
    while clock.elapsed() < phase_end_s:
        metrics = trainer.train_step()
        n = trainer.step - step0
        if n == 20 or n % 250 == 0:  # re-estimate the steps left in the phase (the machine is shared)
            per_step_s = (clock.elapsed() - t0) / n
            bc.steps = trainer.step + max(0, int((phase_end_s - clock.elapsed()) / per_step_s))
        if n % bc.log_every == 0 and trainer.log is not None:
            trainer.log.add("train", trainer.step, metrics)
        if tracker.due():
            with clock.paused():
                trainer.evaluate()  # the eval hook above: tracker.evaluate_policy (also keeps the best checkpoint)
    return trainer, demo_path, {**info, "bc_steps": trainer.step}


def run_bc(ctx: dict, seed: int, tracker: Checkpoints) -> dict:
    """System 1: scripted demos + behaviour cloning for the whole budget."""
    tracker.clock.start()
    run_dir = Path(ctx["out"]) / f"bc_s{seed}"
    trainer, _, info = _bc_phase(ctx, seed, tracker, tracker.clock.budget_s, run_dir, "bc")
    try:
        if tracker.needs_final():
            with tracker.clock.paused():
                trainer.evaluate()
        trainer.save()
    finally:
        trainer.close()
    return {**info, "run_dir": str(run_dir)}


def run_bc_ppo(ctx: dict, seed: int, tracker: Checkpoints) -> dict:
    """System 2: BC for bc_fraction of the budget, then PPO from that policy for the rest."""
    from robo_hybrid.config import to_yaml  # noqa: PLC0415
    from robo_hybrid.rl.train import PPOTrainer  # noqa: PLC0415
    from robo_hybrid.training import checkpoint as ckpt  # noqa: PLC0415

    clock = tracker.clock
    clock.start()
    run_dir = Path(ctx["out"]) / f"bc_ppo_s{seed}"
    trainer, demo_path, info = _bc_phase(ctx, seed, tracker, ctx["bc_fraction"] * clock.budget_s, run_dir, "bc")
    try:
        bc_file = ckpt.save_policy(run_dir / "bc_policy.safetensors", trainer.policy)
    finally:
        trainer.close()
    root = copy.deepcopy(ctx["ppo_root"])
    root.seed, root.run_dir, root.checkpoint = seed, str(run_dir / "ppo"), str(bc_file)
    pc = root.algo
    pc.progress, pc.eval_every, pc.eval_num_envs, pc.time_budget_s = False, 0, 1, 0.0  # the bench evaluates
    ppo = PPOTrainer(pc, root.task.name, root.task.env, root.run_dir, init_checkpoint=str(bc_file),
                     demos_path=str(demo_path), seed=seed, config_yaml=to_yaml(root))
    try:
        info["ppo_start_s"] = round(clock.elapsed(), 1)  # BC phase + PPO set-up (env workers, critic)
        print(f"[bench learn] {tracker.label:<14} t={clock.elapsed():7.0f} s  PPO from the BC policy "
              f"({info['bc_steps']} BC steps)", flush=True)
        while not clock.expired():
            ppo.iteration()
            if tracker.due():
                tracker.evaluate_policy(ppo.policy, "ppo")
        if tracker.needs_final():
            tracker.evaluate_policy(ppo.policy, "ppo")
        ppo.save()
    finally:
        ppo.close()
    return {**info, "ppo_iterations": ppo.it, "ppo_env_steps": ppo.env_steps, "run_dir": str(run_dir)}


def run_sb3(ctx: dict, seed: int, tracker: Checkpoints, algo: str) -> dict:
    """Systems 3 and 4: stable-baselines3 PPO / SAC with MultiInputPolicy (CNN + MLP)."""
    from robo_hybrid.sb3_bench import learn_sb3  # noqa: PLC0415

    env_cfg = {**asdict(ctx["cfg"].task.env), "reward": ctx["sb3_reward"]}
    return learn_sb3(algo, ctx["cfg"].task.name, env_cfg, seed, tracker, vec_env=ctx["sb3_vec"],
                     kwargs=ctx[f"sb3_{algo}"])


# ================================================================================================ learn: driver
def _learn_context(args: list[str]) -> dict:
    """Parse `bench learn` arguments into the settings every system reads."""
    from robo_hybrid.cli import load_config  # noqa: PLC0415

    own, rest = split_args(args, LEARN_KEYS, LEARN_PREFIXES)
    pref = {p: {k[len(p):]: v for k, v in own.items() if k.startswith(p)} for p in LEARN_PREFIXES}
    if any(a.startswith(("algo=", "algo.")) for a in rest):
        raise ValueError("bench learn trains both algorithms: write bc.<key>=... for BC and ppo.<key>=... for PPO "
                         "(e.g. bc.batch_size=128 ppo.num_envs=4) instead of algo=/algo.<key>=")
    shared = rest
    cfg = load_config(["algo=bc", *shared, *(f"algo.{k}={v}" for k, v in pref["bc."].items())])
    ppo_root = load_config(["algo=ppo", *shared, *(f"algo.{k}={v}" for k, v in pref["ppo."].items())])
    systems = tuple(s.strip() for s in own.get("systems", ",".join(SYSTEMS)).split(",") if s.strip())
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise ValueError(f"systems={','.join(unknown)}: choose from {','.join(SYSTEMS)}")
    budget_s = float(own.get("budget_s", 1800))
    ctx = {"cfg": cfg, "ppo_root": ppo_root, "systems": systems, "budget_s": budget_s,
           "seeds": [int(s) for s in own.get("seeds", str(cfg.seed)).split(",")],
           "eval_every_s": float(own.get("eval_every_s", budget_s / 10)),
           "bc_fraction": float(own.get("bc_fraction", 0.5)), "sb3_reward": own.get("sb3_reward", "dense"),
           "sb3_vec": own.get("sb3_vec", "subproc"), "cores": int(own.get("cores", 2)),
           "torch_threads": int(own.get("torch_threads", 0)),
           "sb3_ppo": {k: _literal(v) for k, v in pref["sb3_ppo."].items()},
           "sb3_sac": {k: _literal(v) for k, v in pref["sb3_sac."].items()}}
    if budget_s <= 0 or ctx["eval_every_s"] <= 0 or not 0.0 < ctx["bc_fraction"] < 1.0:
        raise ValueError("budget_s and eval_every_s must be > 0 and bc_fraction within (0, 1)")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    ctx["out"] = cfg.out or f"runs/bench_learn_{cfg.task.name}_{stamp}"
    ctx["json"] = own.get("json") or str(Path(ctx["out"]) / "bench_learn.json")
    ctx["plot"] = own.get("plot") or str(Path(ctx["out"]) / "bench_learn.png")
    return ctx


def bench_learn(args: list[str]) -> int:
    """`robo-hybrid bench learn [budget_s=1800] [task=push] [seeds=0] [systems=bc,bc_ppo,sb3_ppo,sb3_sac] ...`."""
    import torch  # noqa: PLC0415  (before any MuJoCo GL context in this process)

    import robo_hybrid.policy  # noqa: F401, PLC0415

    ctx = _learn_context(args)
    if any(s.startswith("sb3_") for s in ctx["systems"]):
        from robo_hybrid.sb3_bench import SB3MissingError, require_sb3  # noqa: PLC0415

        try:
            require_sb3()
        except SB3MissingError as e:
            print(f"robo-hybrid bench learn: error: {e}", file=sys.stderr)
            return 2
    old_mask = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    old_threads = torch.get_num_threads()
    if old_mask is not None:  # the same cores for every system; worker processes inherit the mask
        os.sched_setaffinity(0, set(sorted(old_mask)[: ctx["cores"]]))
    try:
        return _run_learn(ctx, torch)
    finally:
        torch.set_num_threads(old_threads)
        if old_mask is not None:
            os.sched_setaffinity(0, old_mask)


def _run_learn(ctx: dict, torch) -> int:
    cfg = ctx["cfg"]
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    threads = ctx["torch_threads"] or len(cores)  # learner threads of BC and SB3 (our PPO: ppo.num_threads)
    print(f"[bench learn] task {cfg.task.name}, systems {','.join(ctx['systems'])}, seeds {ctx['seeds']}, budget "
          f"{ctx['budget_s']:.0f} s each, checkpoints every {ctx['eval_every_s']:.0f} s, {cfg.eval.episodes} held-out "
          f"episodes (seeds {cfg.eval.seed_base}+i), cpus {cores}, {threads} torch thread(s); writing {ctx['out']}",
          flush=True)
    runners = {"bc": run_bc, "bc_ppo": run_bc_ppo,
               "sb3_ppo": lambda c, s, t: run_sb3(c, s, t, "ppo"), "sb3_sac": lambda c, s, t: run_sb3(c, s, t, "sac")}
    curves: dict[str, dict[int, list[dict]]] = {s: {} for s in ctx["systems"]}
    infos: dict[str, dict[int, dict]] = {s: {} for s in ctx["systems"]}
    evaluator = HeldOutEval(cfg.task.name, cfg.task.env, cfg.eval.episodes, cfg.eval.seed_base, cfg.workers)
    try:
        for seed in ctx["seeds"]:
            for system in ctx["systems"]:
                torch.set_num_threads(threads)  # PPOTrainer sets its own; reset for the next system
                torch.manual_seed(seed)
                tracker = Checkpoints(WallClock(ctx["budget_s"]), evaluator, ctx["eval_every_s"], f"{system} s{seed}")
                curves[system][seed] = tracker.points
                t0 = time.perf_counter()
                try:
                    infos[system][seed] = runners[system](ctx, seed, tracker)
                finally:
                    infos[system].setdefault(seed, {})["total_wall_s"] = round(time.perf_counter() - t0, 1)
                    _write_learn_outputs(ctx, curves, infos, cores)
    finally:
        evaluator.close()
    rows = summarize(curves)
    print("runs (times in training seconds):")
    for system, by_seed in infos.items():
        for seed, info in by_seed.items():
            print(f"  {system:<8} s{seed}  " + ", ".join(f"{k}={v}" for k, v in info.items()
                                                         if k not in ("run_dir", "hyperparameters")))
    print(format_curves(curves))
    print(format_learn_table(rows, ctx["budget_s"]))
    print(f"wrote {ctx['json']} and {ctx['plot']}")
    return 0


def _write_learn_outputs(ctx: dict, curves: dict, infos: dict, cores: list[int]) -> None:
    """JSON + PNG of everything measured so far (rewritten after every run, so an interrupted bench keeps its data)."""
    from robo_hybrid.config import to_yaml  # noqa: PLC0415
    from robo_hybrid.evaluate import write_json_atomic  # noqa: PLC0415

    cfg = ctx["cfg"]
    rows = summarize(curves)
    doc = {"task": cfg.task.name, "budget_s": ctx["budget_s"], "eval_every_s": ctx["eval_every_s"],
           "eval_episodes": cfg.eval.episodes, "eval_seed_base": cfg.eval.seed_base, "seeds": ctx["seeds"],
           "cpus": cores, "torch_threads": ctx["torch_threads"] or len(cores), "bc_fraction": ctx["bc_fraction"],
           "sb3_reward": ctx["sb3_reward"],
           "summary": rows, "winners": winners(rows), "curves": curves, "runs": infos,
           "config_bc": to_yaml(cfg), "config_ppo": to_yaml(ctx["ppo_root"]),
           "sb3_overrides": {"ppo": ctx["sb3_ppo"], "sac": ctx["sb3_sac"]}}
    write_json_atomic(ctx["json"], json.loads(json.dumps(doc, default=str)))
    plot_curves(curves, ctx["plot"], f"{cfg.task.name}: held-out success vs wall-clock "
                                     f"({len(cores)} cpus, budget {ctx['budget_s']:.0f} s)")
