"""Reference log-probs of a fixed pair table: computed once per (reference, table) and
reused by every job of a sweep, without changing a single bit of any result."""

import shutil

import pytest

from specc.runtime.job import run_job

from tests.runtime.tiny import copy_upstream

pytestmark = pytest.mark.slow


def _cache(workspace):
    return sorted((workspace / "cache" / "reference-logps").glob("*.pt"))


def test_one_table_per_reference_and_pair_table(tiny_run):
    # offline + dpo share (sft, D_golden); tandem + shuffled share (sft, online's stream);
    # bo2 reads D_{sft vs online}: three tables for five jobs
    assert len(_cache(tiny_run.workspace)) == 3


@pytest.mark.parametrize("cache_state", ["absent", "present", "torn"])
def test_results_do_not_depend_on_the_cache(tiny_run, tmp_path, cache_state):
    job = copy_upstream(tiny_run, "offline", tmp_path)
    if cache_state != "absent":
        shutil.copytree(tiny_run.workspace / "cache", tmp_path / "cache")
    if cache_state == "torn":  # a half-written table is recomputed, never trusted
        for table in _cache(tmp_path):
            table.write_bytes(table.read_bytes()[:100])
    run_job(job.path)
    assert sorted(job.read_metrics()) == sorted(tiny_run.job("offline").read_metrics())
    assert any(t.stat().st_size > 100 for t in _cache(tmp_path))  # (re)written for the next job
