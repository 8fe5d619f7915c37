"""`robo-hybrid bench envs|latency|learn|train|rl|loop|sim2sim|camera [key=value ...]`: benchmarks that print figures.

envs, latency, learn, train and rl take Hydra overrides (their settings: bench.<name>.*); loop is the robot-side
controller-loop bench, sim2sim the FR3 franky-sim-against-our-env comparison and camera franky-sim's loop with the
simulated cameras rendering (no torch, no Hydra).
"""

from __future__ import annotations

import importlib

BENCHES = ("camera", "envs", "latency", "learn", "loop", "rl", "sim2sim", "train")
# torch- and Hydra-free benches (robot side): the controller loop's timing, FR3 on franky-sim against our env,
# franky-sim's 1 kHz loop with and without the simulated cameras rendering
TORCH_FREE = {"loop": "bench_loop", "sim2sim": "bench_sim2sim", "camera": "bench_camera"}


def main(args: list[str]) -> int:
    """Dispatch to one benchmark (`bench loop` before anything imports Hydra or torch: it runs on a base install)."""
    if args[:1] and args[0] in TORCH_FREE:
        return importlib.import_module(f"robo_hybrid.commands.{TORCH_FREE[args[0]]}").main(args[1:])
    from robo_hybrid.config import ConfigError, load_config  # noqa: PLC0415

    if not args or args[0] not in BENCHES:
        raise ConfigError(f"bench {args[0] if args else ''}: choose one of {', '.join(BENCHES)} "
                          "(e.g. `robo-hybrid bench envs`)")
    what, rest = args[0], args[1:]
    cfg = load_config(rest)
    if what == "envs":
        from robo_hybrid.envs.bench import bench_envs  # noqa: PLC0415

        b = cfg.bench.envs
        bench_envs(list(b.tasks), list(b.workers), steps=b.steps, repeats=b.repeats)
        return 0
    if what == "latency":
        from robo_hybrid.bench.latency import run_latency  # noqa: PLC0415

        b = cfg.bench.latency
        if not cfg.model:
            raise ConfigError("model=<policy.onnx> is required (make one with `robo-hybrid export checkpoint=...`)")
        run_latency(cfg.model, checkpoint=cfg.checkpoint, iters=b.iters, cycles=b.cycles, rate_hz=b.rate_hz,
                    cpu=b.cpu, sb3=b.sb3, sb3_algo=b.sb3_algo, sb3_model=b.sb3_model, json_path=b.json)
        return 0
    if what == "train":
        from robo_hybrid.bench.train import bench_train  # noqa: PLC0415

        if cfg.algo.name != "bc":
            raise ConfigError("bench train times the BC step (algo=bc); drop algo=")
        b = cfg.bench.train
        bench_train(cfg.algo, cfg.policy, cfg.task.env, data=cfg.data, steps=b.steps, warmup=b.warmup,
                    rounds=b.rounds)
        return 0
    if what == "rl":
        from robo_hybrid.bench.rl import bench_rl  # noqa: PLC0415

        bench_rl(cfg)
        return 0
    from robo_hybrid.bench.learn import bench_learn  # noqa: PLC0415

    if cfg.algo.name != "bc":
        raise ConfigError("bench learn trains BC from algo.* (algo=bc) and PPO from bench.learn.ppo.*; drop algo=")
    return bench_learn(cfg)
