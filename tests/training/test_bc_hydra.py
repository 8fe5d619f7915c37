"""Hydra structured config: composition of every group, validation, and a 2-step BC run through `compose`."""

from __future__ import annotations

import json

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from robo_hybrid.commands.train import train_bc
from robo_hybrid.config import TASK_NAMES, BCConfig, Config, compose_config, configs_dir, to_dataclass
from robo_hybrid.envs.common import EnvConfig
from robo_hybrid.envs.demos import write_demos
from robo_hybrid.policy import PolicyConfig
from robo_hybrid.training.checkpoint import load_policy
from robo_hybrid.training.data import make_synthetic_demos

torch.set_num_threads(1)


def test_defaults_compose_to_typed_dataclasses():
    cfg = to_dataclass(compose_config([]))
    assert isinstance(cfg, Config) and isinstance(cfg.algo, BCConfig)
    assert isinstance(cfg.policy, PolicyConfig) and isinstance(cfg.task.env, EnvConfig)
    assert cfg.task.name == "push" and cfg.policy.name == "default" and cfg.experiment.name == "default"
    assert cfg.episodes == cfg.task.demo_episodes and cfg.device == "cpu" and cfg.resume is False
    assert cfg.run_dir == "runs/push_bc_default_s0" and cfg.data == "data/push_demos.hdf5"
    assert cfg.eval.seed_base >= 1_000_000  # disjoint from demo seeds


@pytest.mark.parametrize("task", TASK_NAMES)
def test_every_task_composes(task):
    cfg = to_dataclass(compose_config([f"task={task}"]))
    assert cfg.task.name == task
    assert cfg.task.env.camera == ("external" if task.startswith("fetch") else "front")
    assert not (task.startswith("fetch") and cfg.task.env.wrist_camera)


@pytest.mark.parametrize("policy", sorted(p.stem for p in (configs_dir() / "policy").glob("*.yaml")))
def test_every_policy_composes(policy):
    assert to_dataclass(compose_config([f"policy={policy}"])).policy.name == policy


@pytest.mark.parametrize(
    "override, error, match",
    [
        ("algo.loss=l2", ValueError, "algo.loss"),
        ("task.name=walk", ValueError, "task.name"),
        ("policy.n_heads=3", ValueError, "n_heads"),
        ("task.env.reward=shaped", ValueError, "reward"),
        ("algo.stepz=3", ConfigCompositionException, "stepz"),
        ("seed=abc", ConfigCompositionException, "seed"),
    ],
)
def test_bad_values_are_rejected_with_a_message(override, error, match):
    with pytest.raises(error, match=match):
        to_dataclass(compose_config([override]))


def test_no_eval_resolver_or_deep_target_in_the_yaml_files():
    for path in configs_dir().rglob("*.yaml"):
        text = path.read_text()
        assert "${eval" not in text and "oc.eval" not in text and "_target_" not in text, path


@pytest.fixture()
def demo_file(tmp_path):
    path = tmp_path / "push32.hdf5"
    demos = make_synthetic_demos(n_episodes=3, steps=8, image_size=32, task="push")
    write_demos(path, demos)
    return path, demos


def test_two_step_train_smoke_through_compose(demo_file, tmp_path):
    path, demos = demo_file
    run = tmp_path / "run"
    cfg = compose_config(["experiment=smoke", f"data={path}", f"run_dir={run}"])
    result = train_bc(cfg)
    assert result.step == 2 and result.checkpoint_dir.name == "step_00000002"
    for name in ("config.yaml", "io_spec.json", "metrics.jsonl", "loss.png", "checkpoints/latest.json"):
        assert (run / name).is_file(), name
    assert list((run / "tb").glob("events.out.tfevents.*"))
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2]
    assert all(r["samples_per_s"] > 0 and r["aux_state_mse"] > 0 for r in rows if r["kind"] == "train")
    saved = OmegaConf.load(run / "config.yaml")
    assert saved.algo.steps == 2 and saved.run_dir == str(run) and "${" not in OmegaConf.to_yaml(saved)
    policy, spec, run_cfg = load_policy(run, expect_spec=demos.spec)
    assert spec == demos.spec and run_cfg.policy.name == "tiny" and not policy.training
    assert bool(policy.action_normalizer.fitted) and bool(policy.obs_normalizers["proprio"].fitted)


def test_train_refuses_demos_of_another_task_or_image_size(demo_file, tmp_path):
    path, _ = demo_file
    with pytest.raises(ValueError, match="'push' demos but task=pickplace"):
        train_bc(compose_config(["experiment=smoke", "task=pickplace", f"data={path}", f"run_dir={tmp_path}/a"]))
    with pytest.raises(ValueError, match="image_size"):
        overrides = ["experiment=smoke", "task.env.image_size=84", f"data={path}", f"run_dir={tmp_path}/b"]
        train_bc(compose_config(overrides))


def test_existing_run_needs_resume(demo_file, tmp_path, capsys):
    path, _ = demo_file
    overrides = ["experiment=smoke", f"data={path}", f"run_dir={tmp_path}/run"]
    train_bc(compose_config(overrides))
    with pytest.raises(FileExistsError, match="resume=true"):
        train_bc(compose_config(overrides))
    capsys.readouterr()
    assert train_bc(compose_config([*overrides, "resume=true", "algo.steps=3"])).step == 3
    out = capsys.readouterr().out
    assert "[train] resumed" in out and "at step 2 of 3" in out  # the smoke run stopped at its 2 steps
