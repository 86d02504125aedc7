"""Compiling and planning are pure Python: they never import torch (or transformers, datasets).

Each check runs in a fresh interpreter, so nothing imported by other tests hides an import.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPECS = [ROOT / "specs" / "quickstart.yaml", Path(__file__).parent / "specs" / "online_vs_offline.yaml",
         Path(__file__).parent / "specs" / "extends_profile.yaml"]
HEAVY = ("torch", "transformers", "datasets")

REPORT = f"""
heavy = [m for m in {HEAVY!r} if m in sys.modules]
print("HEAVY:" + ",".join(heavy))
"""


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert "Traceback" not in result.stderr, result.stderr
    heavy = [line for line in result.stdout.splitlines() if line.startswith("HEAVY:")]
    assert heavy, result.stdout + result.stderr
    return heavy[-1].removeprefix("HEAVY:")


def test_compile_and_plan_never_import_torch():
    code = f"""
import sys
from specc.compiler.plan import compile_spec
for path in {[str(p) for p in SPECS]!r}:
    plan = compile_spec(path)
    assert plan.jobs and plan.waves()
    [job.to_json() for job in plan.jobs]
""" + REPORT
    assert run_python(code) == ""


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_cli_never_imports_torch(tmp_path, command):
    extra = ["--workspace", str(tmp_path / "ws"), "--json"] if command == "plan" else []
    code = f"""
import sys
from specc.cli import main
sys.argv = ["specc", {command!r}, {str(SPECS[1])!r}, *{extra!r}]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
""" + REPORT
    assert run_python(code) == ""
