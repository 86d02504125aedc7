"""Failures and crashes through the real CLI and the real submitit LocalExecutor."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from specc.runtime.jobdir import JobDir

TINY = Path(__file__).with_name("tiny.yaml")
CLI = [sys.executable, "-c", "from specc.cli import main; main()"]

pytestmark = pytest.mark.slow


def specc(*args, cwd, timeout=600):
    return subprocess.run([*CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_failing_job_marks_dependents_blocked_and_exits_nonzero(tmp_path):
    # a replay whose batch size differs from the recorded stream's raises at start
    proc = specc("run", TINY, "--workspace", tmp_path / "runs", "--no-report", "--executor", "debug",
                 "stages.tandem.train.batch_size=4", "stages.tandem.train.steps=2", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "failed" in proc.stderr and "batch_size 4 differs" in proc.stderr
    assert "log.txt" in proc.stderr  # the message names the job's log
    assert "[red]" not in proc.stderr  # styled, not printed as markup
    status = specc("status", TINY, "--workspace", tmp_path / "runs",
                   "stages.tandem.train.batch_size=4", "stages.tandem.train.steps=2", cwd=tmp_path)
    line = next(l for l in status.stdout.splitlines() if " tandem " in f" {l} ")
    cells = [c.strip() for c in line.split("│") if c.strip()]
    assert cells[0] == "tandem" and cells[4] == "1"  # failed column
    rerun = specc("run", TINY, "--workspace", tmp_path / "runs", "--no-report", "--executor", "debug",
                  "stages.tandem.train.batch_size=4", "stages.tandem.train.steps=2", cwd=tmp_path)
    assert rerun.returncode == 1
    assert " started" in rerun.stdout and rerun.stdout.count(" started") == 1  # only the failed job is retried


ONLINE_ONLY = """
name: online-only
defaults:
  model: {size: XS}
  train: {batch_size: 8, eval_every: 50, checkpoint_every: 10}
evaluate: {judge: golden, kl_prompts: 16, win_prompts: 32}
stages:
  task:   {kind: dataset, task: {train_prompts: 128, eval_prompts: 32}}
  golden: {kind: oracle, data: task}
  labels: {kind: label, data: task, judge: golden}
  sft:    {kind: sft, data: labels, train: {steps: 10}}
  online: {kind: align, init: sft, sampler: {online: golden}, train: {steps: 300}}
"""


def test_kill_9_mid_training_then_rerun_resumes_without_duplicate_rows(tmp_path):
    spec = tmp_path / "online.yaml"
    spec.write_text(ONLINE_ONLY)
    args = ["run", spec, "--workspace", tmp_path / "runs", "--no-report", "--executor", "local", "--max-parallel", "2"]
    runner = subprocess.Popen([*CLI, *map(str, args)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    jobs = tmp_path / "runs" / "jobs"
    online = None
    deadline = time.time() + 300
    while time.time() < deadline:
        for d in jobs.glob("*") if jobs.exists() else []:
            jd = JobDir(d)
            if (d / "job.json").exists() and jd.job_json()["stage"] == "online" and (d / "checkpoint" / "state.pt").exists():
                online = jd
        if online is not None and online.status().get("state") == "running":
            break
        time.sleep(0.2)
    assert online is not None, "the online job never checkpointed"
    os.kill(online.status()["pid"], signal.SIGKILL)
    runner.wait(timeout=600)
    assert not online.is_done()
    rerun = specc(*args, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert online.is_done() and online.status()["attempt"] == 2
    con = duckdb.connect(str(tmp_path / "runs" / "specc.duckdb"), read_only=True)
    total, distinct = con.execute("select count(*), count(distinct (job_id, step, name)) from metrics").fetchone()
    online_losses = con.execute("select count(*) from metrics where job_id = ? and name = 'train/loss'",
                                [online.id]).fetchone()[0]
    assert total == distinct and online_losses == 300


def test_an_unusable_device_fails_the_job_with_a_reason(tiny_run, tmp_path, monkeypatch):
    import torch

    from specc.runtime.job import run_job
    from tests.runtime.tiny import copy_upstream

    job = copy_upstream(tiny_run, "sft", tmp_path)
    monkeypatch.setenv("SPECC_DEVICE", "tpu")
    with pytest.raises(ValueError, match="expected 'cpu' or 'cuda'"):
        run_job(job.path)
    assert job.status()["state"] == "failed" and "SPECC_DEVICE" in job.status()["error"]
    if not torch.cuda.is_available():
        monkeypatch.setenv("SPECC_DEVICE", "cuda")
        with pytest.raises(ValueError, match="sees no GPU"):
            run_job(job.path)
    monkeypatch.setenv("SPECC_DEVICE", "cpu")
    run_job(job.path)  # the same job, on a device it has
    assert job.is_done() and job.status()["device"] == "cpu"
