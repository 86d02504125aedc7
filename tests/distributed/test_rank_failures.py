"""Ranks that die, fail or hang: sharded checkpoints resume bit-identically, a failing rank's
traceback is in the job's log, and collectives time out instead of hanging."""

import signal
import time

import numpy as np
import pytest
import torch

from specc.runtime.distributed import LATEST
from specc.runtime.samplers import read_stream

from tests.distributed.ranks import run_ranks, start_ranks
from tests.distributed.test_ranks import weights
from tests.runtime.tiny import copy_upstream

pytestmark = pytest.mark.slow


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        assert time.time() < deadline, f"no {what} after {timeout_s}s"
        time.sleep(0.2)


def test_kill_of_one_rank_resumes_bit_identical(tiny_run, online_two_ranks, tmp_path):
    job = copy_upstream(tiny_run, "online", tmp_path)
    procs = start_ranks(job.path, 2)
    wait_for(lambda: (job.checkpoint_dir / LATEST).exists(), 300, "checkpoint")
    procs[1].send_signal(signal.SIGKILL)  # kill -9 of rank 1, mid-run
    for proc in procs:
        proc.communicate(timeout=120)  # rank 0 notices and stops: no hang
    assert procs[0].returncode != 0 and not job.is_done()
    assert [code for code, _ in run_ranks(job.path, 2)] == [0, 0]  # requeued: resumes from the checkpoint
    assert job.is_done() and job.status()["attempt"] == 2
    # bit-identical to an uninterrupted run of as many ranks
    assert sorted(job.read_metrics()) == sorted(online_two_ranks.read_metrics())
    resumed, uninterrupted = weights(job), weights(online_two_ranks)
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)
    got, expected = read_stream(job), read_stream(online_two_ranks)
    assert all(np.array_equal(got[k], expected[k]) for k in expected)
    assert not list(job.checkpoint_dir.glob("step-*"))  # a finished job drops its resume state


def test_failing_rank_fails_the_job_with_its_traceback(tiny_run, tmp_path):
    job = copy_upstream(tiny_run, "sft", tmp_path)
    results = run_ranks(job.path, 2, wait_s=120, fail={1: 2})
    assert all(code != 0 for code, _ in results)
    status = job.status()
    assert status["state"] == "failed"
    assert status["error"] == "rank 1 of 2: RuntimeError: injected failure in this rank"
    log = job.log_path.read_text()
    assert "rank 1 of 2: Traceback" in log and "injected failure in this rank" in log


def test_a_hung_rank_times_out_the_others(tiny_run, tmp_path):
    job = copy_upstream(tiny_run, "sft", tmp_path)
    procs = start_ranks(job.path, 2, fail={1: 2}, how="hang", timeout_s=20)
    try:
        started = time.time()
        procs[0].communicate(timeout=120)
        assert procs[0].returncode != 0 and time.time() - started < 120
        assert job.status()["state"] == "failed" and "rank 0 of 2" in job.status()["error"]
    finally:
        procs[1].kill()
        procs[1].communicate()
