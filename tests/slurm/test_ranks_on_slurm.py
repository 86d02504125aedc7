"""A job of two ranks (SLURM tasks, torch.distributed over gloo on the CPU) inside specc's DAG on
the real SLURM executor: afterok dependencies, a pre-emption of the two-rank job, resume."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from specc.compiler.plan import compile_spec
from specc.runtime.distributed import LATEST
from specc.runtime.executor import run_local
from specc.runtime.jobdir import JobDir
from specc.runtime.samplers import read_stream

from tests.slurm.test_specc_on_slurm import _wait_for, specc

pytestmark = pytest.mark.slurm

SPEC = """
name: slurm-ranks
defaults:
  model: {size: XS}
  train: {batch_size: 8, eval_every: 100, checkpoint_every: 5}
evaluate: {judge: golden, kl_prompts: 16, win_prompts: 32}
stages:
  task:   {kind: dataset, task: {train_prompts: 128, eval_prompts: 32}}
  golden: {kind: oracle, data: task}
  labels: {kind: label, data: task, judge: golden}
  sft:    {kind: sft, data: labels, train: {steps: 10}}
  online: {kind: align, init: sft, sampler: {online: golden}, train: {steps: 60}}
executor: {kind: slurm, time_min: 10, cpus: 1, mem_gb: 2,
           stages: {sft: {ranks: 2}, online: {ranks: 2}}}
"""


def test_two_rank_jobs_in_a_dag_with_preemption(slurm_cluster, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    submitted = specc("run", spec, "--workspace", tmp_path / "runs", "--no-report", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    plan = compile_spec(spec)
    jobs = {j.stage: JobDir(tmp_path / "runs" / "jobs" / j.id) for j in plan.jobs}
    online = jobs["online"]
    slurm_id = online.status()["slurm_job_id"]
    shown = subprocess.run(["scontrol", "-o", "show", "job", slurm_id], capture_output=True, text=True,
                           timeout=30).stdout
    assert "NumTasks=2" in shown and "Dependency=afterok:" in shown, shown

    _wait_for(lambda: (online.checkpoint_dir / LATEST).exists() and online.status().get("state") == "running",
              600, "the two-rank online job to checkpoint on SLURM")
    subprocess.run(["scancel", "--signal=USR2", slurm_id], check=True, timeout=30)  # pre-emption

    waited = specc("run", spec, "--workspace", tmp_path / "runs", "--wait", "--no-report", cwd=tmp_path)
    assert waited.returncode == 0, waited.stdout + waited.stderr + online.log_path.read_text()
    assert all(jd.is_done() for jd in jobs.values())
    assert online.status()["attempt"] >= 2, "the pre-empted job was not requeued and resumed"
    stream = read_stream(online)
    assert stream["step"].tolist() == [s for s in range(60) for _ in range(8)]  # every batch once

    # the two-rank SFT equals one process's within float32 tolerance
    local = run_local(compile_spec(spec, overrides=["stages.online.train.steps=5"]), tmp_path / "local", kind="debug")
    assert local.ok
    sft_id = next(j.id for j in plan.jobs if j.stage == "sft")
    here = sorted(JobDir(tmp_path / "local" / "jobs" / sft_id).read_metrics())
    there = sorted(jobs["sft"].read_metrics())
    assert [r[:2] for r in here] == [r[:2] for r in there]
    np.testing.assert_allclose([r[2] for r in there], [r[2] for r in here], rtol=1e-4, atol=1e-5)
