"""The one executor interface: debug (in-process), local (subprocesses) and slurm, from one table.

Every executor prepares a plan's job dirs, submits the jobs not done yet, waits for them,
cancels them and reports their states, the way submitit's executors share one interface.
Debug and local executors schedule the DAG themselves: a job is submitted when all its
upstream jobs are done, at most `max_parallel` at a time, and `submit` returns when every job
has ended. Jobs are never given more threads than the spec says (thread count is part of a
result's identity); instead parallelism is capped so that threads x jobs <= cores. The SLURM
executor (runtime.slurm) hands the whole DAG to the scheduler and returns once it is submitted.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import submitit

from specc.compiler.plan import Job, Plan
from specc.compiler.schema import ExecutorSettings
from specc.contracts import EXECUTORS
from specc.runtime.jobdir import JobDir, atomic_write_json

OnEvent = Callable[..., None]  # on_event(event, job, info="")
STATES = ("done", "running", "pending", "failed", "blocked")  # what `states` reports for each job


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

    def ended_badly(self) -> set[str]:
        return set(self.failed) | set(self.blocked)


def blocked_by_failure(job: Job, ended_badly) -> bool:
    """The one rule for "blocked": some upstream job failed, or is itself blocked."""
    return any(up in ended_badly for up in job.upstream.values())


@dataclass(frozen=True)
class Resources:
    """What one job asks of a scheduler. Every executor setting that sizes a job flows through
    here (`for_stage`), with a stage's own `executor.stages` entry applied."""

    cpus: int  # per task
    gpus: int = 0  # per node
    mem_gb: int | None = None
    time_min: int | None = None
    nodes: int = 1
    tasks_per_node: int = 1
    partition: str | None = None
    account: str | None = None
    qos: str | None = None

    @classmethod
    def for_stage(cls, settings: ExecutorSettings, stage: str, jobs: list[Job]) -> "Resources":
        stage_settings = settings.for_stage(stage)
        threads = max((j.config.get("train", {}).get("threads", 1) for j in jobs), default=1)
        # several ranks: one task each (a GPU each on GPU nodes), torch.distributed across them
        nodes, ranks_per_node, gpus_per_node = stage_settings.layout(stage)
        return cls(cpus=max(stage_settings.cpus, threads), gpus=gpus_per_node, mem_gb=stage_settings.mem_gb,
                   time_min=stage_settings.time_min, nodes=nodes, tasks_per_node=ranks_per_node,
                   partition=stage_settings.partition, account=stage_settings.account, qos=stage_settings.qos)


class Executor:
    """prepare, submit, wait, cancel, states: what `specc run / status / cancel` ask of a backend.

    `detaches` says whether `submit` returns before the jobs end (SLURM) or after (debug, local).
    Subclasses implement `submit`; the rest has defaults that read the job dirs."""

    kind = ""
    detaches = False

    def __init__(self, workspace: Path, settings: ExecutorSettings | None = None, *, on_event: OnEvent | None = None,
                 max_parallel: int | None = None, pdb: bool = False):
        self.workspace = Path(workspace)
        self.settings = settings or ExecutorSettings()
        self.on_event = on_event or (lambda event, job, info="": None)
        self.max_parallel, self.pdb = max_parallel, pdb

    def job_dir(self, job: Job) -> JobDir:
        return job_dir(self.workspace, job)

    def prepare(self, plan: Plan) -> None:
        prepare(plan, self.workspace)

    def submit(self, plan: Plan) -> RunResult:
        raise NotImplementedError

    def wait(self, plan: Plan, **options) -> RunResult:
        """Follow the plan's jobs until each has ended; an executor that does not detach has
        nothing left to follow, so this reads where each job ended."""
        result = RunResult()
        for job_id, state in self.states(plan).items():
            if state == "done":
                result.done.append(job_id)
            elif state == "blocked":
                result.blocked.append(job_id)
            elif state == "failed":
                result.failed[job_id] = self.job_dir(plan.by_id()[job_id]).status().get("error") or "failed"
        return result

    def cancel(self, plan: Plan) -> list[str]:
        """Stop the plan's queued and running jobs; returns the scheduler ids cancelled. Jobs of a
        non-detaching executor end with the run that started them (Ctrl-C stops them)."""
        return []

    def scheduler_states(self, plan: Plan) -> dict[str, str]:
        """SLURM job id -> its state, for the plan's unfinished jobs a SLURM run submitted (under any
        spec executor: `specc run --executor slurm` may have run them)."""
        ids = [self.job_dir(j).status().get("slurm_job_id") for j in plan.jobs if not self.job_dir(j).is_done()]
        if not any(ids):
            return {}
        from specc.runtime.slurm import scheduler_states

        return scheduler_states(ids)

    def states(self, plan: Plan) -> dict[str, str]:
        """Each job's state (one of STATES), from its dir and the scheduler; blocked where an
        upstream job failed or is blocked."""
        scheduler = self.scheduler_states(plan)
        states: dict[str, str] = {}
        ended_badly: set[str] = set()
        for job in plan.jobs:  # upstream first: plan.jobs is in wave order
            state = job_state(self.job_dir(job), scheduler)
            states[job.id] = "blocked" if state == "pending" and blocked_by_failure(job, ended_badly) else state
            if states[job.id] in ("failed", "blocked"):
                ended_badly.add(job.id)
        return states


