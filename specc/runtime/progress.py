"""How far a running job is: `progress.json` in its job dir, rewritten at most once a second.

    {"step": 120, "steps": 400, "updated": <unix time>, "attempt_started": <unix time>,
     "first_step": 0, "step_s": 0.12, "longest_gap_s": 3.4,
     "metrics": {"train/loss": 0.53, ...}, "eval_step": 100, "eval": {"eval/win_rate": 0.61, ...}}

Readers (the live display of `specc run`, `specc status`) poll this file, locally or on a
cluster's shared file system; no result depends on it, so it is neither checksummed nor
ingested. A training step pays a clock read and a comparison: its metrics are turned into
numbers only when the file is written. The same hook feeds the spec's metric sinks (TensorBoard,
W&B; see `runtime.sinks`), which only see what the job dir also records.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from specc.runtime.jobdir import JobDir, atomic_write_bytes

PROGRESS = "progress.json"
WRITE_EVERY_S = 1.0
PER_ITEM = "outcome/"  # evaluation metrics with one value per prompt or pair (runtime.evaluation)


def open_progress(job: JobDir, steps: int, start_step: int = 0) -> "Progress":
    """The progress record of a training loop starting at `start_step`, with the spec's sinks."""
    from specc.runtime.sinks import open_sinks

    return Progress(job, steps, start_step, sinks=open_sinks(job, start_step))


def read_progress(job_path: Path) -> dict | None:
    """The job's last progress record, or None (no file yet, or unreadable)."""
    try:
        value = json.loads((Path(job_path) / PROGRESS).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


class Progress:
    """Throttled writer of one job's progress.json (and its sinks, if the spec asked for any)."""

    def __init__(self, job: JobDir, steps: int, start_step: int = 0, every_s: float = WRITE_EVERY_S, sinks=()):
        self.path, self.steps, self.every_s, self.sinks = job.path / PROGRESS, steps, every_s, list(sinks)
        self.first_step, self.step_now = start_step, start_step
        self.metrics: dict = {}
        self.evals: dict = {}
        self.eval_step: int | None = None
        self.attempt_started = time.time()
        self.started = self.last_write = time.monotonic()
        self.longest_gap_s = 0.0
        self._write(self.started)

    def step(self, step: int, metrics: dict) -> None:
        """After training step `step` (1-based: steps done). Cheap unless a write is due."""
        self.step_now, self.metrics = step, metrics
        for sink in self.sinks:
            sink.step(step, metrics)
        now = time.monotonic()
        if now - self.last_write >= self.every_s:
            self._write(now)

    def evaluated(self, step: int, metrics: dict) -> None:
        """An evaluation at `step` landed: written at once (a win rate is news). Per-item outcomes
        (one value per prompt or pair) stay in the job's metrics files only."""
        metrics = {name: value for name, value in metrics.items() if not name.startswith(PER_ITEM)}
        self.eval_step, self.evals = step, metrics
        for sink in self.sinks:
            sink.step(step, metrics)
        self._write(time.monotonic())

    def close(self) -> None:
        self._write(time.monotonic())
        for sink in self.sinks:
            sink.close()

    def _write(self, now: float) -> None:
        self.longest_gap_s = max(self.longest_gap_s, now - self.last_write)
        self.last_write = now
        done = self.step_now - self.first_step
        record = {"step": self.step_now, "steps": self.steps, "first_step": self.first_step,
                  "updated": time.time(), "attempt_started": self.attempt_started,
                  "step_s": (now - self.started) / done if done > 0 else None,
                  "longest_gap_s": self.longest_gap_s,
                  "metrics": _numbers(self.metrics), "eval_step": self.eval_step, "eval": _numbers(self.evals)}
        try:
            # no fsync: losing the last progress record in a crash costs nothing, a sync a second would
            atomic_write_bytes(self.path, json.dumps(record).encode(), fsync=False)
        except OSError:
            pass  # progress is for people watching; a full or read-only disk must not stop training


def _numbers(metrics: dict) -> dict:
    out = {}
    for name, value in metrics.items():
        try:
            out[name] = float(value)
        except (TypeError, ValueError):
            continue
    return {k: v for k, v in out.items() if v == v and abs(v) != float("inf")}  # JSON has no nan / inf
