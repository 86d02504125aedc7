"""What ingestion finds on disk: job dirs, their job/status files and metric files, with stamps.

A stamp is (size, mtime), taken *before* a file is read. If a job replaces the file after the
stamp was taken, the stamp recorded with the older content differs from the file's new one,
so the next ingest reads it again: a recorded stamp is never newer than what was read.
Paths are kept relative to the workspace, so a moved workspace or another spelling of its
path (`runs` vs `/abs/runs`) finds the same manifest entries.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from specc.runtime.jobdir import JobDir

Stamp = tuple[int, float]
JOB_FILES = ("job.json", "status.json", "DONE")

# The jobs table's columns, in order, filled from job.json and status.json.
JOB_COLUMNS = ("job_id", "kind", "stage", "config", "upstream", "sweep", "status", "started", "finished", "wall_s",
               "host", "threads", "attempt", "scheduler_id", "error")


@dataclass
class MetricFile:
    rel: str  # "jobs/<id>/metrics/<name>.parquet"
    path: Path
    stamp: Stamp


@dataclass
class JobScan:
    job_id: str  # the dir's name: the runner names each dir by its job's id
    path: Path
    rel: str  # "jobs/<id>"
    stamps: dict[str, Stamp | None]  # JOB_FILES -> stamp, None where the file does not exist
    metrics: list[MetricFile] = field(default_factory=list)
    damage: str | None = None  # a finished job whose result files no longer match its manifest

    def rel_file(self, name: str) -> str:
        return f"{self.rel}/{name}"


def stamp(path: Path | str) -> Stamp | None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_size, st.st_mtime


def scan_jobs(workspace: Path) -> list[JobScan]:
    """Every job dir with a job.json (a dir without one is still being created by the runner)."""
    root = Path(workspace) / "jobs"
    try:
        entries = sorted((e for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")),
                         key=lambda e: e.name)
    except FileNotFoundError:
        return []
    jobs = []
    for entry in entries:
        path = Path(entry.path)
        stamps = {name: stamp(path / name) for name in JOB_FILES}
        if stamps["job.json"] is None:
            continue
        job = JobScan(entry.name, path, f"jobs/{entry.name}", stamps)
        job.metrics = _metric_files(job)
        if stamps["DONE"] is not None or (path / "DAMAGED").exists():
            job.damage = JobDir(path).damage()  # sizes only; ingest reads the checksums of what it ingests
        jobs.append(job)
    return jobs


def _metric_files(job: JobScan) -> list[MetricFile]:
    try:
        entries = list(os.scandir(job.path / "metrics"))
    except FileNotFoundError:
        return []
    files = []
    # Temporary files of an atomic write start with "." and end in ".tmp": never read them.
    for entry in sorted(entries, key=lambda e: e.name):
        if entry.name.endswith(".parquet") and not entry.name.startswith("."):
            file_stamp = stamp(entry.path)
            if file_stamp is not None:  # removed since the listing
                files.append(MetricFile(f"{job.rel}/metrics/{entry.name}", Path(entry.path), file_stamp))
    return files


class UnreadableFile(Exception):
    """A job file that is missing a field, or is not (yet) complete JSON."""


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableFile(f"{path}: unreadable ({exc})") from None
    if not isinstance(value, dict):
        raise UnreadableFile(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def job_row(job: JobScan, job_json: dict, status: dict | None) -> dict:
    """The jobs table row of one job dir (status None: status.json unreadable); raises UnreadableFile
    when job.json lacks a field."""
    missing = [key for key in ("id", "kind", "stage", "config") if key not in job_json]
    if missing:
        raise UnreadableFile(f"{job.path / 'job.json'}: missing {', '.join(missing)}")
    if job_json["id"] != job.job_id:
        raise UnreadableFile(f"{job.path / 'job.json'}: id {job_json['id']!r} does not match its dir {job.job_id!r}")
    known = status or {}
    if job.damage is not None:
        state = "damaged"  # not done: `specc run` reruns it
    elif job.stamps["DONE"] is not None:
        state = "done"
    elif known.get("state") == "done":
        state = "damaged"  # status.json says done, but DONE is gone: not done, `specc run` finishes it again
    else:
        state = known.get("state") or ("unknown" if status is None else "pending")
    return {"job_id": job.job_id, "kind": str(job_json["kind"]), "stage": str(job_json["stage"]),
            "config": json.dumps(job_json["config"]), "upstream": json.dumps(job_json.get("upstream", {})),
            "sweep": json.dumps(job_json.get("sweep", {})), "status": str(state),
            "started": _number(known.get("started")), "finished": _number(known.get("finished")),
            "wall_s": _number(known.get("wall_s")), "host": _text(known.get("host")),
            "threads": _integer(known.get("threads")), "attempt": _integer(known.get("attempt")),
            "scheduler_id": _text(known.get("slurm_job_id")), "error": _text(known.get("error"))}


# status.json is written by jobs of any version: a field of an unexpected type becomes NULL
# rather than failing the whole ingest.
def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _integer(value) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value) -> str | None:
    return None if value is None else str(value)
