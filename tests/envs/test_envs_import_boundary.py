"""DESIGN.md's import boundaries for envs/: no torch, no training side, no import cycle, no extra entry points.

(Named test_envs_import_boundary.py, not test_import_boundary.py: tests/deploy/ has a module of that name, and
pytest's default import mode needs unique basenames.)
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import robo_hybrid.envs as envs

ENVS_DIR = Path(envs.__file__).resolve().parent
BLOCK_TORCH = "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; "
MODULES = ["robo_hybrid", "robo_hybrid.spec", "robo_hybrid.envs"] + [
    f"robo_hybrid.envs.{p.stem}" for p in sorted(ENVS_DIR.glob("*.py")) if p.stem != "__init__"
]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_modules_import_without_loading_torch_or_the_training_side():
    """torch is NOT blocked here, so an import of it anywhere (even one guarded by try/except) shows up."""
    code = (
        "import importlib, sys\n"
        f"for name in {MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "    bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'hydra')\n"
        "                 or m.startswith(('robo_hybrid.policy', 'robo_hybrid.rl', 'robo_hybrid.training')))\n"
        "    assert not bad, f'importing {name} loaded {bad[:5]}'\n"
        "print('ok', len(sys.modules))\n"
    )
    res = _run(code)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]


def test_envs_can_step_without_torch():
    code = BLOCK_TORCH + (
        "from robo_hybrid.envs import make_env; e = make_env('push', image_size=16); e.reset(seed=0); "
        "e.step(e.action_space.sample()); e.close(); print('stepped')"
    )
    res = _run(code)
    assert res.returncode == 0 and "stepped" in res.stdout, res.stderr[-2000:]


def _imports(path: Path) -> set[str]:
    """envs submodules that `path` imports, at any depth (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:  # from .x import y
                found.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import x (names that are modules)
                found.update(a.name for a in node.names if (ENVS_DIR / f"{a.name}.py").is_file())
            elif node.module and node.module.startswith("robo_hybrid.envs."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[2] for a in node.names if a.name.startswith("robo_hybrid.envs."))
    return found


def test_no_import_cycle_between_envs_modules():
    graph = {p.stem: _imports(p) - {p.stem} for p in ENVS_DIR.glob("*.py") if p.stem != "__init__"}
    assert graph["experts"] >= {"arm", "fetch"}, graph  # the walker sees imports (else this test proves nothing)

    def cycle_from(node: str, path: list[str]) -> list[str] | None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                return [*path[path.index(nxt):], nxt]
            found = cycle_from(nxt, [*path, nxt])
            if found:
                return found
        return None

    for start in graph:
        cycle = cycle_from(start, [start])
        assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_no_extra_entry_points_in_envs():
    """Commands go through `robo-hybrid`: no argparse and no main() in envs/."""
    for path in sorted(ENVS_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names}
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "argparse" not in names | mods, f"{path.name} imports argparse"
        assert not any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), f"{path.name}: main()"
    assert not (ENVS_DIR / "fetch_expert.py").exists()
