"""Running specc the way a user does (its CLI in a subprocess), and reading a job's metrics back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from specc.compiler.plan import compile_spec
from specc.runtime.jobdir import JobDir

MINI = Path(__file__).with_name("mini.yaml")
ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from specc.cli import main; main()"]


def cli_env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
    env.pop("FORCE_COLOR", None)
    return env


def specc(*args, cwd, check=True, env=None, timeout=600) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env or cli_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"specc {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def jobs_of(workspace: Path, stage: str, overrides=()) -> list[JobDir]:
    plan = compile_spec(MINI, overrides=list(overrides))
    return [JobDir(workspace / "jobs" / job.id) for job in plan.jobs if job.stage == stage]


def metric_series(jd: JobDir, name: str) -> dict[int, float]:
    return {step: value for step, metric, value in jd.read_metrics() if metric == name}
