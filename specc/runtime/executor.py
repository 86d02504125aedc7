"""Run a Plan through submitit: debug (in-process), local (subprocesses) or slurm.

Locally the DAG is scheduled dynamically: a job is submitted when all its
upstream jobs are done, at most `max_parallel` at a time. Jobs are never
given more threads than the spec says (thread count is part of a result's
identity); instead parallelism is capped so that threads x jobs <= cores.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import submitit

from specc.compiler.plan import Job, Plan
from specc.runtime.jobdir import JobDir, atomic_write_json


@dataclass
class RunResult:
    done: list[str] = field(default_factory=list)  # finished in this run
    cached: list[str] = field(default_factory=list)  # already done before
    failed: dict[str, str] = field(default_factory=dict)  # job id -> message with log path
    blocked: list[str] = field(default_factory=list)  # not run: an upstream job failed
    submitted: list[str] = field(default_factory=list)  # slurm: submitted, not waited for

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


def job_dir(workspace: Path, job: Job) -> JobDir:
    return JobDir(workspace / "jobs" / job.id)


def prepare(plan: Plan, workspace: Path) -> None:
    """Write each job's job.json (identical content for identical ids, so rewriting is harmless)."""
    for job in plan.jobs:
        jd = job_dir(workspace, job)
        if not (jd.path / "job.json").exists():
            atomic_write_json(jd.path / "job.json", job.to_json())


def job_state(jd: JobDir, scheduler_states: dict[str, str] | None = None) -> str:
    """done | running | pending | failed, from the job dir and, for SLURM jobs, the scheduler."""
    if jd.is_done():
        return "done"
    status = jd.status()
    state = status.get("state", "pending")
    slurm_state = (scheduler_states or {}).get(status.get("slurm_job_id") or "")
    if slurm_state:
        if slurm_state.startswith(("RUNNING", "COMPLETING")):
            return "running"
        if slurm_state.startswith(("PENDING", "REQUEUED", "SUSPENDED", "RESIZING")):
            return "pending"
        return "failed" if state != "done" else "done"
    if state == "running" and status.get("host") == socket.gethostname() and not _alive(status.get("pid")):
        return "failed"  # the process died without recording why (killed): rerun resumes it
    # done in status.json but not by its files (DONE or a result file gone or changed): reruns
    return {"interrupted": "pending", "submitted": "pending", "cancelled": "failed", "done": "pending",
            "damaged": "pending"}.get(state, state)


def _alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_local(plan: Plan, workspace: Path, *, kind: str = "local", max_parallel: int | None = None,
              on_event=lambda event, job, info="": None, pdb: bool = False) -> RunResult:
    """Run every job not yet done, in dependency order; returns when all have ended."""
    prepare(plan, workspace)
    result = RunResult()
    pending: list[Job] = []
    for job in plan.jobs:
        if job_dir(workspace, job).is_done():
            result.cached.append(job.id)
            on_event("cached", job)
        else:
            pending.append(job)
    parallel = _parallelism(plan, kind, max_parallel)
    ended = set(result.cached)
    running: dict[str, tuple[Job, object]] = {}
    waiting: set[str] = set()  # run by another process now (its lock is held)
    try:
        _schedule(workspace, kind, parallel, pdb, pending, running, waiting, ended, result, on_event)
    except KeyboardInterrupt:  # Ctrl-C or SIGINT: stop this run's workers, never orphan them
        _stop(workspace, running, on_event)
        raise
    for job in pending:
        result.blocked.append(job.id)
        on_event("blocked", job)
    return result


def _schedule(workspace, kind, parallel, pdb, pending, running, waiting, ended, result, on_event) -> None:
    while pending or running:
        for job in list(pending):
            if any(up in result.failed or up in result.blocked for up in job.upstream.values()):
                pending.remove(job)
                result.blocked.append(job.id)
                on_event("blocked", job)
        ready = [j for j in pending if all(up in ended for up in j.upstream.values())]
        ready = [j for j in ready if not _owned_elsewhere(workspace, j, waiting, result, ended, pending, on_event)]
        for job in ready[: max(0, parallel - len(running))]:
            pending.remove(job)
            running[job.id] = (job, _submit(workspace, job, kind, pdb))
            on_event("started", job)
        for job_id, (job, handle) in list(running.items()):
            if not handle.done():
                continue
            del running[job_id]
            jd = job_dir(workspace, job)
            if not jd.is_done() and jd.is_busy():  # another run took it first: wait for that one
                pending.append(job)
                continue
            error = _outcome(handle, jd)
            if error is None:
                ended.add(job_id)
                result.done.append(job_id)
                on_event("done", job, _wall(jd))
            else:
                result.failed[job_id] = error
                on_event("failed", job, error)
        if running or waiting:
            time.sleep(0.2)
        elif pending and not any(all(up in ended for up in j.upstream.values()) for j in pending):
            break  # nothing can start: every remaining job waits on a failed one


