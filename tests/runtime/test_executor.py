"""The executor interface: one table of kinds, one reading of scheduler states, one rule for blocked."""

from __future__ import annotations

import dataclasses

import pytest

from specc.compiler.plan import compile_spec
from specc.compiler.schema import StageResources
from specc.contracts import EXECUTORS
from specc.runtime import slurm
from specc.runtime.executor import (EXECUTOR_CLASSES, Executor, LocalExecutor, Resources, make_executor,
                                    scheduler_meaning)
from specc.runtime.jobdir import JobDir
from tests.runtime.tiny import TINY


@pytest.fixture(scope="module")
def plan():
    return compile_spec(TINY)


def test_every_executor_kind_comes_from_one_table(tmp_path):
    assert tuple(EXECUTOR_CLASSES) == EXECUTORS
    for kind in EXECUTORS:
        runner = make_executor(kind, tmp_path)
        assert isinstance(runner, Executor) and runner.kind == kind
        assert runner.detaches == (kind == "slurm")
    with pytest.raises(ValueError, match="unknown executor 'lokal': expected debug, local or slurm"):
        make_executor("lokal", tmp_path)


class InlineExecutor(LocalExecutor):
    """An executor added the way the recipe in docs/contributing.md says: a class and a table row."""

    kind = "inline"


def test_a_new_executor_is_a_class_and_a_table_row(tmp_path, monkeypatch):
    monkeypatch.setitem(EXECUTOR_CLASSES, "inline", f"{__name__}:InlineExecutor")
    assert isinstance(make_executor("inline", tmp_path), InlineExecutor)


@pytest.mark.parametrize("raw, meaning", [
    ("RUNNING", "running"), ("COMPLETING", "running"), ("PENDING", "pending"), ("REQUEUED", "pending"),
    ("COMPLETED", "completed"), ("FAILED", "ended"), ("CANCELLED by 0", "ended"), ("TIMEOUT", "ended"),
    ("OUT_OF_MEMORY", "ended"), ("PREEMPTED", None), ("", None), (None, None)])
def test_scheduler_states_are_read_in_one_place(raw, meaning):
    assert scheduler_meaning(raw) == meaning


def _job(plan, ws, stage) -> JobDir:
    (job,) = [j for j in plan.jobs if j.stage == stage]
    return JobDir(ws / "jobs" / job.id)


def test_a_failed_job_blocks_everything_downstream_and_nothing_else(plan, tmp_path):
    runner = make_executor("local", tmp_path, plan.executor)
    runner.prepare(plan)
    assert set(runner.states(plan).values()) == {"pending"}
    _job(plan, tmp_path, "sft").mark_failed("boom")
    states = {job.stage: runner.states(plan)[job.id] for job in plan.jobs}
    assert states["sft"] == "failed"
    assert states["task"] == states["golden"] == states["golden_data"] == states["rm"] == "pending"
    assert states["online"] == states["tandem"] == states["d_sft_vs_online"] == states["bo2"] == "blocked"
    assert runner.wait(plan).blocked and not runner.wait(plan).done


def test_a_cancelled_slurm_job_is_failed_and_its_dependents_blocked(plan, tmp_path, monkeypatch):
    runner = make_executor("slurm", tmp_path, plan.executor)
    runner.prepare(plan)
    _job(plan, tmp_path, "task").update_status(state="submitted", slurm_job_id="41")
    _job(plan, tmp_path, "sft").update_status(state="submitted", slurm_job_id="42_0")
    monkeypatch.setattr(slurm, "scheduler_states", lambda ids: {"41": "RUNNING", "42_0": "CANCELLED by 0"})
    states = {job.stage: runner.states(plan)[job.id] for job in plan.jobs}
    assert (states["task"], states["sft"], states["golden"], states["offline"]) == ("running", "failed", "pending",
                                                                                 "blocked")
    # a local spec's status still asks SLURM about jobs a `--executor slurm` run submitted
    local = make_executor("local", tmp_path, plan.executor)
    assert local.states(plan) == runner.states(plan)


def test_resources_flow_from_the_settings_and_the_stage(plan):
    settings = plan.executor.model_copy(update={"gpus": 1, "cpus": 1, "stages": {}})
    sft = [j for j in plan.jobs if j.stage == "sft"]
    resources = Resources.for_stage(settings, "sft", sft)
    assert (resources.gpus, resources.cpus, resources.nodes, resources.tasks_per_node) == (1, 1, 1, 1)
    heavy = settings.model_copy(update={"stages": {"sft": StageResources(gpus=4, mem_gb=256)}})
    threaded = [dataclasses.replace(j, config={"train": {"threads": 3}}) for j in sft]
    resources = Resources.for_stage(heavy, "sft", threaded)
    assert (resources.gpus, resources.mem_gb, resources.cpus) == (4, 256, 3)
    parameters, extra = slurm.slurm_parameters(resources, "specc-sft", 8, ["17", "18"])
    assert (parameters["gpus_per_node"], parameters["cpus_per_task"], parameters["nodes"]) == (4, 3, 1)
    assert extra == {"dependency": "afterok:17:18", "kill-on-invalid-dep": "yes"}
