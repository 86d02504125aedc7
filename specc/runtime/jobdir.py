"""A job's directory: the only interface between the runner, the job and the store.

    <workspace>/jobs/<job id>/
        job.json            resolved config (written by the runner before submission)
        status.json         running | failed | done, host, pid, threads, timings, error
        log.txt             the job's own log
        metrics/*.parquet   rows (step, name, value); file names are deterministic, so a
                            resumed job rewrites the same files instead of adding copies
        artifacts/          weights (safetensors), datasets and streams (parquet)
        checkpoint/         the resume point (overwritten)
        MANIFEST.json       size and sha256 of every metrics/ and artifacts/ file, written at the end
        DONE                written last, by atomic rename: the job is complete (while the manifest holds)

Every file is written to a temporary name and renamed: a reader never sees half a file.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from specc.runtime.manifest import MANIFEST, damage, manifest_of

DONE = "DONE"
DAMAGED = "DAMAGED"  # a finished job's files changed since (seen by a checksum): rerun it
LOCK = ".lock"  # flock'd by the process running the job; the OS releases it when that process ends


class JobBusy(Exception):
    """Another process (another `specc run`, or a SLURM task) is running this job now."""


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write to a temporary name, then rename: a reader never sees half a file. `fsync=False`
    for records whose loss in a crash costs nothing (progress), written too often to sync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode())


def atomic_write_parquet(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def scheduler_id() -> str | None:
    """This SLURM task's id as submission recorded it and sacct / scancel name it: `<array>_<task>`
    for a task of a job array (SLURM_JOB_ID is then another number, unknown to sacct's -j)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


class JobDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def id(self) -> str:
        return self.path.name

    def file(self, *parts: str) -> Path:
        return self.path.joinpath(*parts)

    @property
    def artifacts(self) -> Path:
        return self.path / "artifacts"

    @property
    def metrics_dir(self) -> Path:
        return self.path / "metrics"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoint"

    @property
    def log_path(self) -> Path:
        return self.path / "log.txt"

    @contextmanager
    def lock(self):
        """Own the job while it runs: one process at a time, across runners and machines sharing
        the directory's file system. Raises JobBusy if another process holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise JobBusy(f"job {self.id} is being run by another process "
                              f"(pid {self.status().get('pid')} on {self.status().get('host')})") from None
            yield
        finally:
            os.close(fd)  # releases the lock

    def is_busy(self) -> bool:
        """Whether another process holds the job's lock now."""
        try:
            with self.lock():
                return False
        except JobBusy:
            return True

    def job_json(self) -> dict:
        """job.json: the job's id, stage, kind, resolved config, upstream job ids and sweep values."""
        return json.loads((self.path / "job.json").read_text())

    def is_done(self) -> bool:
        """DONE is written, and every result file it lists is still there, whole (see manifest)."""
        return (self.path / DONE).exists() and damage(self.path) is None

    def damage(self, checksums: bool = False) -> str | None:
        """Why a finished job is not done any more (a result file missing or changed), or None."""
        if (self.path / DAMAGED).exists():
            return (self.path / DAMAGED).read_text(errors="replace").strip() or "damaged"
        return damage(self.path, checksums=checksums) if (self.path / DONE).exists() else None

    def mark_damaged(self, reason: str) -> None:
        """A finished job whose files changed (seen by a checksum): no longer done, so it reruns."""
        atomic_write_bytes(self.path / DAMAGED, reason.encode())
        self.update_status(state="damaged")
        (self.path / DONE).unlink(missing_ok=True)

    def clear_results(self) -> None:
        """Remove a damaged job's outputs (not its job.json or status), so it reruns from scratch."""
        for name in (DONE, MANIFEST, DAMAGED):
            (self.path / name).unlink(missing_ok=True)
        for folder in ("metrics", "artifacts", "checkpoint"):
            shutil.rmtree(self.path / folder, ignore_errors=True)

    def status(self) -> dict:
        try:
            return json.loads((self.path / "status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def update_status(self, **fields) -> dict:
        status = {**self.status(), **fields}
        atomic_write_json(self.path / "status.json", status)
        return status

    def mark_running(self, threads: int, device: str = "cpu", precision: str = "float32") -> None:
        status = self.status()
        now = time.time()
        self.update_status(state="running", host=socket.gethostname(), pid=os.getpid(), threads=threads,
                           device=device, precision=precision, started=status.get("started") or now,
                           attempt_started=now, attempt=status.get("attempt", 0) + 1,
                           slurm_job_id=scheduler_id(), error=None, notes=[])

    # wall_s is the time the job ran, summed over its attempts: the time between a crash and
    # the rerun, or a pre-emption and the requeue, is not work (an attempt killed outright
    # records nothing, so it is not counted either).
    def _ran_s(self, status: dict, now: float) -> float:
        attempt = now - status["attempt_started"] if status.get("attempt_started") else 0.0
        return status.get("ran_s", 0.0) + attempt

    def mark_done(self, summary: dict) -> None:
        finished = time.time()
        wall = self._ran_s(self.status(), finished)
        self.update_status(state="done", finished=finished, wall_s=wall, ran_s=wall, attempt_started=None)
        atomic_write_json(self.path / MANIFEST, manifest_of(self.path))
        atomic_write_json(self.path / DONE, summary)

    def mark_failed(self, error: str) -> None:
        now = time.time()
        self.update_status(state="failed", finished=now, error=error, ran_s=self._ran_s(self.status(), now),
                           attempt_started=None)

    def mark_interrupted(self) -> None:
        """Stopped (pre-empted, Ctrl-C) mid-run: resumable, and the time so far counts."""
        now = time.time()
        self.update_status(state="interrupted", ran_s=self._ran_s(self.status(), now), attempt_started=None)

    def add_note(self, note: str) -> None:
        """Something the user should know about a job that still succeeds (records dropped, a capped
        setting): kept in status.json's `notes`, shown by `specc run` and `specc status`."""
        status = self.status()
        if note not in status.get("notes", []):
            self.update_status(notes=[*status.get("notes", []), note])

    def write_metrics(self, name: str, rows: list[tuple[int, str, float]]) -> None:
        """One deterministic file per flush: steps -> (name, value)."""
        if not rows:
            return
        steps, names, values = zip(*rows)
        table = pa.table({"step": pa.array(steps, pa.int64()), "name": pa.array(names, pa.string()),
                          "value": pa.array([float(v) for v in values], pa.float64())})
        atomic_write_parquet(self.metrics_dir / f"{name}.parquet", table)

    def read_metrics(self) -> list[tuple[int, str, float]]:
        rows = []
        for file in sorted(self.metrics_dir.glob("*.parquet")):
            table = pq.read_table(file)
            rows += list(zip(*(table.column(c).to_pylist() for c in ("step", "name", "value"))))
        return rows