def _stop(workspace: Path, running: dict, on_event, grace_s: float = 60.0) -> None:
    """Stop this run's workers. Each job process gets SIGINT (it records itself interrupted and
    keeps its last checkpoint); a submitit controller, or a job that did not stop within `grace_s`,
    gets SIGTERM, which the controller forwards to its task without printing a traceback."""
    for job, handle in running.values():
        status = job_dir(workspace, job).status()
        if status.get("state") == "running" and status.get("host") == socket.gethostname() and _alive(status.get("pid")):
            os.kill(int(status["pid"]), signal.SIGINT)
        else:
            _terminate(handle)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and not all(h.done() for _, h in running.values()):
        time.sleep(0.2)
    for job, handle in running.values():
        if not handle.done():
            _terminate(handle)
        jd = job_dir(workspace, job)
        if not jd.is_done() and jd.status().get("state") in ("running", None):
            jd.mark_interrupted()
        on_event("stopped", job, "interrupted; a rerun resumes it from its last checkpoint")


def _terminate(handle) -> None:
    process = getattr(handle, "_process", None)  # a LocalJob's controller process (None: debug, or ended)
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)


def _owned_elsewhere(workspace: Path, job: Job, waiting: set, result: RunResult, ended: set, pending: list,
                     on_event) -> bool:
    """True while another process runs `job` (it holds the job's lock): this run waits for it
    rather than doing the same work twice. Once released, a job the other run finished is cached."""
    jd = job_dir(workspace, job)
    if jd.is_busy():
        if job.id not in waiting:
            waiting.add(job.id)
            on_event("waiting", job, f"run by another process (pid {jd.status().get('pid')})")
        return True
    waiting.discard(job.id)
    if jd.is_done():
        pending.remove(job)
        ended.add(job.id)
        result.cached.append(job.id)
        on_event("cached", job, "finished by another run")
        return True
    return False


def _parallelism(plan: Plan, kind: str, max_parallel: int | None) -> int:
    if kind == "debug":
        return 1
    wanted = max_parallel or plan.executor.max_parallel
    threads = max((j.config.get("train", {}).get("threads", 1) for j in plan.jobs), default=1)
    return max(1, min(wanted, cores() // threads))


def _submit(workspace: Path, job: Job, kind: str, pdb: bool = False):
    jd = job_dir(workspace, job)
    folder = jd.path / "submitit"
    if kind == "debug":
        executor = submitit.DebugExecutor(folder=folder)
    else:
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=60 * 24 * 7)
    from specc.runtime.job import run_job  # torch is imported by the job, not by the scheduler

    if kind == "debug":
        handle = executor.submit(run_job, str(jd.path))
        if pdb:  # submitit's post-mortem debugger on a failure, only when asked for (it waits for a person)
            try:
                handle.result()
            except Exception:  # recorded in the job dir; reported by _outcome
                pass
        else:
            handle.exception()  # runs the job in-process; a failure is recorded in the job dir
        return _Finished()  # a DebugJob re-runs a failed function when asked done()
    # The controller submitit starts inherits an ignored SIGINT, so a Ctrl-C at the terminal
    # (sent to the whole process group) does not kill it mid-way with a traceback; the job
    # itself re-enables SIGINT (run_job), and this runner stops it (_stop).
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return executor.submit(run_job, str(jd.path))
    finally:
        signal.signal(signal.SIGINT, previous)


class _Finished:
    paths = None

    def done(self) -> bool:
        return True


def _outcome(handle, jd: JobDir) -> str | None:
    """None if the job completed (DONE written), else a message naming its logs."""
    if jd.is_done():
        return None
    status = jd.status()
    error = status.get("error") or "the job ended without completing (killed?)"
    paths = getattr(handle, "paths", None)
    # only logs that exist: a job killed before it wrote anything has no log.txt
    logs = [str(p) for p in (jd.log_path, paths and paths.stderr) if p and Path(p).exists()]
    if status.get("state") != "failed":
        jd.mark_failed(error)
    return f"{error} (logs: {', '.join(logs)})" if logs else error


def _wall(jd: JobDir) -> str:
    """The job's run time, and any notes it left (records dropped, a capped setting)."""
    status = jd.status()
    wall = f"{status['wall_s']:.1f}s" if status.get("wall_s") is not None else ""
    return "; ".join([wall, *status.get("notes", [])]).strip("; ")
