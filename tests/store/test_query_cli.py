"""`specc query` through the real CLI (a subprocess): reads only, formats, --views, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from specc.store.db import ingest, query
from specc.store.readonly import WriteRefused
from specc.store.schema import VIEWS
from tests.store.jobs import finished_job

ROWS = [(step, "train/loss", step / 10) for step in range(20)]


def specc(*args, cwd):
    return subprocess.run([sys.executable, "-c", "from specc.cli import main; main()", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("query") / "runs"
    finished_job(workspace, "a" * 16, {"train-00000000-00000020": ROWS})
    finished_job(workspace, "b" * 16, {"train-00000000-00000020": ROWS})
    ingest(workspace, warn=pytest.fail)
    return workspace


def fingerprint(workspace):
    return query(workspace, """SELECT (SELECT count(*) FROM metrics), (SELECT sum(value * step) FROM metrics),
                                      (SELECT count(*) FROM jobs), (SELECT count(*) FROM duckdb_tables()),
                                      (SELECT count(*) FROM duckdb_views() WHERE NOT internal)""")[1]


WRITES = ["delete from metrics", "insert into metrics values ('x', 1, 'train/loss', 1.0)", "update metrics set value = 0",
          "drop table metrics", "create table copy_of_metrics as select * from metrics", "attach 'other.duckdb' as other",
          "copy metrics to 'dump.csv'", "select 1; delete from metrics"]
MORE_WRITES = ["DELETE FROM metrics WHERE step > 3", "drop view runs", "create temp table scratch as select 1",
               "alter table metrics add column extra int", "copy (select * from metrics) to 'dump.parquet' (format parquet)",
               "explain analyze delete from metrics", "checkpoint", "install httpfs", "set threads = 1",
               "export database 'dump'", "detach other", "vacuum", "begin"]
READS = ["select count(*) from metrics", "with m as (select * from metrics) select count(*) from m", "describe metrics",
         "show tables", "summarize metrics", "explain select * from runs", "pragma table_info('metrics')",
         "from metrics limit 1", "select 1; select 2"]


@pytest.mark.parametrize("sql", WRITES)
def test_writes_are_refused_with_exit_2_and_change_nothing(workspace, sql, tmp_path):
    before = fingerprint(workspace)
    proc = specc("query", sql, "--workspace", workspace, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "refused" in proc.stderr and "only reads" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert fingerprint(workspace) == before
    assert list(tmp_path.iterdir()) == []  # no dump.csv, no other.duckdb


def test_every_other_kind_of_write_is_refused_in_process(workspace, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = fingerprint(workspace)
    for sql in MORE_WRITES:
        with pytest.raises(WriteRefused, match="only reads"):
            query(workspace, sql)
    assert fingerprint(workspace) == before and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sql", READS)
def test_reading_statements_run(workspace, sql):
    columns, _ = query(workspace, sql)
    assert columns


def test_formats(workspace, tmp_path):
    sql = "select job_id, step, value from metrics where step < 3 order by job_id, step"
    csv = specc("query", sql, "-w", workspace, "-f", "csv", cwd=tmp_path)
    assert csv.returncode == 0 and csv.stdout.splitlines()[:2] == ["job_id,step,value", f"{'a' * 16},0,0.0"]
    as_json = json.loads(specc("query", sql, "-w", workspace, "-f", "json", cwd=tmp_path).stdout)
    assert as_json[1] == {"job_id": "a" * 16, "step": 1, "value": 0.1} and len(as_json) == 6
    table = specc("query", sql, "-w", workspace, cwd=tmp_path)
    assert table.returncode == 0 and "job_id" in table.stdout and "a" * 16 in table.stdout

    out = tmp_path / "out" / "rows.parquet"
    proc = specc("query", sql, "-w", workspace, "-f", "parquet", "-o", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert pq.read_table(out).to_pylist() == as_json  # types kept: step int64, value double
    proc = specc("query", sql, "-w", workspace, "-f", "csv", "--output", tmp_path / "rows.csv", cwd=tmp_path)
    assert proc.returncode == 0 and (tmp_path / "rows.csv").read_text() == csv.stdout


def test_parquet_needs_an_output_file_and_unknown_formats_are_named(workspace, tmp_path):
    proc = specc("query", "select 1", "-w", workspace, "-f", "parquet", cwd=tmp_path)
    assert proc.returncode == 2 and "--output" in proc.stderr and "Traceback" not in proc.stderr
    proc = specc("query", "select 1", "-w", workspace, "-f", "xml", cwd=tmp_path)
    assert proc.returncode == 2 and "table, csv, json, parquet" in proc.stderr


def test_views_lists_every_view_with_its_description(tmp_path):
    proc = specc("query", "--views", cwd=tmp_path)  # needs no store
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(VIEWS)
    for line, (description, _) in zip(lines, VIEWS.values()):
        assert line.endswith(description)


def test_a_missing_store_is_a_clear_error(tmp_path):
    proc = specc("query", "select * from runs", "--workspace", tmp_path / "nowhere", cwd=tmp_path)
    assert proc.returncode == 2 and "no results store" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "nowhere").exists()  # reading never creates a store


def test_a_bad_query_is_a_clear_error(workspace, tmp_path):
    for sql in ("selec 1", "select * from no_such_table"):
        proc = specc("query", sql, "-w", workspace, cwd=tmp_path)
        assert proc.returncode == 2 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr


def test_ingest_command(workspace, tmp_path):
    proc = specc("ingest", workspace, cwd=tmp_path)
    assert proc.returncode == 0 and "ingested 0 new files" in proc.stdout, proc.stdout + proc.stderr
    proc = specc("ingest", tmp_path / "nowhere", cwd=tmp_path)
    assert proc.returncode == 2 and "no job dirs" in proc.stderr and "Traceback" not in proc.stderr
