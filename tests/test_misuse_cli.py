"""The CLI under misuse: bad output paths and workspaces, queries that would reach out, a failure summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from specc.store.db import ingest
from tests.store.jobs import finished_job

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "specs" / "quickstart.yaml"


def specc(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-c", "from specc.cli import main; main()", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("misuse") / "runs"
    finished_job(workspace, "a" * 16, {"train-00000000-00000002": [(1, "train/loss", 0.5), (2, "train/loss", 0.25)]})
    ingest(workspace, warn=pytest.fail)
    return workspace


@pytest.mark.parametrize("args, message", [
    (["query", "select 1", "-o", "/dev/null/dir/x.csv"], "--output /dev/null/dir/x.csv: /dev/null is not a directory"),
    (["query", "select 1", "-f", "parquet", "-o", "/dev/null/x.parquet"], "/dev/null is not a directory"),
    (["query", "select 1", "-o", "/proc/x.csv"], "cannot write /proc/x.csv"),
    (["query", "select 1", "-o", "/proc/new/x.csv"], "cannot make the folder /proc/new"),
    (["query", "select 1", "-o", "."], "is a directory"),
    (["report", QUICKSTART, "-o", "/dev/null/r.html"], "/dev/null is not a directory"),
    (["report", QUICKSTART, "-w", "/dev/null"], "/dev/null is not a directory"),
    (["run", QUICKSTART, "-w", "/dev/null"], "/dev/null is not a directory"),
    (["status", QUICKSTART, "-w", "/dev/null/runs"], "/dev/null is not a directory"),
    (["schema", "-o", "/dev/null/schema.json"], "/dev/null is not a directory"),
])
def test_bad_paths_are_user_errors_without_a_traceback(workspace, args, message, monkeypatch, capsys):
    from specc.cli import main

    if args[0] == "query" or (args[0] == "report" and "-w" not in args):
        args = [*args, "-w", workspace]
    monkeypatch.setattr(sys, "argv", ["specc", *map(str, args)])
    with pytest.raises(SystemExit) as exit_:  # main() is what the `specc` script runs
        main()
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_query_never_installs_or_loads_extensions(workspace, tmp_path):
    import os

    env = {**os.environ, "HOME": str(tmp_path)}
    proc = specc("query", "select * from read_parquet('https://example.invalid/x.parquet')", "-w", workspace,
                 cwd=tmp_path, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "httpfs" in proc.stderr
    assert not (tmp_path / ".duckdb").exists()  # no extension was downloaded or even looked for


def test_query_returns_timestamps_with_time_zone(workspace):
    proc = specc("query", "select timestamptz '2024-05-01 12:00:00+00' as t, now() is not null as ok",
                 "-f", "csv", "-w", workspace, cwd=workspace.parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].startswith("2024-05-01 12:00:00") and proc.stdout.strip().endswith("True")
