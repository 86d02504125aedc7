"""Digests of the local files a job reads, for its content address.

A job that reads a local file or folder (a `files` dataset, a model or tokenizer given as
a local folder, a dataset folder) gets the sha256 of that content in its id: edit the
file, retrain the checkpoint in place, and the job is new instead of silently cached.
Hub names are left alone (the hub's own revisions name their content).

Hashing a multi-GB checkpoint takes seconds, so each file's digest is remembered in a
user-level cache keyed by (real path, size, modification time, inode): a later compile
reads no content unless the file changed. The cache is an optimisation only: a missing,
torn or foreign cache file is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from specc.contracts import local_path, looks_like_path
from specc.errors import Location, SpecError, SpecErrors

CACHE_ENV = "SPECC_CACHE_DIR"  # default: $XDG_CACHE_HOME/specc or ~/.cache/specc
CACHE_FILE = "file-digests.json"


def input_digests(name: str, config: dict, source) -> dict:
    """{field: sha256} for every local file or folder the stage's resolved config names."""
    digests = {}
    for field, value, must_exist in _local_inputs(config):
        path = local_path(value)
        if path is not None and path.is_dir():
            digests[field] = _DIGESTS.folder(path)
        elif path is not None and path.is_file() and must_exist:
            digests[field] = _DIGESTS.file(path)
        elif must_exist or looks_like_path(value):
            where = ("stages", name, *field.split("."))
            location = source.locate(where) if source else Location("<spec>", 0, 0)
            raise SpecErrors([SpecError(location, ".".join(where),
                                        f"cannot read {value!r} (no such {'file' if must_exist else 'folder'}); "
                                        f"a relative path is read from the directory specc runs in")])
    _DIGESTS.save()
    return {f"{field}_sha256": digest for field, digest in digests.items()}


def _local_inputs(config: dict):
    """(field, value, must exist) of every field that may name local content."""
    if config.get("kind") == "dataset":
        if config.get("source") == "files":
            yield "path", config["path"], True
        if config.get("source") == "hub" and config.get("hub_name"):
            yield "hub_name", config["hub_name"], False
        if config.get("tokenizer"):
            yield "tokenizer", config["tokenizer"], False
    model = config.get("model")
    if isinstance(model, dict) and model.get("family") == "hub" and model.get("name"):
        yield "model.name", model["name"], False


class _DigestCache:
    """sha256 of files, remembered across compiles by (real path, size, mtime, inode)."""

    def __init__(self):
        self.entries: dict | None = None
        self.loaded_from: Path | None = None
        self.changed = False

    def file(self, path: Path) -> str:
        real = os.path.realpath(path)
        stat = os.stat(real)
        key = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
        entries = self._load()
        known = entries.get(real)
        if isinstance(known, list) and known[:3] == key and len(known) == 4:
            return known[3]
        with open(real, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        entries[real] = key + [digest]
        self.changed = True
        return digest

    def folder(self, path: Path) -> str:
        """Every file under `path` (hidden ones aside: VCS and download metadata), by relative
        path and content; symlinks are followed, as loading them does."""
        lines = []
        for root, dirs, files in os.walk(path, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith("."):
                    full = Path(root, name)
                    lines.append(f"{full.relative_to(path).as_posix()}\t{self.file(full)}\n")
        return hashlib.sha256("".join(lines).encode()).hexdigest()

    def save(self) -> None:
        if not self.changed:
            return
        path = self.loaded_from / CACHE_FILE
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.entries))
            os.replace(tmp, path)
            self.changed = False
        except OSError:  # a read-only home: digests are recomputed next time
            pass

    def _load(self) -> dict:
        if self.entries is None or self.loaded_from != _cache_dir():
            self.loaded_from, self.changed = _cache_dir(), False
            try:
                loaded = json.loads((self.loaded_from / CACHE_FILE).read_text())
                self.entries = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self.entries = {}
        return self.entries


def _cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "specc"


_DIGESTS = _DigestCache()