# executor kind -> "module:class"; the SLURM one is imported only when asked for
EXECUTOR_CLASSES: dict[str, str] = {
    "debug": "specc.runtime.executor:DebugExecutor",
    "local": "specc.runtime.executor:LocalExecutor",
    "slurm": "specc.runtime.slurm:SlurmExecutor",
}


def make_executor(kind: str, workspace: Path, settings: ExecutorSettings | None = None, **options) -> Executor:
    """The executor of `kind` (debug | local | slurm); options: on_event, max_parallel, pdb."""
    if kind not in EXECUTOR_CLASSES:
        raise ValueError(f"unknown executor '{kind}': expected {', '.join(EXECUTORS[:-1])} or {EXECUTORS[-1]}")
    module, name = EXECUTOR_CLASSES[kind].split(":")
    return getattr(importlib.import_module(module), name)(workspace, settings, **options)


def job_dir(workspace: Path, job: Job) -> JobDir:
    return JobDir(workspace / "jobs" / job.id)


def prepare(plan: Plan, workspace: Path) -> None:
    """Write each job's job.json (identical content for identical ids, so rewriting is harmless)."""
    for job in plan.jobs:
        jd = job_dir(workspace, job)
        if not (jd.path / "job.json").exists():
            atomic_write_json(jd.path / "job.json", job.to_json())


# The scheduler's job states (SLURM's names; sacct may add a reason, "CANCELLED by 0"), interpreted
# here once: running, pending (queued, or requeued after pre-emption), completed, or ended
# without completing. States not listed (PREEMPTED while requeueing) leave it to the job dir.
SCHEDULER_TERMINAL = ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")
SCHEDULER_STATES = {"RUNNING": "running", "COMPLETING": "running", "PENDING": "pending", "REQUEUED": "pending",
                    "SUSPENDED": "pending", "RESIZING": "pending", "COMPLETED": "completed",
                    **{state: "ended" for state in SCHEDULER_TERMINAL}}


def scheduler_meaning(raw: str | None) -> str | None:
    """running | pending | completed | ended, or None for a state not listed (or none known)."""
    word = (raw or "").split(" ")[0].rstrip("+")
    return SCHEDULER_STATES.get(word)


def job_state(jd: JobDir, scheduler_states: dict[str, str] | None = None) -> str:
    """done | running | pending | failed, from the job dir and, for scheduled jobs, the scheduler."""
    if jd.is_done():
        return "done"
    status = jd.status()
    state = status.get("state", "pending")
    raw = (scheduler_states or {}).get(status.get("slurm_job_id") or "")
    if raw:
        meaning = scheduler_meaning(raw)
        if meaning in ("running", "pending"):
            return meaning
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


