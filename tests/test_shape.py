"""The code keeps its shape: no import cycle among the modules of runner/ and dashboards/ (lazy
imports included), no module over 450 lines, no function over 60 (benchmarks/shape.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import ROOT


def test_no_import_cycle_and_nothing_too_long() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "shape.py"), str(ROOT)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "import cycles: none" in result.stdout


def test_the_check_sees_a_cycle_and_a_long_function(tmp_path: Path) -> None:
    root = tmp_path
    (root / "runner").mkdir()
    (root / "dashboards").mkdir()
    (root / "runner" / "__init__.py").write_text("")
    (root / "dashboards" / "__init__.py").write_text("")
    (root / "runner" / "a.py").write_text("def f():\n    from runner import b\n")
    (root / "runner" / "b.py").write_text("from runner.a import f\n\ndef g():\n" + "    x = 1\n" * 70)
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "shape.py"), str(root)], capture_output=True,
                            text=True)
    assert result.returncode == 1
    assert "runner.a <-> runner.b" in result.stdout and "runner.b.g" in result.stdout
