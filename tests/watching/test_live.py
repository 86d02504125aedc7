"""The live display of `specc run`, drawn from events and job dirs (a terminal test of the whole
command is in test_watching_a_run.py)."""

import shutil

from rich.console import Console

from specc.compiler.plan import compile_spec
from specc.live import RunDisplay
from tests.watching.helpers import MINI, jobs_of


def drawn(display) -> str:
    console = Console(record=True, width=200, file=open("/dev/null", "w"))
    console.print(display)
    return console.export_text()


def test_counts_and_a_row_per_running_job(mini_run, tmp_path):
    workspace = tmp_path / "runs"
    shutil.copytree(mini_run, workspace)
    plan = compile_spec(MINI)
    display = RunDisplay(plan, workspace, Console())
    first, second = jobs_of(workspace, "offline")
    first.update_status(state="running")
    for job in plan.jobs:
        display.event("started" if job.stage == "offline" else "cached", job)
    text = drawn(display)
    assert "mini: 4/6 done · 1 running · 1 pending" in text
    row = next(line for line in text.splitlines() if first.id in line)
    assert "10/10" in row and "win " in row and second.id not in text
    display.ROWS = 0
    display.event("failed", jobs_of_plan(plan, second.id))
    text = drawn(display)
    assert "4/6 done · 1 running · 0 pending · 1 failed" in text and "... and 1 more running" in text
    display.event("done", jobs_of_plan(plan, first.id))
    assert "5/6 done · 0 running · 0 pending · 1 failed" in drawn(display)


def jobs_of_plan(plan, job_id):
    return next(job for job in plan.jobs if job.id == job_id)
