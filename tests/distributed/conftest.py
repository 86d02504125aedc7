import pytest

from specc.runtime.jobdir import JobDir

from tests.distributed.ranks import run_ranks
from tests.runtime.tiny import Run, copy_upstream


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Run:
    """The tiny spec run by one process: what N ranks must reproduce."""
    run = Run(tmp_path_factory.mktemp("tiny"))
    assert run.result.ok, run.result.failed
    return run


def run_two_ranks(tiny_run, stage: str, workspace) -> JobDir:
    """`stage`'s job of the tiny spec run by two ranks, in a workspace of its upstream jobs."""
    job = copy_upstream(tiny_run, stage, workspace)
    results = run_ranks(job.path, 2)
    assert all(code == 0 for code, _ in results), results
    assert job.is_done() and job.status()["state"] == "done"
    return job


@pytest.fixture(scope="session")
def online_two_ranks(tiny_run, tmp_path_factory) -> JobDir:
    return run_two_ranks(tiny_run, "online", tmp_path_factory.mktemp("online2"))
