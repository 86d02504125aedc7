"""The results store: one DuckDB file per workspace, filled from job dirs by a single writer.

Jobs never open the database. `ingest` reads their files (job.json, status.json, metrics
parquet) and writes them in one transaction. Metric rows are unique on (job_id, step, name):
each batch is deduplicated (the newest file wins) and replaces the rows it overlaps, so
ingesting a file twice, or a resumed job that rewrote a file, never counts a row twice.
A manifest (`ingested_files`) of the stamps seen makes a repeated ingest read only what
changed. A file that cannot be read yet (half written, corrupt) is skipped with a warning and
left out of the manifest, so the next ingest tries it again. Readers open the file read-only.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from specc.runtime.jobdir import JobDir
from specc.runtime.manifest import damage
from specc.store.readonly import read_only_statements
from specc.store.scan import JOB_COLUMNS, JOB_FILES, MetricFile, UnreadableFile, job_row, read_json, scan_jobs
from specc.store.schema import SCHEMA, SCHEMA_VERSION, VIEWS, views_sql

DB_NAME = "specc.duckdb"

_JOBS_SCHEMA = pa.schema([
    ("job_id", pa.string()), ("kind", pa.string()), ("stage", pa.string()), ("config", pa.string()),
    ("upstream", pa.string()), ("sweep", pa.string()), ("status", pa.string()), ("started", pa.float64()),
    ("finished", pa.float64()), ("wall_s", pa.float64()), ("host", pa.string()), ("threads", pa.int32()),
    ("attempt", pa.int32()), ("scheduler_id", pa.string()), ("error", pa.string())])
assert tuple(_JOBS_SCHEMA.names) == JOB_COLUMNS


# Readers never fetch or load DuckDB extensions (`read_parquet('https://...')` would install
# httpfs into ~/.duckdb): a query reads the store and local files, nothing else.
READER_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


def db_path(workspace: Path) -> Path:
    return Path(workspace) / DB_NAME


@contextmanager
def connect(workspace: Path, *, read_only: bool = False, wait_s: float = 120.0):
    """Open the store; retries with backoff, for up to `wait_s`, while another process holds the
    lock (DuckDB allows one writer, or any number of readers, per file at a time)."""
    path = db_path(workspace)
    if read_only and not path.exists():
        raise FileNotFoundError(f"no results store at {path}: run a spec first (specc run SPEC), "
                                f"or ingest job dirs (specc ingest {Path(workspace)})")
    path.parent.mkdir(parents=True, exist_ok=True)
    delay, deadline = 0.02, time.monotonic() + wait_s
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=READER_CONFIG if read_only else {})
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(delay * (0.5 + random.random()))  # jitter: waiting processes do not retry in step
            delay = min(delay * 2, 0.25)  # short: a waiting reader gets in soon after the writer closes
    try:
        if not read_only:
            _prepare(con)
        yield con
    finally:
        con.close()


def _prepare(con) -> None:
    """Create missing tables, upgrade an older store, (re)create the views if their SQL changed."""
    con.execute(SCHEMA)
    info = dict(con.execute("SELECT key, value FROM store_info").fetchall())
    if int(info.get("schema_version", 1)) < SCHEMA_VERSION:
        _upgrade(con)
    views = views_sql()
    digest = hashlib.sha256(views.encode()).hexdigest()
    if info.get("views_sha256") != digest:
        con.execute("BEGIN")
        con.execute(views)
        con.execute("INSERT OR REPLACE INTO store_info VALUES ('views_sha256', ?)", [digest])
        con.execute("COMMIT")


def _upgrade(con) -> None:
    """Version 1 stores kept a primary key on metrics and the manifest under workspace-joined paths;
    version 2 stores had no per-spec sweep labels or replicates (filled in when a spec is next run)."""
    for column in ("sweep JSON", "replicate VARCHAR"):
        con.execute(f"ALTER TABLE spec_jobs ADD COLUMN IF NOT EXISTS {column}")
    keyed = con.execute("""SELECT count(*) FROM duckdb_constraints()
                           WHERE table_name = 'metrics' AND constraint_type = 'PRIMARY KEY'""").fetchall()[0][0]
    con.execute("BEGIN")
    if keyed:
        for name in reversed(VIEWS):
            con.execute(f"DROP VIEW IF EXISTS {name}")
        con.execute("DELETE FROM store_info WHERE key = 'views_sha256'")  # recreate them
        con.execute("CREATE TABLE metrics_unkeyed AS SELECT job_id, step, name, value FROM metrics")
        con.execute("DROP TABLE metrics")
        con.execute("ALTER TABLE metrics_unkeyed RENAME TO metrics")
        con.execute("DELETE FROM ingested_files")  # paths are now workspace-relative: re-read once (idempotent)
    con.execute("INSERT OR REPLACE INTO store_info VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
    con.execute("COMMIT")


def record_spec(workspace: Path, plan) -> None:
    """Remember which jobs (by stage) make up a spec, replacing its previous set."""
    with connect(workspace) as con:
        con.execute("BEGIN")
        con.execute("DELETE FROM spec_jobs WHERE spec_name = ?", [plan.spec.name])
        con.execute("INSERT OR REPLACE INTO specs VALUES (?, ?, ?, ?)",
                    [plan.spec.name, plan.spec_path, plan.spec_text, time.time()])
        con.executemany("INSERT OR REPLACE INTO spec_jobs VALUES (?, ?, ?, ?, ?)",
                        [[plan.spec.name, job.id, job.stage, json.dumps(job.sweep), replicate(job)]
                         for job in plan.jobs])
        con.execute("COMMIT")


def replicate(job) -> str:
    """Which draw of the experiment a job belongs to: its own `train.seed` and every seed swept
    upstream of it (a sweep label ending in `seed` that is not the job's own stage's, e.g.
    `task.task.seed`). Runs of different methods with equal replicates share their data and
    seeds: the unit the report pairs and pools over."""
    seeds = {key: value for key, value in job.sweep.items()
             if key.rsplit(".", 1)[-1] == "seed" and not key.startswith(job.stage + ".")}
    train_seed = (job.config.get("train") or {}).get("seed")
    seeds["train.seed"] = "-" if train_seed is None else train_seed
    return ", ".join(f"{key}={value}" for key, value in sorted(seeds.items()))


def ingest(workspace: Path, warn=print) -> dict:
    """Ingest every job dir under `<workspace>/jobs`; returns counts: jobs (dirs seen), jobs_updated,
    files (metric files read), rows (metric rows written), skipped (files left for a later ingest)."""
    workspace = Path(workspace)
    jobs = scan_jobs(workspace)  # before taking the lock: readers wait only for the write
    with connect(workspace) as con:
        seen = {path: (size, mtime) for path, size, mtime in con.execute("SELECT * FROM ingested_files").fetchall()}
        batch = _Batch()
        for job in jobs:
            batch.add(job, seen, warn)
        files = batch.files
        try:
            rows = _write(con, batch, files)
        except duckdb.Error:
            # Some file the bulk read could not take: find which, warn, write the rest.
            files = [f for f in files if _readable(con, f, warn)]
            batch.skipped += len(batch.files) - len(files)
            try:
                rows = _write(con, batch, files)
            except duckdb.Error:
                rows = _write(con, batch, files, one_by_one=True)  # files that read alone but not together
    return {"jobs": len(jobs), "jobs_updated": len(batch.job_rows), "files": len(files), "rows": rows,
            "skipped": batch.skipped}


class _Batch:
    """What one ingest writes: changed job rows, fresh metric files, their manifest entries."""

    def __init__(self):
        self.job_rows: list[dict] = []  # replace the stored row
        self.partial_rows: list[dict] = []  # status.json unreadable: insert only if the job is new
        self.files: list[tuple[MetricFile, str]] = []  # (file, job id)
        self.stamps: dict[str, tuple] = {}  # manifest entries for job files read
        self.gone: list[str] = []  # manifest entries whose file no longer exists (DONE of a job re-run)
        self.damaged: list[str] = []  # job ids whose stored metrics are dropped
        self.skipped = 0

    def add(self, job, seen: dict, warn) -> None:
        fresh = [(f, job.job_id) for f in job.metrics if seen.get(f.rel) != f.stamp]
        if job.damage is None and job.stamps["DONE"] is not None and fresh:
            job.damage = damage(job.path, checksums=True, under="metrics/")  # the files about to be read
            if job.damage is not None:  # same size, other bytes: only a checksum sees it, so say it in the dir
                JobDir(job.path).mark_damaged(job.damage)
        if job.damage is not None:
            self._damaged(job, seen, warn)
            return
        if any(seen.get(job.rel_file(name)) != job.stamps[name] for name in JOB_FILES):
            if not self._read_job_files(job, seen, warn):
                return  # its metrics wait until job.json can be read: they need the job's row
        self.files += fresh

    def _damaged(self, job, seen: dict, warn) -> None:
        """A finished job whose files changed: none of its metrics are kept (never half a job), its
        row says damaged, and its files are forgotten so that they are read again once it reruns."""
        warn(f"job {job.job_id} is damaged ({job.damage}): its results are left out; specc run reruns it")
        self.damaged.append(job.job_id)
        self.gone += [path for path in seen if path.startswith(job.rel + "/")]
        try:
            job_json = read_json(job.path / "job.json")
            status = read_json(job.path / "status.json") if job.stamps["status.json"] else {}
            self.job_rows.append(job_row(job, job_json, status))
        except UnreadableFile as exc:
            warn(f"skipping {exc}")
            self.skipped += 1

    def _read_job_files(self, job, seen: dict, warn) -> bool:
        try:
            job_json = read_json(job.path / "job.json")
        except UnreadableFile as exc:
            warn(f"skipping {exc}; the next ingest tries it again")
            self.skipped += 1
            return False
        try:
            status = read_json(job.path / "status.json") if job.stamps["status.json"] else {}
        except UnreadableFile as exc:
            warn(f"skipping {exc}; job {job.job_id} keeps its last known status until it can be read")
            self.skipped += 1
            status = None
        try:
            row = job_row(job, job_json, status)
        except UnreadableFile as exc:
            warn(f"skipping {exc}")
            self.skipped += 1
            return False
        (self.job_rows if status is not None else self.partial_rows).append(row)
        for name in JOB_FILES:
            rel = job.rel_file(name)
            if name == "status.json" and status is None:
                continue  # not recorded: read again next time
            if job.stamps[name] is not None:
                self.stamps[rel] = job.stamps[name]
            elif rel in seen:
                self.gone.append(rel)
        return True


def _write(con, batch: _Batch, files: list[tuple[MetricFile, str]], one_by_one: bool = False) -> int:
    """One transaction: job rows, metric rows, manifest. Rolls back and re-raises on any error."""
    # Oldest first: where two files hold the same key, the one written last wins.
    files = sorted(files, key=lambda item: (item[0].stamp[1], item[0].rel))
    con.execute("BEGIN")
    try:
        if batch.job_rows:
            _register(con, "_job_rows", pa.Table.from_pylist(batch.job_rows, schema=_JOBS_SCHEMA))
            con.execute("INSERT OR REPLACE INTO jobs SELECT * FROM _job_rows")
        if batch.partial_rows:
            _register(con, "_job_rows", pa.Table.from_pylist(batch.partial_rows, schema=_JOBS_SCHEMA))
            con.execute("INSERT OR IGNORE INTO jobs SELECT * FROM _job_rows")
        if batch.damaged:
            con.execute("DELETE FROM metrics WHERE list_contains(?, job_id)", [batch.damaged])
        groups = [[item] for item in files] if one_by_one else [files]
        rows = sum(_upsert_metrics(con, group) for group in groups if group)
        manifest = {**batch.stamps, **{f.rel: f.stamp for f, _ in files}}
        if manifest:
            _register(con, "_manifest", pa.table({"path": list(manifest), "size": [s[0] for s in manifest.values()],
                                                  "mtime": [s[1] for s in manifest.values()]}))
            con.execute("INSERT OR REPLACE INTO ingested_files SELECT path, size, mtime FROM _manifest")
        if batch.gone:
            con.execute("DELETE FROM ingested_files WHERE list_contains(?, path)", [batch.gone])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return rows


def _upsert_metrics(con, files: list[tuple[MetricFile, str]]) -> int:
    """Read `files` (oldest first) in one scan; keep one row per key (the last written); replace
    the stored rows with the same keys. Returns the number of rows written."""
    _register(con, "_fresh", pa.table({"file_index": pa.array(range(len(files)), pa.int64()),
                                       "job_id": [job_id for _, job_id in files]}))
    batch = """
        SELECT f.job_id, p.step::BIGINT AS step, p.name::VARCHAR AS name, p.value::DOUBLE AS value
        FROM read_parquet($files, file_row_number = true) p JOIN _fresh f ON p.file_index = f.file_index
        WHERE p.step IS NOT NULL AND p.name IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY f.job_id, p.step, p.name
                                   ORDER BY p.file_index DESC, p.file_row_number DESC) = 1"""
    paths = {"files": [str(f.path) for f, _ in files]}
    stored = con.execute("SELECT count(*) FROM (SELECT 1 FROM metrics WHERE job_id IN (SELECT job_id FROM _fresh) "
                         "LIMIT 1)").fetchall()[0][0]
    if not stored:  # only new jobs (a first ingest): nothing to replace
        return con.execute(f"INSERT INTO metrics {batch}", paths).fetchall()[0][0]
    con.execute(f"CREATE OR REPLACE TEMP TABLE _batch AS {batch}", paths)
    con.execute("DELETE FROM metrics m USING _batch b WHERE m.job_id = b.job_id AND m.step = b.step "
                "AND m.name = b.name")
    rows = con.execute("INSERT INTO metrics SELECT job_id, step, name, value FROM _batch").fetchall()[0][0]
    con.execute("DROP TABLE _batch")
    return rows


def _readable(con, item: tuple[MetricFile, str], warn) -> bool:
    """Whether one metric file reads in full with the expected columns (hashing every value forces
    every page to be decoded; a count alone could come from the footer)."""
    file, _ = item
    try:
        con.execute("SELECT count(*), sum(hash(step::BIGINT, name::VARCHAR, value::DOUBLE)) FROM read_parquet(?)",
                    [str(file.path)]).fetchall()
        return True
    except duckdb.Error as exc:
        warn(f"skipping {file.path}: not (yet) a complete metrics file with step, name, value "
             f"({str(exc).splitlines()[0]}); the next ingest tries it again")
        return False


def _register(con, name: str, table: pa.Table) -> None:
    con.unregister(name)
    con.register(name, table)


def query(workspace: Path, sql: str):
    """Run read-only SQL; returns (column names, rows) of the last statement. Raises WriteRefused
    (a UserError) for a statement that would change anything, FileNotFoundError without a store."""
    statements = read_only_statements(sql)
    with connect(workspace, read_only=True) as con:
        for statement in statements[:-1]:
            con.execute(statement).fetchall()
        cursor = con.execute(statements[-1])
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return columns, cursor.fetchall()


def query_arrow(workspace: Path, sql: str) -> pa.Table:
    """Like `query`, as an Arrow table (keeps column types, e.g. for parquet export)."""
    statements = read_only_statements(sql)
    with connect(workspace, read_only=True) as con:
        for statement in statements[:-1]:
            con.execute(statement).fetchall()
        relation = con.sql(statements[-1])  # None for a statement without a result
        return relation.to_arrow_table() if relation is not None else pa.table({})
