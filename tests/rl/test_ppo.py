"""PPO end to end on 2 envs x 8 steps (image 32 px, tiny model), through Hydra compose; warm-up; resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robo_hybrid.commands.train import train_ppo
from robo_hybrid.training import checkpoint as ckpt


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_one_ppo_iteration_from_a_bc_checkpoint(compose_ppo, bc_checkpoint, tmp_path):
    run = tmp_path / "ppo"
    cfg = compose_ppo(run, f"checkpoint={bc_checkpoint}", "algo.iterations=1", "algo.critic_warmup_iters=0")
    res = train_ppo(cfg)
    assert res.iterations == 1 and res.env_steps == 16
    assert 0.0 <= res.final_eval["success_rate"] <= 1.0 and "success_rate" in res.initial_eval
    train = [r for r in _records(run) if r["kind"] == "train"]
    assert len(train) == 1
    m = train[0]
    # the batch's critic epochs ran in the background (algo.async_critic) and were logged under the same step
    critic = [r for r in _records(run) if r["kind"] == "critic"]
    assert [r["step"] for r in critic] == [1] and critic[0]["env_steps"] == 16
    m = {**m, **{k: v for k, v in critic[0].items() if k in ("value_loss", "critic_grad_norm")}}
    for key in ("value_loss", "critic_grad_norm", "policy_loss", "entropy", "approx_kl", "clip_frac", "bc_reg", "std",
                "policy/rollout_std", "policy/bc_std_0", "reward_terms/object_to_goal_m", "reward/task"):
        assert key in m and np.isfinite(m[key]), key
    assert m["episodes"] >= 2  # episode_steps=6 < 8 steps: every env finished (truncated) at least once
    assert m["std"] >= 0.05 - 1e-6  # the std floor holds
    # the PPO checkpoint is a BC-format checkpoint: eval / export load it as they load BC runs
    policy, spec, saved_cfg = ckpt.load_policy(run)
    assert spec.policy_keys == ("image", "proprio", "goal") and saved_cfg.algo.name == "ppo"
    assert (run / "ppo_state").is_dir() and (run / "learning_curves.png").stat().st_size > 0
    for name in ("success", "return", "kl", "entropy", "value_loss"):
        assert (run / f"{name}.png").is_file()
    from robo_hybrid.export import export_onnx

    report = export_onnx(policy, tmp_path / "ppo.onnx")
    assert (tmp_path / "ppo.onnx").stat().st_size > 0 and report.inputs == ["image", "proprio", "goal"]


def test_resume_continues_where_it_stopped(compose_ppo, bc_checkpoint, tmp_path):
    run = tmp_path / "ppo"
    common = [f"checkpoint={bc_checkpoint}", "algo.checkpoint_every=1", "algo.critic_warmup_iters=1"]
    train_ppo(compose_ppo(run, *common, "algo.iterations=1"))
    with pytest.raises(FileExistsError):
        train_ppo(compose_ppo(run, *common, "algo.iterations=2"))
    res = train_ppo(compose_ppo(run, *common, "algo.iterations=2", "resume=true"))
    assert res.iterations == 2 and res.env_steps == 32
    steps = [r["step"] for r in _records(run) if r["kind"] == "train"]
    assert steps == [1, 2]
    state = ckpt.read_trainer_state(ckpt.find_checkpoint(run))
    assert state["iteration"] == 2 and state["from_scratch"] is False


@pytest.mark.parametrize("reward", ["dense", "learned"])
def test_reward_choices(compose_ppo, bc_checkpoint, push_demos_32, tmp_path, reward):
    run = tmp_path / reward
    cfg = compose_ppo(run, f"checkpoint={bc_checkpoint}", f"data={push_demos_32}", f"algo.reward={reward}",
                      "algo.iterations=1", "algo.rnd.coef=0.1", "algo.bc_reg=bc_nll", "algo.critic_warmup_iters=0")
    train_ppo(cfg)
    m = [r for r in _records(run) if r["kind"] == "train"][0]
    assert m["reward/intrinsic"] > 0  # RND on
    assert np.isfinite(m["bc_reg"]) and m["bc_reg"] != 0.0  # demo NLL regularizer on
    if reward == "dense":
        assert m["reward/task"] < 0  # distances are penalised
        # every weighted term of the env's reward is logged, and they add up to the task reward
        terms = {k: v for k, v in m.items() if k.startswith("reward_terms/")}
        assert {"reward_terms/tcp_to_object_m", "reward_terms/object_to_goal_m"} <= set(terms)
        assert sum(terms.values()) == pytest.approx(m["reward/task"], rel=1e-4, abs=1e-6)
    else:
        assert m["reward/shaping"] != 0.0 and (run / "reward_model.safetensors").is_file()


def test_from_scratch_without_checkpoint(compose_ppo, tmp_path):
    run = tmp_path / "scratch"
    res = train_ppo(compose_ppo(run, "checkpoint=", "algo.iterations=1", "algo.critic_warmup_iters=0"))
    assert res.iterations == 1
    policy, _, _ = ckpt.load_policy(run)
    assert bool(policy.obs_normalizers["proprio"].fitted)  # normalizers fitted from random-action rollouts
    assert torch.isfinite(policy.action_head.mean.weight).all()


def test_bc_nll_without_demos_fails_with_a_clear_message(compose_ppo, bc_checkpoint, tmp_path):
    cfg = compose_ppo(tmp_path / "r", f"checkpoint={bc_checkpoint}", "algo.bc_reg=bc_nll",
                      f"data={tmp_path / 'missing.hdf5'}")
    with pytest.raises(ValueError, match="does not exist"):
        train_ppo(cfg)


def test_ppo_on_the_fr3_task_through_the_same_command(compose_ppo, tmp_path):
    """RL on FR3PickPlace (front + wrist camera, Ruckig motion, franky-sim's controller) by the existing command."""
    run = tmp_path / "fr3"
    cfg = compose_ppo(run, "task=fr3_pickplace", "task.env.image_size=32", "task.env.episode_steps=6", "checkpoint=",
                      "algo.iterations=1", "algo.critic_warmup_iters=0")  # fmt: skip
    res = train_ppo(cfg)
    assert res.iterations == 1 and res.env_steps == 16
    policy, spec, _ = ckpt.load_policy(run)
    assert spec.task_id == "robo_hybrid/FR3PickPlace-v0" and spec.policy_keys == ("image", "image_wrist", "proprio",
                                                                                   "goal")  # fmt: skip
    assert spec.extras["robot"] == "fr3"
