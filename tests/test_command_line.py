"""The one entry point: every bad key or value is one line naming it, why, and the valid choices; no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from robo_hybrid.cli import COMMANDS, main


@pytest.mark.parametrize("args, expected", [
    (["collect", "task=nosuch"], ["task=nosuch", "choose one of", "pickplace", "push"]),
    (["collect", "episodes=abc"], ["episodes=abc: expected an integer"]),
    (["train", "algo.learning_rat=1e-3"], ["unknown key 'algo.learning_rat'", "did you mean 'algo.learning_rate'"]),
    (["train", "algo=ppo", "algo.num_env=2"], ["unknown key 'algo.num_env'", "did you mean 'algo.num_envs'"]),
    (["train", "nosuch=1"], ["unknown key 'nosuch'", "valid keys here:", "workers"]),
    (["train", "algo=nope"], ["algo=nope", "choose one of bc, ppo"]),
    (["train", "algo.steps=0"], ["algo.steps and algo.batch_size must be >= 1"]),
    (["train", "algo=ppo", "algo.failure_replay=1.5"], ["algo.failure_replay=1.5: a probability in [0, 1]"]),
    (["bench", "learn", "bench.learn.systems=[bc,nope]"], ["bench.learn.systems: unknown ['nope']"]),
    (["bench", "nosuch"], ["choose one of camera, envs, latency, learn, loop"]),
    (["eval"], ["checkpoint=<run dir"]),
    (["eval", "eval.action_noise=-0.1"], ["eval.action_noise=-0.1: a std in [0, 10]"]),
    (["ablate", "ablation.variants=[bc_only,nope]"], ["ablation.variants: unknown ['nope']"]),
    (["ablate", "ablation.seeds=[0,0]"], ["ablation.seeds must be distinct and non-empty, got [0, 0]"]),
])
def test_bad_input_is_one_line(args, expected, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"robo-hybrid {args[0]}: error: "), err
    for part in expected:
        assert part in err, err


def test_unknown_command_lists_the_commands(capsys):
    assert main(["nosuch"]) == 2
    err = capsys.readouterr().err
    assert all(c in err for c in COMMANDS)


def test_cfg_prints_the_resolved_config(capsys):
    assert main(["train", "algo=ppo", "algo.num_envs=3", "--cfg"]) == 0
    out = capsys.readouterr().out
    assert "num_envs: 3" in out and "seed_base: 1000000" in out


def test_eval_refuses_a_task_other_than_the_checkpoints(bc_checkpoint, capsys):
    assert main(["eval", f"checkpoint={bc_checkpoint}", "task=pickplace"]) == 2
    err = capsys.readouterr().err
    assert "task=pickplace" in err and "'push' policy" in err


def test_ppo_refuses_a_checkpoint_of_another_task(bc_checkpoint, capsys):
    assert main(["train", "algo=ppo", "task=reach", f"checkpoint={bc_checkpoint}"]) == 2
    assert "holds a 'push' policy but task=reach" in capsys.readouterr().err


def test_the_entry_point_imports_nothing_heavy():
    code = ("import sys, robo_hybrid.cli\n"
            "print(sorted(m for m in ('torch', 'hydra', 'gymnasium', 'mujoco') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
