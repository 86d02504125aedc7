"""Jobs write while the store ingests and readers query: nothing lost, nothing counted twice.

Real processes throughout: 10 job-like processes (tests/store/jobs.py, writing with the
runtime's atomic JobDir helpers), one read-only query process (tests/store/reader.py), and this
process ingesting in a loop, all against one real DuckDB file."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from specc.store.db import ingest, query
from tests.store.jobs import files_on_disk, make_job, store_rows

HERE = Path(__file__).parent
JOBS = 10


def test_ingest_while_jobs_write_and_readers_query(tmp_path):
    workspace = tmp_path / "runs"
    job_ids = [f"{i:04x}{'ab' * 6}" for i in range(JOBS)]
    for job_id in job_ids:
        make_job(workspace, job_id)
    writers = [subprocess.Popen([sys.executable, str(HERE / "jobs.py"), str(workspace / "jobs" / job_id),
                                 "--files", str(6 + i % 4), "--pause", str(0.15 + 0.05 * (i % 3))],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i, job_id in enumerate(job_ids)]
    stop, seen_file = tmp_path / "stop", tmp_path / "reader.json"
    reader = subprocess.Popen([sys.executable, str(HERE / "reader.py"), str(workspace), str(stop), str(seen_file)],
                              stderr=subprocess.PIPE, text=True)

    warnings, ingests, rows_while_running = [], 0, 0
    deadline = time.monotonic() + 120
    while any(w.poll() is None for w in writers):
        assert time.monotonic() < deadline, "job processes did not finish"
        counts = ingest(workspace, warn=warnings.append)
        ingests += 1
        if any(w.poll() is None for w in writers):
            rows_while_running += counts["rows"]
        time.sleep(0.1)
    for w in writers:
        out, err = w.communicate()
        assert w.returncode == 0, err
    final = ingest(workspace, warn=warnings.append)
    stop.touch()  # the reader queries once more, then reports
    assert reader.wait(timeout=300) == 0, reader.stderr.read()

    assert warnings == []  # jobs write atomically: no half file is ever visible
    assert ingests >= 3 and rows_while_running > 0, "ingestion did not overlap the jobs' writing"
    expected = files_on_disk(workspace)
    assert store_rows(workspace) == expected  # exact: no loss, no duplicates, rewritten values won
    _, [(n_rows, n_keys, n_done)] = query(workspace, """
        SELECT (SELECT count(*) FROM metrics), (SELECT count(DISTINCT (job_id, step, name)) FROM metrics),
               (SELECT count(*) FROM jobs WHERE status = 'done')""")
    assert n_rows == n_keys == len(expected) and n_done == JOBS
    assert ingest(workspace, warn=warnings.append)["files"] == 0  # nothing left to read
    assert final["skipped"] == 0

    seen = json.loads(seen_file.read_text())
    assert seen["errors"] == []
    observations = seen["seen"]
    assert len(observations) >= 3, "the reader hardly ever got the store"
    assert all(total == distinct for total, distinct in observations), "a reader saw duplicate keys"
    totals = [total for total, _ in observations]
    assert totals == sorted(totals), "a reader saw the row count go down"
    assert totals[-1] == len(expected)
