"""Ingest speed: job dirs holding 1,000,000 metric rows -> the DuckDB store.

    python benchmarks/bench_ingest.py [--jobs 200] [--rows-per-job 5000] [--files-per-job 10]

Builds job dirs like real jobs leave them (job.json, status.json, DONE, several metrics/*.parquet
per job: a training flush per eval interval), then times, in the same run:

  baseline   DuckDB alone counting the same files: SELECT count(*) FROM read_parquet([...])
  decode     DuckDB alone decoding every value of them (sum over all columns)
  ingest     specc.store.db.ingest into a fresh store (target: < 2 s)
  no-op      a second ingest, where nothing changed (reads the manifest, stats the files)
  touch 1%   after rewriting 1% of the files, as resumed jobs do

and prints rows/s and the ratios against the baselines. Exit code 1 if the target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from specc.store.db import connect, ingest

TARGET_S = 2.0
METRIC_NAMES = ["train/loss", "train/margin_mean", "train/margin_std", "train/logp_chosen", "train/logp_rejected"]


def build_workspace(root: Path, jobs: int, rows_per_job: int, files_per_job: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    steps_per_job = rows_per_job // len(METRIC_NAMES)
    steps_per_file = steps_per_job // files_per_job
    files = []
    for j in range(jobs):
        job_id = f"{j:016x}"
        job_dir = root / "jobs" / job_id
        (job_dir / "metrics").mkdir(parents=True)
        (job_dir / "job.json").write_text(json.dumps({
            "id": job_id, "stage": "offline", "kind": "align", "upstream": {"init": "0" * 16},
            "sweep": {"offline.loss.beta": 0.1}, "config": {"loss": {"name": "ipo", "beta": 0.1},
                                                            "model": {"size": "S"}, "train": {"steps": steps_per_job}}}))
        (job_dir / "status.json").write_text(json.dumps({"state": "done", "host": "bench", "threads": 1,
                                                         "started": 0.0, "finished": 1.0, "wall_s": 1.0, "attempt": 1}))
        for f in range(files_per_job):
            steps = np.arange(f * steps_per_file, (f + 1) * steps_per_file, dtype=np.int64)
            table = pa.table({"step": np.repeat(steps, len(METRIC_NAMES)),
                              "name": pa.array(METRIC_NAMES * len(steps), pa.string()),
                              "value": rng.standard_normal(len(steps) * len(METRIC_NAMES))})
            path = job_dir / "metrics" / f"train-{f * steps_per_file:08d}-{(f + 1) * steps_per_file:08d}.parquet"
            pq.write_table(table, path)
            files.append(path)
        (job_dir / "DONE").write_text("{}")
    return files


CPU_S: dict[str, float] = {}  # CPU seconds of this process (all threads) per timed step


def timed(fn, label: str = ""):
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    CPU_S[label] = time.process_time() - cpu
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rows-per-job", type=int, default=5000)
    parser.add_argument("--files-per-job", type=int, default=10)
    parser.add_argument("--dir", type=Path, help="where to build the workspace (default: a temp dir, removed after)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench_ingest_", dir=args.dir))
    try:
        build_s, files = timed(lambda: build_workspace(root, args.jobs, args.rows_per_job, args.files_per_job))
        expected = args.jobs * (args.rows_per_job // len(METRIC_NAMES) // args.files_per_job) * args.files_per_job \
            * len(METRIC_NAMES)
        names = [str(f) for f in files]
        bare = duckdb.connect()
        bare.execute("SELECT count(*) FROM read_parquet(?)", [names]).fetchall()  # warm the page cache once
        base_s, counted = timed(lambda: bare.execute("SELECT count(*) FROM read_parquet(?)", [names]).fetchall()[0][0],
                                "baseline")
        decode_s, _ = timed(lambda: bare.execute(
            "SELECT sum(step), sum(length(name)), sum(value) FROM read_parquet(?)", [names]).fetchall(), "decode")
        assert counted == expected, (counted, expected)

        warnings: list[str] = []
        load = os.getloadavg()[0]
        ingest_s, counts = timed(lambda: ingest(root, warn=warnings.append), "ingest")
        noop_s, noop = timed(lambda: ingest(root, warn=warnings.append), "no-op")
        touched = files[:: 100]
        for path in touched:  # a resumed job rewrites its files under the same names
            table = pq.read_table(path)
            pq.write_table(table.set_column(2, "value", pa.compute.add(table["value"], 1.0)), path)
        touch_s, touch = timed(lambda: ingest(root, warn=warnings.append), "touch")
        with connect(root) as con:
            stored, keys = con.execute("SELECT count(*), count(DISTINCT (job_id, step, name)) FROM metrics").fetchall()[0]
    finally:
        shutil.rmtree(root, ignore_errors=True)

    ok = ingest_s < TARGET_S and stored == keys == expected and counts["rows"] == expected and noop["files"] == 0 \
        and not warnings
    print(f"workspace: {args.jobs} jobs x {args.rows_per_job} rows in {args.files_per_job} files each "
          f"= {expected:,} rows, {len(files)} files (built in {build_s:.1f} s); {os.cpu_count()} cpus, "
          f"load average {load:.1f} before ingesting, duckdb {duckdb.__version__}")
    print("                                       wall        cpu")
    print(f"baseline  count(*) read_parquet   {base_s:7.3f} s  {CPU_S['baseline']:7.3f} s")
    print(f"decode    sum over every column   {decode_s:7.3f} s  {CPU_S['decode']:7.3f} s")
    print(f"ingest    fresh store             {ingest_s:7.3f} s  {CPU_S['ingest']:7.3f} s  "
          f"{expected / ingest_s:10,.0f} rows/s  = {ingest_s / base_s:.1f}x baseline, {ingest_s / decode_s:.1f}x decode")
    print(f"no-op     second ingest           {noop_s:7.3f} s  {CPU_S['no-op']:7.3f} s  ({noop['files']} files read)")
    print(f"touch 1%  {len(touched)} files rewritten      {touch_s:7.3f} s  {CPU_S['touch']:7.3f} s  "
          f"({touch['files']} files, {touch['rows']:,} rows replaced)")
    print(f"store: {stored:,} rows, {keys:,} distinct keys, {len(warnings)} warnings")
    print(f"target: ingest < {TARGET_S:.1f} s wall -> {'met' if ok else 'MISSED'}"
          + ("" if ok or load < os.cpu_count() else f" (the machine was busy: load {load:.1f} on {os.cpu_count()} cpus)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
