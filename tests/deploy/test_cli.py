"""The robot-side commands: strict key=value parsing, one-line errors, exit status, and a base install."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from robo_hybrid.cliargs import CliArgError, parse
from robo_hybrid.commands.deploy import DeployArgs
from robo_hybrid.deploy.config import DeployConfig

BLOCK = "import sys\nfor m in ('torch', 'hydra', 'omegaconf', 'gymnasium'):\n    sys.modules[m] = None\n"


@dataclass
class _Inner:
    n: int = 1
    xs: tuple[float, ...] = (1.0,)


@dataclass
class _Outer:
    name: str = ""
    flag: bool = False
    opt: float | None = None
    inner: _Inner = field(default_factory=_Inner)


def test_parse_types_and_nesting():
    a = parse(_Outer, ["name=x", "flag=true", "opt=null", "inner.n=3", "inner.xs=1,2.5"])
    assert (a.name, a.flag, a.opt, a.inner.n, a.inner.xs) == ("x", True, None, 3, (1.0, 2.5))


@pytest.mark.parametrize("arg,msg", [
    ("deploy.epsodes=3", "unknown key 'deploy.epsodes'; did you mean 'deploy.episodes'?"),
    ("deploy.episodes=abc", "deploy.episodes=abc: expected an integer"),
    ("robot=mok", "did you mean 'mock'?"),
    ("deploy.rate_hz=0", "must be within 1..1000 Hz"),
    ("deploy.realtime=sometimes", "choose auto, off or require"),
    ("deploy.safety=maybe", "expected true or false"),
    ("episodes", "expected key=value"),
])  # fmt: skip
def test_bad_arguments_are_one_line_naming_the_key(arg, msg):
    with pytest.raises(CliArgError, match=msg.replace("(", r"\(").replace("?", r"\?")) as e:
        parse(DeployArgs, [arg])
    assert "\n" not in str(e.value)


def test_deploy_config_has_one_rate_range_and_per_episode_steps():
    from robo_hybrid.deploy.loop import LoopConfig

    for bad in (0.5, 1500.0):
        with pytest.raises(ValueError, match="1..1000 Hz"):
            DeployConfig(rate_hz=bad)
        with pytest.raises(ValueError, match="1..1000 Hz"):
            LoopConfig(rate_hz=bad)
    from robo_hybrid.deploy.mock import MockRobot, mock_io_spec
    from robo_hybrid.deploy.policy import CallablePolicy
    from robo_hybrid.deploy.run import run_deploy  # noqa: F401  (max_steps goes to LoopConfig unchanged)

    spec = mock_io_spec(image_size=8, control_rate_hz=200.0, episode_steps=0)
    from robo_hybrid.deploy.loop import Controller
    from robo_hybrid.deploy.safety import SafetyConfig

    robot = MockRobot(spec, start_ee_m=(0.3, -0.3, 0.1), terminate_on_success=False)
    ctl = Controller(CallablePolicy(spec, lambda o: [0, 0, 0, 1]), robot, LoopConfig(max_steps=5),
                     SafetyConfig(estop_signal=False))  # fmt: skip
    res = ctl.run(episodes=2)
    assert [r.steps for r in res["results"]] == [5, 5]  # deploy.max_steps: cycles per episode, not in total


def _deploy(args: list[str]) -> subprocess.CompletedProcess:
    code = BLOCK + f"from robo_hybrid.commands.deploy import main\nsys.exit(main({args!r}))\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_deploy_runs_on_a_base_install(model_path, tmp_path):
    r = _deploy([f"model={model_path}", "robot=mock", "deploy.episodes=2", f"deploy.log_dir={tmp_path}/logs",
                 "deploy.plot=false", "deploy.realtime=off"])  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "success_rate=1.00" in r.stdout and (tmp_path / "logs" / "deploy_result.json").is_file()


def test_deploy_exits_nonzero_with_one_line_after_a_latch(model_path, tmp_path):
    estop = tmp_path / "ESTOP"
    estop.write_text("pressed")
    r = _deploy([f"model={model_path}", "robot=mock", f"deploy.estop_file={estop}", "deploy.realtime=off"])
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()
    assert len(last) == 1 and last[0].startswith("deploy: latched (estop") and "Traceback" not in r.stderr


@pytest.mark.parametrize("model", ["missing.onnx", "spec_rate_0"])
def test_model_load_errors_are_one_line(tmp_path, model):
    if model == "spec_rate_0":
        import json

        from deploy_testlib import build_policy_onnx

        from robo_hybrid.deploy.mock import mock_io_spec

        spec = mock_io_spec(image_size=16)
        d = json.loads(spec.to_json())
        d["control_rate_hz"] = 0
        model = build_policy_onnx(str(tmp_path / "p.onnx"), spec, metadata={"io_spec": json.dumps(d)})
    r = _deploy([f"model={model}", "robot=mock"])
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("deploy: ")


def test_keys_command_makes_a_usable_keys_folder(tmp_path):
    code = BLOCK + f"from robo_hybrid.commands.keys import main\nsys.exit(main(['dir={tmp_path}/k']))\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    names = {p.name for p in (tmp_path / "k").iterdir()}
    assert {"server.key", "server.key_secret", "controller.key", "controller.key_secret", "authorized"} <= names
    assert (tmp_path / "k" / "authorized" / "controller.key").is_file()
