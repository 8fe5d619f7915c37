"""Names and numbers shared by every layer (torch-free, mujoco-free): observation keys, seed bases, task ids."""

from __future__ import annotations

# Observation keys that are not one of a spec's policy keys.
HISTORY_MASK_KEY = "history_mask"  # (B, K) bool: which of the K stacked frames are real (False = padding)
PRIVILEGED_KEY = "privileged"  # simulator state for the critic and the reward model only, never a policy input

# Held-out evaluation seeds are HELD_OUT_SEED_BASE + i. Demo collection uses small integers, so the two never meet.
HELD_OUT_SEED_BASE = 1_000_000

# short task name -> gymnasium id (registered by robo_hybrid.envs)
TASK_IDS: dict[str, str] = {
    "reach": "robo_hybrid/Reach-v0",
    "push": "robo_hybrid/Push-v0",
    "pickplace": "robo_hybrid/PickPlace-v0",
    "stack": "robo_hybrid/Stack-v0",
    "fetch_reach": "robo_hybrid/FetchReach-v0",
    "fetch_push": "robo_hybrid/FetchPush-v0",
    "fetch_pickplace": "robo_hybrid/FetchPickAndPlace-v0",
    "fr3_reach": "robo_hybrid/FR3Reach-v0",
    "fr3_pickplace": "robo_hybrid/FR3PickPlace-v0",
}


def task_name(task: str) -> str:
    """Short task name from a short name or a gymnasium id; a one-line error listing the valid ones otherwise."""
    if task in TASK_IDS:
        return task
    for name, gym_id in TASK_IDS.items():
        if task == gym_id:
            return name
    raise ValueError(f"unknown task '{task}'; choose one of {sorted(TASK_IDS)} or their gymnasium ids")
