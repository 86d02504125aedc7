"""Two `specc run` processes on one workspace: each job is run by one of them, once."""

from __future__ import annotations

import subprocess
import sys

import pytest

from specc.compiler.plan import compile_spec
from specc.runtime.jobdir import JobDir

CLI = [sys.executable, "-c", "from specc.cli import main; main()"]
SPEC = """
name: twice
defaults:
  model: {size: XS}
  train: {batch_size: 8, eval_every: 50, checkpoint_every: 2}
evaluate: {judge: golden, kl_prompts: 8, win_prompts: 8}
stages:
  task:   {kind: dataset, task: {train_prompts: 32, eval_prompts: 8}}
  golden: {kind: oracle, data: task}
  labels: {kind: label, data: task, judge: golden}
  sft:    {kind: sft, data: labels, train: {steps: 16}}
"""

pytestmark = pytest.mark.slow


def test_two_runs_on_one_workspace_never_run_a_job_twice(tmp_path):
    spec = tmp_path / "twice.yaml"
    spec.write_text(SPEC)
    args = [*CLI, "run", str(spec), "--workspace", str(tmp_path / "runs"), "--no-report", "--executor", "debug"]
    first, second = (subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for _ in range(2))
    outputs = [proc.communicate(timeout=600) for proc in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    assert not any("Traceback" in err for _, err in outputs)
    plan = compile_spec(spec)
    for job in plan.jobs:
        jd = JobDir(tmp_path / "runs" / "jobs" / job.id)
        # run once, by one process: the other waited for it (or found it finished) instead of rerunning it
        assert jd.is_done() and jd.status()["attempt"] == 1, (job.stage, jd.status())
    assert any("waiting" in out or "finished by another run" in out for out, _ in outputs), outputs


def test_a_job_is_owned_by_one_process_until_it_ends(tmp_path):
    from specc.runtime.jobdir import JobBusy

    jd = JobDir(tmp_path / "jobs" / "0123456789abcdef")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from specc.runtime.jobdir import JobDir\n"
                               f"with JobDir({str(jd.path)!r}).lock():\n print('held', flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert jd.is_busy()
        with pytest.raises(JobBusy, match="another process"):
            with jd.lock():
                pass
    finally:
        holder.kill()
        holder.wait()
    assert not jd.is_busy()  # released by the OS when its holder died
