"""Files a job has not finished writing (or that are corrupt) are skipped with a warning that
names them, left out of the manifest, and ingested exactly once when they are complete."""

from __future__ import annotations

import io
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from specc.runtime.jobdir import atomic_write_bytes
from specc.store.db import ingest, query
from tests.store.jobs import files_on_disk, finished_job, make_job, store_rows

ROWS = [(step, name, step + i / 10) for step in range(100) for i, name in enumerate(("train/loss", "train/kl"))]


def parquet_bytes(rows) -> bytes:
    steps, names, values = zip(*rows)
    buffer = io.BytesIO()
    pq.write_table(pa.table({"step": pa.array(steps, pa.int64()), "name": pa.array(names),
                             "value": pa.array(values, pa.float64())}), buffer)
    return buffer.getvalue()


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def wrong_columns(_: bytes) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"step": [1, 2], "metric": ["a", "b"]}), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("damage", [half, lambda data: b"", lambda data: b"PAR1" + b"\0" * 500 + b"PAR1",
                                    lambda data: data[:-9] + b"\xff" * 9, wrong_columns],
                         ids=["half-written", "empty", "garbage", "broken-footer", "wrong-columns"])
def test_a_damaged_metrics_file_is_skipped_then_ingested_once_complete(tmp_path, damage):
    workspace = tmp_path / "runs"
    finished_job(workspace, "a" * 16, {"train-00000000-00000100": ROWS})  # a good job beside it
    job = make_job(workspace, "b" * 16)
    job.write_metrics("train-00000000-00000100", ROWS[:50])
    complete = parquet_bytes(ROWS[50:])
    late = job.metrics_dir / "train-00000100-00000200.parquet"
    late.write_bytes(damage(complete))  # as a non-atomic writer (or a network filesystem) might show it

    warnings = []
    counts = ingest(workspace, warn=warnings.append)
    assert len(warnings) == 1 and str(late) in warnings[0], warnings
    assert counts["skipped"] == 1
    assert len(store_rows(workspace)) == len(ROWS) + 50  # everything but the damaged file
    assert query(workspace, f"SELECT count(*) FROM ingested_files WHERE path LIKE '%{late.name}'")[1] == [(0,)]

    warnings.clear()
    ingest(workspace, warn=warnings.append)  # still damaged: skipped again, nothing else changes
    assert len(warnings) == 1 and len(store_rows(workspace)) == len(ROWS) + 50

    atomic_write_bytes(late, complete)  # the job finishes the file
    warnings.clear()
    counts = ingest(workspace, warn=warnings.append)
    assert warnings == [] and counts["files"] == 1 and counts["rows"] == len(ROWS) - 50
    assert store_rows(workspace) == files_on_disk(workspace)  # exactly once
    assert ingest(workspace, warn=warnings.append)["files"] == 0
    assert store_rows(workspace) == files_on_disk(workspace)


def test_an_unreadable_job_json_holds_back_the_job_until_it_is_complete(tmp_path):
    workspace = tmp_path / "runs"
    finished_job(workspace, "a" * 16, {"train-00000000-00000100": ROWS})
    job = finished_job(workspace, "c" * 16, {"train-00000000-00000100": ROWS})
    good = job.file("job.json").read_bytes()
    job.file("job.json").write_bytes(half(good))

    warnings = []
    ingest(workspace, warn=warnings.append)
    assert len(warnings) == 1 and str(job.file("job.json")) in warnings[0], warnings
    assert query(workspace, "SELECT job_id FROM jobs")[1] == [("a" * 16,)]
    assert query(workspace, "SELECT DISTINCT job_id FROM metrics")[1] == [("a" * 16,)]  # its metrics wait too

    atomic_write_bytes(job.file("job.json"), good)
    warnings.clear()
    ingest(workspace, warn=warnings.append)
    assert warnings == []
    assert sorted(query(workspace, "SELECT job_id, status FROM jobs")[1]) == [("a" * 16, "done"), ("c" * 16, "done")]
    assert store_rows(workspace) == files_on_disk(workspace)


def test_an_unreadable_status_json_keeps_the_job_and_is_read_once_complete(tmp_path):
    workspace = tmp_path / "runs"
    job = make_job(workspace, "d" * 16)
    job.mark_running(threads=2)
    job.write_metrics("train-00000000-00000100", ROWS)
    status = job.file("status.json").read_bytes()
    job.file("status.json").write_bytes(half(status))

    warnings = []
    ingest(workspace, warn=warnings.append)
    assert len(warnings) == 1 and str(job.file("status.json")) in warnings[0], warnings
    assert query(workspace, "SELECT status, threads FROM jobs")[1] == [("unknown", None)]
    assert len(store_rows(workspace)) == len(ROWS)  # metrics need only job.json

    atomic_write_bytes(job.file("status.json"), status)
    warnings.clear()
    ingest(workspace, warn=warnings.append)
    assert warnings == [] and query(workspace, "SELECT status, threads FROM jobs")[1] == [("running", 2)]
    job.mark_done({})
    ingest(workspace, warn=warnings.append)
    assert query(workspace, "SELECT status FROM jobs")[1] == [("done",)]


def test_temporary_files_of_atomic_writes_are_never_read(tmp_path):
    workspace = tmp_path / "runs"
    job = finished_job(workspace, "e" * 16, {"train-00000000-00000100": ROWS})
    (job.metrics_dir / ".train-00000100-00000200.parquet.x1y2.tmp").write_bytes(half(parquet_bytes(ROWS)))
    (job.metrics_dir / ".hidden.parquet").write_bytes(b"")
    warnings = []
    assert ingest(workspace, warn=warnings.append)["files"] == 1 and warnings == []
    os.unlink(job.metrics_dir / ".hidden.parquet")
