"""Two ranks on real, padded text data (a local hub model, masks on every sequence): SFT's
mean over real tokens of the global batch, and online sampling after left-padded prompts."""

import shutil

import numpy as np
import pytest

from specc.runtime.jobdir import JobDir
from specc.runtime.samplers import read_stream

from tests.distributed.ranks import run_ranks
from tests.distributed.test_ranks import assert_close_runs
from tests.runtime.test_real_pipeline import real_run  # noqa: F401  (the one-process run, a fixture)

pytestmark = pytest.mark.slow


def rerun_with_two_ranks(jobs: dict, stage: str, workspace) -> JobDir:
    """A copy of the run's workspace with `stage`'s job reset to its job.json, run by two ranks."""
    source = jobs[stage].path.parent
    shutil.copytree(source, workspace / "jobs")
    job = JobDir(workspace / "jobs" / jobs[stage].id)
    shutil.rmtree(job.path)
    job.path.mkdir()
    shutil.copy(jobs[stage].file("job.json"), job.file("job.json"))
    assert [code for code, _ in run_ranks(job.path, 2)] == [0, 0]
    return job


@pytest.mark.parametrize("stage", ["sft", "online"])
def test_two_ranks_on_padded_data_train_as_one_process(real_run, tmp_path, stage):  # noqa: F811
    job = rerun_with_two_ranks(real_run, stage, tmp_path)
    assert_close_runs(job, real_run[stage])
    if stage == "online":
        got, expected = read_stream(job), read_stream(real_run[stage])
        assert all(np.array_equal(got[k], expected[k]) for k in expected)
