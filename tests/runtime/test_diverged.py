"""Diverged training (lr=1e30, no clipping) fails its job, blocks its dependents and stores no NaN."""

from __future__ import annotations

import math

import duckdb
import pytest

from specc.compiler.plan import compile_spec
from specc.runtime.executor import run_local
from specc.runtime.jobdir import JobDir
from specc.store.db import ingest

SPEC = """
name: diverged
defaults:
  model: {size: XS}
  train: {batch_size: 8, eval_every: 50, checkpoint_every: 2}
evaluate: {judge: golden, kl_prompts: 8, win_prompts: 8}
stages:
  task:    {kind: dataset, task: {train_prompts: 32, eval_prompts: 8}}
  golden:  {kind: oracle, data: task}
  labels:  {kind: label, data: task, judge: golden}
  sft:     {kind: sft, data: labels, train: {steps: 2, lr: 1.0e+30, grad_clip: null}}
  offline: {kind: align, init: sft, sampler: {offline: labels}, train: {steps: 2}}
"""


def test_a_non_finite_loss_fails_the_job_and_blocks_its_dependents(tmp_path):
    spec = tmp_path / "diverged.yaml"
    spec.write_text(SPEC)
    plan = compile_spec(spec)
    result = run_local(plan, tmp_path / "runs", kind="debug")
    sft, offline = (next(j for j in plan.jobs if j.stage == s) for s in ("sft", "offline"))
    assert list(result.failed) == [sft.id] and result.blocked == [offline.id]
    status = JobDir(tmp_path / "runs" / "jobs" / sft.id).status()
    assert status["state"] == "failed"
    assert "NonFiniteError" in status["error"] and "at step 2" in status["error"]  # located: step and what
    assert "train/loss" in status["error"] or "parameter" in status["error"]
    assert "grad_clip" in result.failed[sft.id]  # and what to do about it
    ingest(tmp_path / "runs", warn=pytest.fail)
    con = duckdb.connect(str(tmp_path / "runs" / "specc.duckdb"), read_only=True)
    values = [v for (v,) in con.execute("select value from metrics where job_id = ?", [sft.id]).fetchall()]
    assert all(math.isfinite(v) for v in values)  # nothing diverged was stored as a result
    assert con.execute("select status from jobs where job_id = ?", [sft.id]).fetchone() == ("failed",)
