"""The results store: one DuckDB file per workspace, filled from job dirs by a single writer.

Jobs never open the database. `ingest` reads their files (status, metrics
parquet) in one transaction; metric rows are keyed by (job_id, step, name)
and replaced on conflict, so ingesting a file twice, or a resumed job that
rewrote a file, never counts a row twice. Readers open the file read-only.
"""

from __future__ import annotations

import json
import random
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb

from specc.store.schema import SCHEMA, VIEWS

DB_NAME = "specc.duckdb"


def db_path(workspace: Path) -> Path:
    return Path(workspace) / DB_NAME


@contextmanager
def connect(workspace: Path, *, read_only: bool = False, attempts: int = 40):
    """Open the store; retries with backoff while another process holds the write lock."""
    path = db_path(workspace)
    if read_only and not path.exists():
        raise FileNotFoundError(f"no results store at {path}: run a spec first (specc run SPEC)")
    path.parent.mkdir(parents=True, exist_ok=True)
    delay = 0.02
    for attempt in range(attempts):
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or attempt == attempts - 1:
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 1.0)
    try:
        if not read_only:
            con.execute(SCHEMA)
            con.execute(VIEWS)
        yield con
    finally:
        con.close()


def record_spec(workspace: Path, plan) -> None:
    """Remember which jobs (by stage) make up a spec, replacing its previous set."""
    with connect(workspace) as con:
        con.execute("BEGIN")
        con.execute("DELETE FROM spec_jobs WHERE spec_name = ?", [plan.spec.name])
        con.execute("INSERT OR REPLACE INTO specs VALUES (?, ?, ?, ?)",
                    [plan.spec.name, plan.spec_path, plan.spec_text, time.time()])
        con.executemany("INSERT OR REPLACE INTO spec_jobs VALUES (?, ?, ?)",
                        [[plan.spec.name, job.id, job.stage] for job in plan.jobs])
        con.execute("COMMIT")


def ingest(workspace: Path, warn=print) -> dict:
    """Ingest every job dir under the workspace; returns counts of what changed."""
    jobs_root = Path(workspace) / "jobs"
    job_rows, files = [], []
    for job_path in sorted(p for p in jobs_root.glob("*") if (p / "job.json").exists()):
        try:
            job = json.loads((job_path / "job.json").read_text())
            status = json.loads((job_path / "status.json").read_text()) if (job_path / "status.json").exists() else {}
        except json.JSONDecodeError as exc:
            warn(f"skipping {job_path}: unreadable job file ({exc})")
            continue
        state = "done" if (job_path / "DONE").exists() else status.get("state", "pending")
        job_rows.append([job["id"], job["kind"], job["stage"], json.dumps(job["config"]), json.dumps(job["upstream"]),
                         json.dumps(job["sweep"]), state, status.get("started"), status.get("finished"),
                         status.get("wall_s"), status.get("host"), status.get("threads"), status.get("attempt"),
                         status.get("slurm_job_id"), status.get("error")])
        files += [(job["id"], f) for f in sorted((job_path / "metrics").glob("*.parquet"))]
    with connect(workspace) as con:
        seen = {path: (size, mtime) for path, size, mtime in con.execute("SELECT * FROM ingested_files").fetchall()}
        fresh = [(job_id, f) for job_id, f in files if seen.get(str(f)) != _stamp(f)]
        con.execute("BEGIN")
        con.executemany("INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", job_rows)
        rows = 0
        for job_id, f in fresh:
            try:
                rows += con.execute("INSERT OR REPLACE INTO metrics SELECT ?, step, name, value FROM read_parquet(?)",
                                    [job_id, str(f)]).fetchone()[0]
            except duckdb.Error as exc:
                warn(f"skipping {f}: not a complete parquet file yet ({str(exc).splitlines()[0]})")
                continue
            con.execute("INSERT OR REPLACE INTO ingested_files VALUES (?, ?, ?)", [str(f), *_stamp(f)])
        con.execute("COMMIT")
    return {"jobs": len(job_rows), "files": len(fresh), "rows": rows}


def _stamp(path: Path) -> tuple[int, float]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime


def query(workspace: Path, sql: str):
    """Run SQL read-only; returns (column names, rows)."""
    with connect(workspace, read_only=True) as con:
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return columns, cursor.fetchall()
