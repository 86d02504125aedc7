"""specc's own DAG through the real SLURM executor, with a pre-emption mid-training."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from specc.compiler.plan import compile_spec
from specc.runtime.executor import run_local
from specc.runtime.jobdir import JobDir

pytestmark = pytest.mark.slurm
CLI = [sys.executable, "-c", "from specc.cli import main; main()"]

SPEC = """
name: slurm-e2e
defaults:
  model: {size: XS}
  train: {batch_size: 8, eval_every: 40, checkpoint_every: 10}
evaluate: {judge: golden, kl_prompts: 16, win_prompts: 32}
stages:
  task:   {kind: dataset, task: {train_prompts: 128, eval_prompts: 32}}
  golden: {kind: oracle, data: task}
  labels: {kind: label, data: task, judge: golden}
  sft:    {kind: sft, data: labels, train: {steps: 10}}
  proxy:  {kind: preference_model, data: labels, init: sft, train: {steps: 10}}
  online: {kind: align, init: sft, sampler: {online: proxy}, train: {steps: 400}}
  replay: {kind: align, init: sft, sampler: {replay: online}, train: {steps: 400}}
executor: {kind: slurm, time_min: 10, cpus: 1, mem_gb: 2}
"""


def specc(*args, cwd):
    return subprocess.run([*CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=900)


def _wait_for(predicate, timeout_s, what):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def test_dag_on_slurm_with_preemption_matches_local_run(slurm_cluster, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    submitted = specc("run", spec, "--workspace", tmp_path / "slurm-runs", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert "7 submitted" in submitted.stdout

    plan = compile_spec(spec)
    jobs = {j.stage: JobDir(tmp_path / "slurm-runs" / "jobs" / j.id) for j in plan.jobs}
    online = jobs["online"]
    _wait_for(lambda: (online.checkpoint_dir / "state.pt").exists() and online.status().get("state") == "running",
              600, "the online job to checkpoint on SLURM")
    slurm_id = online.status()["slurm_job_id"]
    subprocess.run(["scancel", "--signal=USR2", slurm_id], check=True, timeout=30)  # pre-emption

    waited = specc("run", spec, "--workspace", tmp_path / "slurm-runs", "--wait", cwd=tmp_path)
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert all(jd.is_done() for jd in jobs.values())
    assert online.status()["attempt"] >= 2, "the pre-empted job was not requeued and resumed"

    local = compile_spec(spec)
    result = run_local(local, tmp_path / "local-runs", kind="debug")
    assert result.ok
    for job in local.jobs:
        on_slurm = sorted(jobs[job.stage].read_metrics())
        here = sorted(JobDir(tmp_path / "local-runs" / "jobs" / job.id).read_metrics())
        assert on_slurm == here, job.stage


def test_run_returns_right_after_submitting_a_100_job_sweep(slurm_cluster, tmp_path):
    spec = tmp_path / "sweep.yaml"
    seeds = ", ".join(map(str, range(100)))
    sweep = f"  sweep_me: {{kind: sft, data: labels, train: {{steps: 5}}, sweep: {{seeds: [{seeds}]}}}}\n"
    spec.write_text(SPEC.replace("executor:", sweep + "executor:"))
    started = time.time()
    proc = specc("run", spec, "--workspace", tmp_path / "runs", "--no-report", cwd=tmp_path)
    elapsed = time.time() - started
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "107 submitted" in proc.stdout
        queued = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, timeout=30).stdout.split()
        assert len(queued) >= 100  # all in the queue; specc returned without waiting for them
        print(f"specc run returned {elapsed:.1f}s after submitting 107 jobs")
    finally:
        specc("cancel", spec, "--workspace", tmp_path / "runs", cwd=tmp_path)


def test_a_stage_gets_its_own_slurm_resources(slurm_cluster, tmp_path):
    spec = tmp_path / "resources.yaml"
    spec.write_text(SPEC.replace("executor: {kind: slurm, time_min: 10, cpus: 1, mem_gb: 2}",
                                 "executor: {kind: slurm, time_min: 10, cpus: 1, mem_gb: 2,\n"
                                 "           stages: {sft: {time_min: 7, mem_gb: 1}}}"))
    proc = specc("run", spec, "--workspace", tmp_path / "runs", "--no-report", cwd=tmp_path)
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        plan = compile_spec(spec)
        requested = {}
        for job in plan.jobs:
            slurm_id = JobDir(tmp_path / "runs" / "jobs" / job.id).status()["slurm_job_id"]
            shown = subprocess.run(["scontrol", "-o", "show", "job", slurm_id], capture_output=True, text=True,
                                   timeout=30).stdout
            fields = dict(item.split("=", 1) for item in shown.split() if "=" in item)
            requested[job.stage] = (fields.get("TimeLimit"), fields.get("MinMemoryNode"))
        assert requested["sft"] == ("00:07:00", "1G")  # the stage's own
        assert requested["proxy"] == ("00:10:00", "2G")  # the executor's
    finally:
        specc("cancel", spec, "--workspace", tmp_path / "runs", cwd=tmp_path)
