"""Where a Stack policy's held-out failures end: `python tools/stack_failures.py <run or checkpoint> [episodes]`.

Runs the policy (BC, or BC + residual) deterministically on the held-out seeds 1,000,000 + i, one env, and sorts
each failed episode by its final state (from the simulator's privileged state, which the policy never reads):
cube A held in the air, A on the table (never grasped, or dropped), A on cube B but off-centre, A centred on B but
not released. Prints one line per failure and the counts.
"""

from __future__ import annotations

import collections
import sys

import numpy as np
import torch  # noqa: F401  (before the first GL context: triton's LLVM and llvmpipe)

from robo_hybrid.constants import HELD_OUT_SEED_BASE
from robo_hybrid.envs import EnvConfig, make_env
from robo_hybrid.evaluation.runner import policy_act_fn
from robo_hybrid.rl.residual import load_residual
from robo_hybrid.spec import SpecMismatchError
from robo_hybrid.training.checkpoint import CheckpointError, load_policy

A_POS, B_POS = slice(0, 3), slice(13, 16)  # cube A's and cube B's centre in the 26-long privileged vector


def category(a: np.ndarray, b: np.ndarray, released: bool, xy_tol_m: float) -> str:
    """The final state of a failed episode, in words."""
    dxy, dz = float(np.linalg.norm(a[:2] - b[:2])), float(a[2] - b[2])
    if dz > 0.03 and dxy < 0.03:  # resting on (or just above) cube B
        if dxy >= xy_tol_m:
            return "A on B, off-centre"
        return "A centred on B, moving" if released else "A centred on B, not released"
    if dz > 0.01:
        return "A held in the air, away from B"
    return "A on the table (never grasped, or dropped)"


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2 or (len(argv) == 2 and not argv[1].isdigit()):
        print("usage: python tools/stack_failures.py <run dir or checkpoint> [episodes, default 100]")
        return 2
    try:
        base, spec, _ = load_policy(argv[0])
        policy = load_residual(argv[0], base)
    except (CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}")
        return 2
    episodes = int(argv[1]) if len(argv) == 2 else 100
    env = make_env("stack", EnvConfig(image_size=spec.obs(spec.policy_keys[0]).shape[0], camera="front",
                                      wrist_camera="image_wrist" in spec.policy_keys))
    task = env.unwrapped
    try:
        spec.require_compatible(task.io_spec, what="env")
    except SpecMismatchError as e:
        env.close()
        print(f"error: {argv[0]} is not a Stack policy of this camera setup:\n{e}")
        return 2
    act = policy_act_fn(policy)
    counts: collections.Counter[str] = collections.Counter()
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=HELD_OUT_SEED_BASE + i)
            success, steps = False, 0
            done = False
            while not done:
                obs, _, term, trunc, info = env.step(act({k: obs[k][None] for k in spec.policy_keys})[0])
                success, steps, done = success or bool(info["is_success"]), steps + 1, term or trunc
            if success:
                counts["success"] += 1
                continue
            p = np.asarray(task.privileged_state())
            c = category(p[A_POS], p[B_POS], bool(task.object_released), task.task.success_threshold_m)
            counts[c] += 1
            dxy = float(np.linalg.norm(p[A_POS][:2] - p[B_POS][:2]))
            print(f"seed {HELD_OUT_SEED_BASE + i}: {c} (A to B {100 * dxy:.1f} cm in xy, "
                  f"{100 * (p[A_POS][2] - p[B_POS][2]):.1f} cm up; opening {1000 * task.gripper_opening_m:.0f} mm; "
                  f"{steps} steps)")
    finally:
        env.close()
    print(f"{episodes} episodes: " + ", ".join(f"{k} {v}" for k, v in counts.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
