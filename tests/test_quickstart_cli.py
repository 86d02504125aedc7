"""The walking skeleton through the real CLI: run, re-run (all cached), query, report."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "specs" / "quickstart.yaml"
SMALL = ["--profile", "smoke"]


def specc(*args, cwd, check=True):
    proc = subprocess.run([sys.executable, "-c", "from specc.cli import main; main()", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"specc {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("quickstart")
    first = specc("run", QUICKSTART, *SMALL, "--workspace", cwd / "runs", cwd=cwd)
    return cwd, first


def test_run_executes_every_job_and_writes_outputs(quickstart_run):
    cwd, first = quickstart_run
    jobs = list((cwd / "runs" / "jobs").iterdir())
    assert jobs and all((j / "DONE").exists() for j in jobs)
    assert "0 failed" in first.stdout
    assert (cwd / "runs" / "specc.duckdb").exists()


def test_second_run_does_no_training(quickstart_run):
    cwd, _ = quickstart_run
    started = time.time()
    again = specc("run", QUICKSTART, *SMALL, "--workspace", cwd / "runs", "--no-report", cwd=cwd)
    assert "every job already done" in again.stdout
    assert re.search(r"\b0 ran\b", again.stdout)
    assert "started" not in again.stdout
    assert time.time() - started < 30


def test_query_returns_the_runs_metric_rows(quickstart_run):
    cwd, _ = quickstart_run
    out = specc("query", "select count(*) as n from metrics", "--workspace", cwd / "runs", "--format", "json", cwd=cwd)
    n = json.loads(out.stdout)[0]["n"]
    on_disk = sum(len(__import__("pyarrow.parquet", fromlist=["x"]).read_table(f))
                  for f in (cwd / "runs" / "jobs").glob("*/metrics/*.parquet"))
    assert n == on_disk > 0


def test_report_has_kl_vs_winrate_chart_with_points(quickstart_run):
    cwd, _ = quickstart_run
    html = (cwd / "runs" / "reports" / "quickstart.html").read_text()
    assert "<script src=" not in html  # vega is inlined: no network needed
    figure = re.search(r'<div class="figure" id="figure-(\d+)" data-name="kl_vs_winrate">.*?data-points="(\d+)"', html, re.S)
    assert figure, "the KL vs win-rate figure is missing"
    assert int(figure.group(2)) > 0  # rows fed to the chart (the browser tests check that marks are drawn)
