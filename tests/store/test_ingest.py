"""Ingestion semantics: idempotent, newest file wins, only changed files read, old stores upgraded,
and every table and view documented in docs/store.md."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from specc.store import db, scan
from specc.store.db import connect, ingest, query
from specc.store.schema import TABLES, VIEWS
from tests.store.jobs import files_on_disk, finished_job, make_job, running_job, store_rows

DOCS = Path(__file__).resolve().parents[2] / "docs" / "store.md"


def loss_rows(first: int, last: int, shift: float = 0.0):
    return [(step, "train/loss", step + shift) for step in range(first, last)]


def test_many_job_dirs_ingest_exactly_and_a_second_ingest_reads_nothing(tmp_path):
    workspace = tmp_path / "runs"
    for i in range(300):
        job = make_job(workspace, f"{i:016x}")
        job.mark_running(threads=1)
        job.write_metrics("train-00000000-00000010", loss_rows(0, 10))
        job.write_metrics("eval-00000010", [(10, "eval/kl", i / 100)])
    counts = ingest(workspace, warn=pytest.fail)
    assert counts == {"jobs": 300, "jobs_updated": 300, "files": 600, "rows": 3300, "skipped": 0}
    assert store_rows(workspace) == files_on_disk(workspace)

    assert ingest(workspace, warn=pytest.fail) == {"jobs": 300, "jobs_updated": 0, "files": 0, "rows": 0,
                                                   "skipped": 0}
    for i in range(0, 300, 100):  # three jobs finish
        make_job(workspace, f"{i:016x}").mark_done({})
    assert ingest(workspace, warn=pytest.fail)["jobs_updated"] == 3
    assert query(workspace, "SELECT status, count(*) FROM jobs GROUP BY 1 ORDER BY 1")[1] == [
        ("done", 3), ("running", 297)]


def test_a_rewritten_file_replaces_its_rows_and_overlapping_files_count_once(tmp_path):
    workspace = tmp_path / "runs"
    # a running job: one that resumes rewrites its files (a finished job's files are fixed, see test_damaged_jobs)
    job = running_job(workspace, "f" * 16, {"train-00000000-00000050": loss_rows(0, 50),
                                              "train-00000050-00000100": loss_rows(50, 100)})
    ingest(workspace, warn=pytest.fail)
    job.write_metrics("train-00000000-00000050", loss_rows(0, 50, shift=0.5))  # resumed: same name, new values
    job.write_metrics("train-00000025-00000075", loss_rows(25, 75, shift=0.25))  # resumed from step 25
    counts = ingest(workspace, warn=pytest.fail)
    assert counts["files"] == 2 and counts["rows"] == 75  # steps 0-74, once each
    stored = store_rows(workspace)
    assert len(stored) == 100  # one row per step, however many files hold it
    # The file written last wins where files overlap.
    assert [stored["f" * 16, s, "train/loss"] for s in (0, 24, 25, 74, 75, 99)] == [0.5, 24.5, 25.25, 74.25, 75, 99]


def test_a_file_rewritten_after_its_stamp_is_read_again(tmp_path, monkeypatch):
    """The stamp is taken before reading; content newer than its stamp is re-read next time."""
    workspace = tmp_path / "runs"
    job = running_job(workspace, "9" * 16, {"train": loss_rows(0, 10)})

    def scan_then_rewrite(ws):  # makes the race certain: the job replaces the file between stat and read
        found = scan.scan_jobs(ws)
        job.write_metrics("train", loss_rows(0, 10, shift=1.0))
        return found

    monkeypatch.setattr(db, "scan_jobs", scan_then_rewrite)
    ingest(workspace, warn=pytest.fail)
    monkeypatch.undo()
    assert ingest(workspace, warn=pytest.fail)["files"] == 1  # the new stamp differs: read again
    assert store_rows(workspace) == files_on_disk(workspace)


V1_SCHEMA = """
CREATE TABLE specs (spec_name VARCHAR PRIMARY KEY, path VARCHAR, text VARCHAR, recorded_at DOUBLE);
CREATE TABLE spec_jobs (spec_name VARCHAR, job_id VARCHAR, stage VARCHAR, PRIMARY KEY (spec_name, job_id, stage));
CREATE TABLE jobs (job_id VARCHAR PRIMARY KEY, kind VARCHAR, stage VARCHAR, config JSON, upstream JSON, sweep JSON,
    status VARCHAR, started DOUBLE, finished DOUBLE, wall_s DOUBLE, host VARCHAR, threads INTEGER,
    attempt INTEGER, scheduler_id VARCHAR, error VARCHAR);
CREATE TABLE metrics (job_id VARCHAR, step BIGINT, name VARCHAR, value DOUBLE, PRIMARY KEY (job_id, step, name));
CREATE TABLE ingested_files (path VARCHAR PRIMARY KEY, size BIGINT, mtime DOUBLE);
CREATE VIEW train_curves AS SELECT * FROM metrics;
"""


def test_a_version_1_store_is_upgraded_in_place(tmp_path):
    workspace = tmp_path / "runs"
    job = finished_job(workspace, "1" * 16, {"train": loss_rows(0, 20)})
    path = job.metrics_dir / "train.parquet"
    with duckdb.connect(str(workspace / "specc.duckdb")) as con:  # as the first version left it
        con.execute(V1_SCHEMA)
        con.execute("INSERT INTO metrics SELECT '1111111111111111', step, name, value FROM read_parquet(?)", [str(path)])
        con.execute("INSERT INTO ingested_files VALUES (?, ?, ?)", [str(path), path.stat().st_size,
                                                                    path.stat().st_mtime])
    ingest(workspace, warn=pytest.fail)
    assert store_rows(workspace) == files_on_disk(workspace)
    assert query(workspace, "SELECT value FROM store_info WHERE key = 'schema_version'")[1] == [("3",)]
    assert query(workspace, "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'metrics'")[1] == [(0,)]
    columns = query(workspace, "SELECT column_name FROM duckdb_columns() WHERE table_name = 'spec_jobs'")[1]
    assert {"sweep", "replicate"} <= {c for (c,) in columns}  # version 2 -> 3: per-spec sweep labels
    assert query(workspace, "SELECT count(*) FROM train_curves")[1] == [(0,)]  # views rebuilt (no spec_jobs yet)
    assert ingest(workspace, warn=pytest.fail)["files"] == 0


def documented() -> dict[str, list[str]]:
    """`name` -> columns, from the markdown tables of docs/store.md."""
    found = {}
    for line in DOCS.read_text().splitlines():
        match = re.match(r"\| `(\w+)` \| .+ \| ([\w, ]+) \|$", line)
        if match:
            found[match.group(1)] = [c.strip() for c in match.group(2).split(",")]
    return found


def test_every_table_and_view_is_documented_with_its_columns(tmp_path):
    workspace = tmp_path / "runs"
    finished_job(workspace, "2" * 16, {"train": loss_rows(0, 2)})
    ingest(workspace, warn=pytest.fail)
    with connect(workspace, read_only=True) as con:
        actual = {name: [row[0] for row in con.execute(f"DESCRIBE {name}").fetchall()] for name in [*TABLES, *VIEWS]}
    assert documented() == actual
