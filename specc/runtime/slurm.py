"""Submit a Plan to SLURM in one go: one job array per stage wave, `afterok` dependencies.

`specc run` returns once everything is submitted. Each job is a submitit
Checkpointable: on pre-emption or time limit (USR2) submitit requeues it and
the job resumes from its last checkpoint, ending bit-identical on CPU.
"""

from __future__ import annotations

import subprocess
import time
from itertools import groupby
from pathlib import Path

import submitit

from specc.compiler.plan import Job, Plan
from specc.runtime.executor import RunResult, job_dir, prepare

DEFAULT_MAX_ARRAY_SIZE = 1001


class SpeccJob(submitit.helpers.Checkpointable):
    """Runs one job dir; requeued with the same argument, it resumes from its checkpoint."""

    def __call__(self, job_path: str) -> str:
        from specc.runtime.job import run_job  # imported on the node: submission stays light

        return run_job(job_path)


def max_array_size() -> int:
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return DEFAULT_MAX_ARRAY_SIZE
    for line in out.splitlines():
        if line.strip().startswith("MaxArraySize"):
            return int(line.split("=")[1].strip())
    return DEFAULT_MAX_ARRAY_SIZE


def submit_plan(plan: Plan, workspace: Path, on_event=lambda event, job, info="": None) -> RunResult:
    """Submit every job not done yet; returns without waiting."""
    prepare(plan, workspace)
    settings = plan.executor
    result = RunResult()
    scheduler_ids: dict[str, str] = {}  # specc job id -> SLURM job id (array task)
    todo = []
    in_flight = _in_flight(plan, workspace)
    for job in plan.jobs:
        if job_dir(workspace, job).is_done():
            result.cached.append(job.id)
            on_event("cached", job)
        elif job.id in in_flight:  # queued or running from an earlier `specc run`: never twice
            scheduler_ids[job.id] = in_flight[job.id]
            on_event("in flight", job, in_flight[job.id])
        else:
            todo.append(job)
    chunk = max(1, max_array_size() - 1)
    folder = Path(workspace) / "slurm" / time.strftime("%Y%m%d-%H%M%S")
    for (wave, stage), group in groupby(todo, key=lambda j: (j.wave, j.stage)):
        group = list(group)
        for start in range(0, len(group), chunk):
            members = group[start: start + chunk]
            paths = [str(job_dir(workspace, j).path) for j in members]
            handles = _submit_array(members, paths, folder / f"{wave:02d}-{stage}", settings.for_stage(stage),
                                    scheduler_ids)
            for job, handle in zip(members, handles):
                scheduler_ids[job.id] = handle.job_id
                job_dir(workspace, job).update_status(state="submitted", slurm_job_id=handle.job_id,
                                                      submitted=time.time(), log=str(handle.paths.stdout))
                result.submitted.append(job.id)
                on_event("submitted", job, handle.job_id)
    return result


def _in_flight(plan: Plan, workspace: Path) -> dict[str, str]:
    """Jobs whose SLURM job is still pending or running: specc job id -> SLURM job id."""
    ids = {j.id: job_dir(workspace, j).status().get("slurm_job_id") for j in plan.jobs}
    states = scheduler_states(ids.values())
    return {job: sid for job, sid in ids.items() if sid and states.get(sid) and not states[sid].startswith(TERMINAL)
            and not states[sid].startswith("COMPLETED")}


def _submit_array(jobs: list[Job], paths: list[str], folder: Path, settings, scheduler_ids: dict) -> list:
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    threads = max(j.config.get("train", {}).get("threads", 1) for j in jobs)
    # several ranks: one SLURM task each (a GPU each on GPU nodes), torch.distributed across them
    nodes, ranks_per_node, gpus_per_node = settings.layout()
    parameters = {"slurm_partition": settings.partition, "gpus_per_node": gpus_per_node,
                  "nodes": nodes, "tasks_per_node": ranks_per_node,
                  "cpus_per_task": max(settings.cpus, threads), "mem_gb": settings.mem_gb,
                  "timeout_min": settings.time_min, "slurm_array_parallelism": settings.array_parallelism,
                  "name": f"specc-{jobs[0].stage}"}
    extra = {}
    if settings.account:
        extra["account"] = settings.account
    if settings.qos:
        extra["qos"] = settings.qos
    upstream = sorted({scheduler_ids[u].split("_")[0] for j in jobs for u in j.upstream.values() if u in scheduler_ids})
    if upstream:
        extra["dependency"] = "afterok:" + ":".join(upstream)
        extra["kill-on-invalid-dep"] = "yes"  # a failed upstream cancels dependents instead of leaving them pending
    executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None},
                               slurm_additional_parameters=extra)
    with executor.batch():
        handles = [executor.submit(SpeccJob(), path) for path in paths]
    return handles


TERMINAL = ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")


def wait_plan(plan: Plan, workspace: Path, on_event=lambda event, job, info="": None, poll_s: float = 2.0,
              deadline_s: float | None = None, on_progress=lambda counts: None) -> RunResult:
    """Follow submitted jobs until each is done, failed, or blocked by a failed upstream."""
    result = RunResult()
    open_jobs = {j.id: j for j in plan.jobs}
    started = time.time()
    while open_jobs:
        states = scheduler_states([job_dir(workspace, j).status().get("slurm_job_id") for j in open_jobs.values()])
        for job_id, job in list(open_jobs.items()):
            jd = job_dir(workspace, job)
            status = jd.status()
            if jd.is_done():
                result.done.append(job_id)
                on_event("done", job)
            elif any(u in result.failed or u in result.blocked for u in job.upstream.values()):
                result.blocked.append(job_id)
                on_event("blocked", job)
            elif status.get("state") == "failed" or states.get(status.get("slurm_job_id"), "").startswith(TERMINAL):
                message = status.get("error") or f"SLURM state {states.get(status.get('slurm_job_id'))}"
                result.failed[job_id] = f"{message} (log: {status.get('log', jd.log_path)})"
                on_event("failed", job, result.failed[job_id])
            else:
                continue
            del open_jobs[job_id]
        running = sum(1 for j in open_jobs.values() if states.get(job_dir(workspace, j).status().get("slurm_job_id") or "", "").startswith("RUNNING"))
        on_progress({"done": len(result.done), "running": running, "queued": len(open_jobs) - running,
                     "failed": len(result.failed), "blocked": len(result.blocked)})
        if open_jobs:
            if deadline_s is not None and time.time() - started > deadline_s:
                for job_id in open_jobs:
                    result.failed[job_id] = f"still not finished after {deadline_s:.0f}s"
                break
            time.sleep(poll_s)
    return result


def scheduler_states(slurm_ids) -> dict[str, str]:
    ids = sorted({i for i in slurm_ids if i})
    if not ids:
        return {}
    try:
        out = subprocess.run(["sacct", "-n", "-P", "-X", "--format=JobID,State", "-j", ",".join(ids)],
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    states = {}
    for line in out.splitlines():
        if "|" in line:
            job, state = line.split("|", 1)
            states[job.strip()] = state.strip()
    return states


def cancel(plan: Plan, workspace: Path) -> list[str]:
    """scancel every submitted or running job of the plan."""
    ids = []
    for job in plan.jobs:
        jd = job_dir(workspace, job)
        status = jd.status()
        if status.get("slurm_job_id") and not jd.is_done() and status.get("state") in ("submitted", "running"):
            ids.append(status["slurm_job_id"])
            jd.update_status(state="cancelled")
    if ids:
        subprocess.run(["scancel", *ids], check=False, capture_output=True, timeout=60)
    return ids
