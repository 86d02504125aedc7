"""Diverged training (lr=1e30, no clipping) fails its job, blocks its dependents and stores no NaN;
a job that asks for more held-out prompts than there are says so where a user looks."""

from __future__ import annotations

import math
import sys

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
  task:     {kind: dataset, task: {train_prompts: 32, eval_prompts: 8}}
  golden:   {kind: oracle, data: task}
  labels:   {kind: label, data: task, judge: golden}
  sft:      {kind: sft, data: labels, train: {steps: 2}}
  diverged: {kind: align, init: sft, sampler: {offline: labels}, train: {steps: 2, lr: 1.0e+30, grad_clip: null}}
  after:    {kind: align, init: diverged, sampler: {offline: labels}, train: {steps: 2}}
  capped:   {kind: align, init: sft, sampler: {offline: labels}, train: {steps: 2}, evaluate: {win_prompts: 20}}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diverged")
    (tmp / "diverged.yaml").write_text(SPEC)
    plan = compile_spec(tmp / "diverged.yaml")
    events = []
    result = run_local(plan, tmp / "runs", kind="debug", on_event=lambda e, job, info="": events.append((e, job.stage, info)))
    jobs = {j.stage: JobDir(tmp / "runs" / "jobs" / j.id) for j in plan.jobs}
    return tmp, result, jobs, events


def test_a_non_finite_loss_fails_the_job_and_blocks_its_dependents(run):
    tmp, result, jobs, _ = run
    assert list(result.failed) == [jobs["diverged"].id] and result.blocked == [jobs["after"].id]
    status = jobs["diverged"].status()
    assert status["state"] == "failed"
    assert "NonFiniteError" in status["error"] and "at step 2" in status["error"]  # located: step and what
    assert "train/loss" in status["error"] or "parameter" in status["error"]
    assert "grad_clip" in result.failed[jobs["diverged"].id]  # and what to do about it
    ingest(tmp / "runs", warn=pytest.fail)
    con = duckdb.connect(str(tmp / "runs" / "specc.duckdb"), read_only=True)
    values = [v for (v,) in con.execute("select value from metrics where job_id = ?", [jobs["diverged"].id]).fetchall()]
    assert all(math.isfinite(v) for v in values)  # nothing diverged was stored as a result
    assert con.execute("select status from jobs where job_id = ?", [jobs["diverged"].id]).fetchone() == ("failed",)


def test_a_capped_evaluation_is_noted_in_the_run_and_in_status(run, monkeypatch, capsys):
    from specc.cli import main

    tmp, _, jobs, events = run
    note = "evaluate.win_prompts=20 but the data set holds out only 8 prompts: win is measured on 8"
    assert jobs["capped"].is_done() and jobs["capped"].status()["notes"] == [note]
    assert any(e == "done" and stage == "capped" and note in info for e, stage, info in events)
    monkeypatch.setattr(sys, "argv", ["specc", "status", str(tmp / "diverged.yaml"), "-w", str(tmp / "runs")])
    main()
    assert note in " ".join(capsys.readouterr().out.split())


def test_a_damaged_finished_job_is_rerun_from_scratch_to_the_same_results(run):
    from specc.cli import _state

    tmp, _, jobs, _ = run
    capped = jobs["capped"]
    before = sorted(capped.read_metrics())
    victim = sorted(capped.metrics_dir.glob("train-*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:-8])
    assert not capped.is_done() and _state(capped) == "damaged: reruns"
    result = run_local(compile_spec(tmp / "diverged.yaml"), tmp / "runs", kind="debug")
    assert capped.id in result.done and jobs["sft"].id in result.cached
    assert capped.is_done() and sorted(capped.read_metrics()) == before  # bit-identical rerun
    assert "has" in capped.status()["rerun_because"]


def test_the_report_shows_the_notes(run):
    from specc.cli import _write_report
    from specc.store.db import record_spec

    tmp, _, jobs, _ = run
    plan = compile_spec(tmp / "diverged.yaml")
    record_spec(tmp / "runs", plan)
    ingest(tmp / "runs", warn=lambda m: None)
    html = _write_report(tmp / "runs", plan, tmp / "report.html").read_text()
    assert "Notes on the data" in html and "holds out only 8 prompts" in html


def test_the_report_never_uses_a_failed_jobs_evaluations(run):
    from specc.reports.queries import WITH_EVALS
    from specc.store.db import record_spec

    tmp, _, jobs, _ = run
    record_spec(tmp / "runs", compile_spec(tmp / "diverged.yaml"))
    ingest(tmp / "runs", warn=lambda m: None)
    con = duckdb.connect(str(tmp / "runs" / "specc.duckdb"), read_only=True)
    stored = {j for (j,) in con.execute("select distinct job_id from metrics where name like 'eval/%'").fetchall()}
    used = {j for (j,) in con.execute(f"{WITH_EVALS} SELECT DISTINCT job_id FROM spec_evals",
                                      ["diverged", "diverged"]).fetchall()}
    assert jobs["diverged"].id in stored  # its step-0 evaluation was written before it diverged ...
    assert jobs["diverged"].id not in used and jobs["capped"].id in used  # ... and the report leaves it out
