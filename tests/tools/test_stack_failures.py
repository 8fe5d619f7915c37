"""tools/stack_failures.py: the final-state categories of a failed Stack episode."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[2] / "tools" / "stack_failures.py"
_spec = importlib.util.spec_from_file_location("stack_failures", _PATH)
assert _spec is not None and _spec.loader is not None
stack_failures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stack_failures)

B = np.array([0.05, -0.02, 0.02])  # cube B's centre on the table (4 cm cube)


@pytest.mark.parametrize(("a", "released", "want"), [
    (B + [0.0, 0.0, 0.0], True, "A on the table (never grasped, or dropped)"),  # level with B: on the table
    (B + [0.20, 0.0, 0.0], True, "A on the table (never grasped, or dropped)"),
    (B + [0.15, 0.05, 0.08], False, "A held in the air, away from B"),
    (B + [0.02, 0.0, 0.04], True, "A on B, off-centre"),  # 2 cm off: outside the 1.5 cm tolerance
    (B + [0.005, 0.0, 0.04], False, "A centred on B, not released"),
    (B + [0.005, 0.0, 0.04], True, "A centred on B, moving"),
])
def test_category_names_the_final_state(a, released, want):
    assert stack_failures.category(np.asarray(a), B, released, xy_tol_m=0.015) == want


def test_bad_arguments_print_usage_and_fail(capsys):
    assert stack_failures.main([]) == 2
    assert stack_failures.main(["runs/x", "many"]) == 2
    assert "usage: python tools/stack_failures.py" in capsys.readouterr().out
