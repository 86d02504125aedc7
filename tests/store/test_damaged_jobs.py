"""Job dirs are the source of truth: a finished job whose files are damaged is not done and
is never half-ingested."""

from __future__ import annotations

import pytest

from specc.runtime.jobdir import JobDir
from specc.store.db import ingest, query
from tests.store.jobs import finished_job

ROWS = [(step, "train/loss", step / 10) for step in range(1, 21)]


def _files(workspace, job_id):
    return sorted((workspace / "jobs" / job_id / "metrics").glob("*.parquet"))


def test_a_truncated_metrics_file_makes_the_job_damaged_and_drops_its_rows(tmp_path):
    ws = tmp_path / "runs"
    job = finished_job(ws, "a" * 16, {"train-00000000-00000010": ROWS[:10], "train-00000010-00000020": ROWS[10:]})
    finished_job(ws, "b" * 16, {"train-00000000-00000020": ROWS})
    ingest(ws, warn=pytest.fail)
    assert query(ws, "select count(*) from metrics")[1] == [(40,)]
    first = _files(ws, job.id)[0]
    first.write_bytes(first.read_bytes()[:-20])  # truncated after the job finished
    warnings = []
    ingest(ws, warn=warnings.append)
    assert any("damaged" in w and first.name in w for w in warnings)
    assert not job.is_done()  # run, status and plan see it: it reruns
    assert query(ws, f"select status from jobs where job_id = '{job.id}'")[1] == [("damaged",)]
    assert query(ws, "select job_id, count(*) from metrics group by job_id")[1] == [("b" * 16, 20)]  # never half


def test_same_size_other_bytes_is_caught_by_the_checksum_and_a_rebuilt_store_agrees(tmp_path):
    ws = tmp_path / "runs"
    job = finished_job(ws, "c" * 16, {"train-00000000-00000020": ROWS})
    path = _files(ws, job.id)[0]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert job.is_done()  # a stat cannot see it ...
    ingest(ws, warn=lambda m: None)  # ... the ingest, which reads the file, does
    assert not job.is_done() and JobDir(job.path).status()["state"] == "damaged"
    (ws / "specc.duckdb").unlink()
    ingest(ws, warn=lambda m: None)  # the store rebuilt from the job dirs says the same
    assert query(ws, f"select status from jobs where job_id = '{job.id}'")[1] == [("damaged",)]
    assert query(ws, "select count(*) from metrics")[1] == [(0,)]


def test_a_job_whose_done_marker_was_deleted_is_not_done_anywhere(tmp_path):
    from specc.runtime.executor import job_state

    ws = tmp_path / "runs"
    job = finished_job(ws, "d" * 16, {"train-00000000-00000020": ROWS})
    (job.path / "DONE").unlink()
    assert job_state(job) == "pending"  # `specc status`: it will run again
    ingest(ws, warn=lambda m: None)
    assert query(ws, f"select status from jobs where job_id = '{job.id}'")[1] == [("damaged",)]
