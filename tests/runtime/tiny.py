import shutil
from pathlib import Path

from specc.compiler.plan import compile_spec
from specc.runtime.executor import run_local
from specc.runtime.jobdir import JobDir

TINY = Path(__file__).with_name("tiny.yaml")


class Run:
    """A compiled spec run into a workspace; jobs addressable by stage name."""

    def __init__(self, workspace: Path, overrides=()):
        self.workspace = workspace
        self.plan = compile_spec(TINY, overrides=list(overrides))
        self.result = run_local(self.plan, workspace, kind="debug")

    def job(self, stage: str) -> JobDir:
        (job,) = [j for j in self.plan.jobs if j.stage == stage]
        return JobDir(self.workspace / "jobs" / job.id)


def copy_upstream(run: Run, stage: str, workspace: Path) -> JobDir:
    """A fresh workspace holding `stage`'s finished upstream jobs and its job.json only."""
    target = run.job(stage)
    for job in run.plan.jobs:
        src = run.workspace / "jobs" / job.id
        if job.id == target.id:
            (workspace / "jobs" / job.id).mkdir(parents=True)
            shutil.copy(src / "job.json", workspace / "jobs" / job.id / "job.json")
        else:
            shutil.copytree(src, workspace / "jobs" / job.id)
    return JobDir(workspace / "jobs" / target.id)
