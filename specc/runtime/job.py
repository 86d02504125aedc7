"""A job's entry point: `python -m specc.runtime.job <job_dir>`, or `run_job` through submitit.

Reads job.json, runs the stage, writes DONE last. A failure records the
traceback in status.json and the log, and re-raises so the executor sees it.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
import threading
import traceback
from pathlib import Path

import torch

from specc.runtime import distributed
from specc.runtime.context import JobContext
from specc.runtime.device import job_device, precision
from specc.runtime.jobdir import JobBusy, JobDir
from specc.runtime.loop import Interrupted, release_checkpoint


# stage kind -> "module:function" running it; imported on use, so a job loads only its own stage
STAGE_RUNNERS = {
    "dataset": "specc.runtime.stages.dataset:run_dataset",
    "oracle": "specc.runtime.stages.label:run_oracle",
    "label": "specc.runtime.stages.label:run_label",
    "sft": "specc.runtime.stages.sft:run_sft",
    "align": "specc.runtime.stages.align:run_align",
    "preference_model": "specc.runtime.stages.preference_model:run_preference_model",
    "pairs": "specc.runtime.stages.pairs:run_pairs",
}


def _stage_runner(kind: str):
    if kind not in STAGE_RUNNERS:
        raise ValueError(f"unknown stage kind {kind!r}")
    module, function = STAGE_RUNNERS[kind].split(":")
    return getattr(importlib.import_module(module), function)


def run_job(job_dir: str | Path, stop_after: int | None = None) -> str:
    """Run (or resume) one job. Returns its id; a finished job returns at once."""
    job = JobDir(job_dir)
    if distributed.launched_ranks() > 1:
        if job.job_json()["kind"] in distributed.RANKED_KINDS:
            return _run_ranked(job, stop_after)
        if distributed.launched_rank() > 0:
            return job.id
    if job.is_done():
        return job.id
    if threading.current_thread() is threading.main_thread():
        # a worker may start with SIGINT ignored (see LocalExecutor.start): Ctrl-C stops the job again
        signal.signal(signal.SIGINT, signal.default_int_handler)
    with job.lock():  # JobBusy if another run has it: that run finishes it
        if job.is_done():  # finished by the run that held the lock before
            return job.id
        damaged = job.damage()
        if damaged:  # a finished job whose files changed since: its results cannot be trusted
            job.clear_results()
            job.update_status(rerun_because=damaged)
        return _run_owned(job, stop_after)


def _run_ranked(job: JobDir, stop_after: int | None) -> str:
    """One rank of a job started as several processes (runtime.distributed). Rank 0 owns the
    job (its lock, status, results); every rank computes."""
    distributed.start(job_device().type)
    try:
        with contextlib.ExitStack() as owned:
            verdict = None
            if distributed.is_main():
                verdict = "done" if job.is_done() else None
                if verdict is None:
                    try:
                        owned.enter_context(job.lock())
                    except JobBusy as exc:
                        verdict = str(exc)
                damaged = job.damage() if verdict is None else None
                if damaged:
                    job.clear_results()
                    job.update_status(rerun_because=damaged)
            verdict = distributed.broadcast(verdict)
            if verdict == "done":
                return job.id
            if verdict is not None:
                raise JobBusy(verdict)
            if distributed.is_main():
                distributed.note_preemption(job)
            return _run_owned(job if distributed.is_main() else distributed.follower(job), stop_after)
    finally:
        distributed.stop()


def _run_owned(job: JobDir, stop_after: int | None) -> str:
    job_json = job.job_json()
    threads = job_json["config"].get("train", {}).get("threads", 1)
    torch.set_num_threads(threads)  # 1 vs 2 threads is not bit-identical: fixed and recorded
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        device = job_device()
    except ValueError as exc:  # a bad SPECC_DEVICE: the job never starts, and says why
        job.mark_failed(str(exc))
        raise
    job.mark_running(threads, device.type, precision(device))
    try:
        summary = _stage_runner(job_json["kind"])(JobContext(job, job_json, stop_after, device)) or {}
    except (Interrupted, SystemExit, KeyboardInterrupt):
        # pre-empted (submitit exits after requeueing on USR2) or stopped: resumable, not failed
        job.mark_interrupted()
        raise
    except Exception as exc:
        error = distributed.label() + "".join(traceback.format_exception(exc))
        with open(job.log_path, "a") as log:
            log.write(error)
        message = f"{distributed.label()}{type(exc).__name__}: {exc}"
        if not distributed.keeps_first_failure(job):
            job.mark_failed(message)
        raise
    job.mark_done(summary)
    if distributed.is_main():  # the job's owner tidies up
        job.update_status(kept_bytes=release_checkpoint(job, job_json["config"].get("train")))
    return job.id


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m specc.runtime.job <job_dir>", file=sys.stderr)
        return 2
    try:
        run_job(argv[0])
    except Exception as exc:  # the traceback is in the job's log and status
        print(f"job failed: {exc} (see {Path(argv[0]) / 'log.txt'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