class LocalExecutor(Executor):
    """submitit LocalExecutor subprocesses, `max_parallel` at a time, scheduled here in DAG order."""

    kind = "local"

    def submit(self, plan: Plan) -> RunResult:
        """Run every job not yet done, in dependency order; returns when all have ended."""
        self.prepare(plan)
        result = RunResult()
        pending: list[Job] = []
        for job in plan.jobs:
            if self.job_dir(job).is_done():
                result.cached.append(job.id)
                self.on_event("cached", job)
            else:
                pending.append(job)
        running: dict[str, tuple[Job, object]] = {}
        try:
            _schedule(self, self.parallelism(plan), pending, running, result)
        except KeyboardInterrupt:  # Ctrl-C or SIGINT: stop this run's workers, never orphan them
            _stop(self.workspace, running, self.on_event)
            raise
        for job in pending:
            result.blocked.append(job.id)
            self.on_event("blocked", job)
        return result

    def parallelism(self, plan: Plan) -> int:
        wanted = self.max_parallel or self.settings.max_parallel
        threads = max((j.config.get("train", {}).get("threads", 1) for j in plan.jobs), default=1)
        return max(1, min(wanted, cores() // threads))

    def start(self, job: Job):
        """Start one job; returns a handle with done() (and paths, for its logs)."""
        executor = submitit.LocalExecutor(folder=self.job_dir(job).path / "submitit")
        executor.update_parameters(timeout_min=60 * 24 * 7)
        from specc.runtime.job import run_job  # torch is imported by the job, not by the scheduler

        # The controller submitit starts inherits an ignored SIGINT, so a Ctrl-C at the terminal
        # (sent to the whole process group) does not kill it mid-way with a traceback; the job
        # itself re-enables SIGINT (run_job), and this runner stops it (_stop).
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            return executor.submit(run_job, str(self.job_dir(job).path))
        finally:
            signal.signal(signal.SIGINT, previous)


class DebugExecutor(LocalExecutor):
    """In-process, one job at a time, through submitit's DebugExecutor; with `pdb`, its post-mortem
    debugger opens on a failing job."""

    kind = "debug"

    def parallelism(self, plan: Plan) -> int:
        return 1

    def start(self, job: Job):
        from specc.runtime.job import run_job

        handle = submitit.DebugExecutor(folder=self.job_dir(job).path / "submitit").submit(run_job, str(self.job_dir(job).path))
        if self.pdb:  # submitit's post-mortem debugger on a failure, only when asked for (it waits for a person)
            try:
                handle.result()
            except Exception:  # recorded in the job dir; reported by _outcome
                pass
        else:
            handle.exception()  # runs the job in-process; a failure is recorded in the job dir
        return _Finished()  # a DebugJob re-runs a failed function when asked done()


def run_local(plan: Plan, workspace: Path, *, kind: str = "local", max_parallel: int | None = None,
              on_event: OnEvent | None = None, pdb: bool = False) -> RunResult:
    """Run every job of `plan` not yet done with the debug or local executor; returns when all have ended."""
    executor = make_executor(kind, workspace, plan.executor, on_event=on_event, max_parallel=max_parallel, pdb=pdb)
    return executor.submit(plan)


def _schedule(executor: LocalExecutor, parallel: int, pending: list[Job], running: dict, result: RunResult) -> None:
    workspace, on_event = executor.workspace, executor.on_event
    ended = set(result.cached)
    waiting: set[str] = set()  # run by another process now (its lock is held)
    while pending or running:
        for job in list(pending):
            if blocked_by_failure(job, result.ended_badly()):
                pending.remove(job)
                result.blocked.append(job.id)
                on_event("blocked", job)
        ready = [j for j in pending if all(up in ended for up in j.upstream.values())]
        ready = [j for j in ready if not _owned_elsewhere(workspace, j, waiting, result, ended, pending, on_event)]
        for job in ready[: max(0, parallel - len(running))]:
            pending.remove(job)
            running[job.id] = (job, executor.start(job))
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
