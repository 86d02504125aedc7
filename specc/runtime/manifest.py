"""A finished job's manifest: the size and sha256 of every result file, written just before DONE.

Job dirs are the source of truth, so a finished job must still hold what it wrote. A file that
is missing or has another size is seen at a stat (every `run`, `status` and `plan`); a file with
the same size but other bytes is seen when its checksum is read again (`ingest`, which reads the
files anyway). A damaged job is not done: the runner reruns it from scratch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST = "MANIFEST.json"
COVERED = ("metrics", "artifacts")  # results; checkpoint/, logs and status.json change or are optional


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def result_files(job_path: Path) -> list[Path]:
    """Every result file of a job (hidden temporary files of an atomic write aside)."""
    files = []
    for folder in COVERED:
        files += [p for p in (job_path / folder).rglob("*") if p.is_file() and not p.name.startswith(".")]
    return sorted(files)


def manifest_of(job_path: Path) -> dict:
    return {"files": {str(p.relative_to(job_path)): {"size": p.stat().st_size, "sha256": sha256(p)}
                      for p in result_files(job_path)}}


def damage(job_path: Path, *, checksums: bool = False, under: str = "") -> str | None:
    """Why a finished job's files no longer match its manifest, or None; `checksums` reads the
    files (those under `under`, e.g. "metrics/"). Jobs finished before manifests existed have
    none and are taken as they are."""
    try:
        files = json.loads((job_path / MANIFEST).read_text())["files"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return f"{job_path / MANIFEST} is unreadable"
    for rel, expected in files.items():
        path = job_path / rel
        try:
            size = path.stat().st_size
        except OSError:
            return f"{path} is missing"
        if size != expected["size"]:
            return f"{path} has {size} bytes, {expected['size']} when the job finished"
        if checksums and rel.startswith(under) and sha256(path) != expected["sha256"]:
            return f"{path} differs from what the job wrote (sha256)"
    return None
