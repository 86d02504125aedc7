"""Job dirs as the runtime leaves them, written with the runtime's own JobDir (atomic writes),
for store tests. Also run as a script: one job-like process (see `main`)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from specc.runtime.jobdir import JobDir, atomic_write_json
from specc.store.db import connect


def make_job(workspace: Path, job_id: str, *, stage: str = "offline", kind: str = "align", config: dict | None = None,
             upstream: dict | None = None, sweep: dict | None = None) -> JobDir:
    """The runner's part: the job dir and its job.json, written before the job starts."""
    job = JobDir(Path(workspace) / "jobs" / job_id)
    atomic_write_json(job.file("job.json"), {
        "id": job_id, "stage": stage, "kind": kind, "config": config or {}, "upstream": upstream or {},
        "upstream_steps": {}, "sweep": sweep or {}})
    return job


def align_config(method: str, size: str = "S", beta: float = 0.1, shuffle: float | None = None) -> dict:
    sampler = {"online": {"online": "proxy"}, "offline": {"offline": "golden_data"},
               "replay": {"replay": "online", "shuffle": shuffle}}[method]
    return {"sampler": sampler, "model": {"family": "tiny", "size": size}, "loss": {"name": "ipo", "beta": beta},
            "train": {"lr": 3e-4, "seed": 0, "steps": 100}}


def finished_job(workspace: Path, job_id: str, metrics: dict[str, list[tuple[int, str, float]]], **job_fields) -> JobDir:
    job = make_job(workspace, job_id, **job_fields)
    job.mark_running(threads=1)
    for name, rows in metrics.items():
        job.write_metrics(name, rows)
    job.mark_done({"steps": 100})
    return job


def running_job(workspace: Path, job_id: str, metrics: dict[str, list[tuple[int, str, float]]], **job_fields) -> JobDir:
    """A job still training (or resumed): its metric files may still be rewritten."""
    job = make_job(workspace, job_id, **job_fields)
    job.mark_running(threads=1)
    for name, rows in metrics.items():
        job.write_metrics(name, rows)
    return job


def add_to_spec(workspace: Path, spec_name: str, jobs: dict[str, str]) -> None:
    """What `specc run` records before running: the spec's jobs (job id -> stage)."""
    with connect(workspace) as con:
        con.execute("INSERT OR REPLACE INTO specs VALUES (?, ?, ?, ?)", [spec_name, f"{spec_name}.yaml", "", 0.0])
        con.executemany("INSERT OR REPLACE INTO spec_jobs (spec_name, job_id, stage) VALUES (?, ?, ?)",
                        [[spec_name, job_id, stage] for job_id, stage in jobs.items()])


def files_on_disk(workspace: Path) -> dict[tuple[str, int, str], float]:
    """What the store must hold: every metric file's rows, keyed like the metrics table. Where two
    files hold one key (a resumed job's overlap) their values are equal, as on a bit-exact resume."""
    rows = {}
    for path in sorted(Path(workspace).glob("jobs/*/metrics/*.parquet")):
        table = pq.read_table(path)
        for step, name, value in zip(*(table.column(c).to_pylist() for c in ("step", "name", "value"))):
            key = (path.parents[1].name, step, name)
            assert rows.get(key, value) == value, f"{path}: {key} differs between files"
            rows[key] = value
    return rows


def store_rows(workspace: Path) -> dict[tuple[str, int, str], float]:
    with duckdb.connect(str(Path(workspace) / "specc.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT job_id, step, name, value FROM metrics").fetchall()
    keyed = {(j, s, n): v for j, s, n, v in rows}
    assert len(keyed) == len(rows), "duplicate (job_id, step, name) rows in the store"
    return keyed


def main() -> None:
    """One job-like process: marks itself running, flushes metric files over a few seconds
    (atomically, as real jobs do), rewrites its first file as a resumed job would, writes a file
    overlapping the previous one (a resume from an earlier checkpoint), then DONE."""
    parser = argparse.ArgumentParser()
    parser.add_argument("job_dir", type=Path)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--steps-per-file", type=int, default=50)
    parser.add_argument("--pause", type=float, default=0.25)
    args = parser.parse_args()
    job = JobDir(args.job_dir)
    job.mark_running(threads=1)
    seed = int(job.id, 16) % 1000
    names = ("train/loss", "train/margin_mean", "train/logp_chosen")

    def rows(first: int, last: int, shift: float = 0.0):
        return [(s, n, seed + s / 1000 + i + shift) for s in range(first, last) for i, n in enumerate(names)]

    per = args.steps_per_file
    for f in range(args.files):
        job.write_metrics(f"train-{f * per:08d}-{(f + 1) * per:08d}", rows(f * per, (f + 1) * per))
        job.write_metrics(f"eval-{(f + 1) * per:08d}", [((f + 1) * per, "eval/win_rate", 0.5 + f / 100)])
        time.sleep(args.pause)
    job.write_metrics(f"train-{0:08d}-{per:08d}", rows(0, per, shift=0.5))  # rewritten: new values win
    last = args.files * per
    job.write_metrics(f"train-{last - per // 2:08d}-{last:08d}", rows(last - per // 2, last))  # overlaps the last
    job.mark_done({"files": args.files})
    print(json.dumps({"job": job.id, "files": args.files}))


if __name__ == "__main__":
    main()
