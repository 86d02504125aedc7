"""The SLURM executor: one job array per stage wave, `afterok` dependencies, submitted in one go.

`submit` returns once everything is submitted; `wait` follows the jobs. Each job is a submitit
Checkpointable: on pre-emption or time limit (USR2) submitit requeues it and the job resumes
from its last checkpoint, ending bit-identical on CPU.
"""

from __future__ import annotations

import subprocess
import time
from itertools import groupby
from pathlib import Path

import submitit

from specc.compiler.plan import Job, Plan
from specc.runtime.executor import Executor, Resources, RunResult, blocked_by_failure, scheduler_meaning

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


class SlurmExecutor(Executor):
    kind = "slurm"
    detaches = True

    def submit(self, plan: Plan) -> RunResult:
        """Submit every job not done yet (never one still queued or running); returns without waiting."""
        self.prepare(plan)
        result = RunResult()
        scheduler_ids: dict[str, str] = {}  # specc job id -> SLURM job id (array task)
        todo = []
        in_flight = self._in_flight(plan)
        for job in plan.jobs:
            if self.job_dir(job).is_done():
                result.cached.append(job.id)
                self.on_event("cached", job)
            elif job.id in in_flight:  # queued or running from an earlier `specc run`: never twice
                scheduler_ids[job.id] = in_flight[job.id]
                self.on_event("in flight", job, in_flight[job.id])
            else:
                todo.append(job)
        chunk = max(1, max_array_size() - 1)
        folder = self.workspace / "slurm" / time.strftime("%Y%m%d-%H%M%S")
        for (wave, stage), group in groupby(todo, key=lambda j: (j.wave, j.stage)):
            group = list(group)
            for start in range(0, len(group), chunk):
                members = group[start: start + chunk]
                handles = self._submit_array(members, folder / f"{wave:02d}-{stage}", scheduler_ids)
                for job, handle in zip(members, handles):
                    scheduler_ids[job.id] = handle.job_id
                    self.job_dir(job).update_status(state="submitted", slurm_job_id=handle.job_id,
                                                    submitted=time.time(), log=str(handle.paths.stdout))
                    result.submitted.append(job.id)
                    self.on_event("submitted", job, handle.job_id)
        return result

    def _in_flight(self, plan: Plan) -> dict[str, str]:
        """Jobs whose SLURM job is still pending or running: specc job id -> SLURM job id."""
        ids = {j.id: self.job_dir(j).status().get("slurm_job_id") for j in plan.jobs}
        states = scheduler_states(ids.values())
        return {job: sid for job, sid in ids.items()
                if sid and states.get(sid) and scheduler_meaning(states[sid]) not in ("ended", "completed")}

    def _submit_array(self, jobs: list[Job], folder: Path, scheduler_ids: dict) -> list:
        resources = Resources.for_stage(self.settings, jobs[0].stage, jobs)
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        upstream = sorted({scheduler_ids[u].split("_")[0] for j in jobs for u in j.upstream.values() if u in scheduler_ids})
        parameters, extra = slurm_parameters(resources, f"specc-{jobs[0].stage}", self.settings.array_parallelism,
                                             upstream)
        executor.update_parameters(**parameters, slurm_additional_parameters=extra)
        with executor.batch():
            handles = [executor.submit(SpeccJob(), str(self.job_dir(j).path)) for j in jobs]
        return handles

    def wait(self, plan: Plan, *, poll_s: float = 2.0, deadline_s: float | None = None,
             on_progress=lambda counts: None) -> RunResult:
        """Follow submitted jobs until each is done, failed, or blocked by a failed upstream."""
        result = RunResult()
        open_jobs = {j.id: j for j in plan.jobs}
        started = time.time()
        while open_jobs:
            states = scheduler_states([self.job_dir(j).status().get("slurm_job_id") for j in open_jobs.values()])
            meanings: dict[str, str | None] = {}
            for job_id, job in list(open_jobs.items()):
                jd = self.job_dir(job)
                status = jd.status()
                raw = states.get(status.get("slurm_job_id"))
                meanings[job_id] = scheduler_meaning(raw)
                if jd.is_done():
                    result.done.append(job_id)
                    self.on_event("done", job)
                elif blocked_by_failure(job, result.ended_badly()):
                    result.blocked.append(job_id)
                    self.on_event("blocked", job)
                elif status.get("state") == "failed" or meanings[job_id] == "ended":
                    message = status.get("error") or f"SLURM state {raw}"
                    result.failed[job_id] = f"{message} (log: {status.get('log', jd.log_path)})"
                    self.on_event("failed", job, result.failed[job_id])
                else:
                    continue
                del open_jobs[job_id]
            running = sum(1 for job_id in open_jobs if meanings.get(job_id) == "running")
            on_progress({"done": len(result.done), "running": running, "queued": len(open_jobs) - running,
                         "failed": len(result.failed), "blocked": len(result.blocked)})
            if open_jobs:
                if deadline_s is not None and time.time() - started > deadline_s:
                    for job_id in open_jobs:
                        result.failed[job_id] = f"still not finished after {deadline_s:.0f}s"
                    break
                time.sleep(poll_s)
        return result

    def cancel(self, plan: Plan) -> list[str]:
        """scancel every submitted or running job of the plan."""
        ids = []
        for job in plan.jobs:
            jd = self.job_dir(job)
            status = jd.status()
            if status.get("slurm_job_id") and not jd.is_done() and status.get("state") in ("submitted", "running"):
                ids.append(status["slurm_job_id"])
                jd.update_status(state="cancelled")
        if ids:
            subprocess.run(["scancel", *ids], check=False, capture_output=True, timeout=60)
        return ids


def slurm_parameters(resources: Resources, name: str, array_parallelism: int,
                     upstream: list[str]) -> tuple[dict, dict]:
    """submitit's parameters and sbatch's additional ones for an array of jobs of `resources`."""
    parameters = {"slurm_partition": resources.partition, "gpus_per_node": resources.gpus,
                  "cpus_per_task": resources.cpus, "mem_gb": resources.mem_gb, "timeout_min": resources.time_min,
                  "nodes": resources.nodes, "tasks_per_node": resources.tasks_per_node,
                  "slurm_array_parallelism": array_parallelism, "name": name}
    extra = {}
    if resources.account:
        extra["account"] = resources.account
    if resources.qos:
        extra["qos"] = resources.qos
    if upstream:
        extra["dependency"] = "afterok:" + ":".join(upstream)
        extra["kill-on-invalid-dep"] = "yes"  # a failed upstream cancels dependents instead of leaving them pending
    return {k: v for k, v in parameters.items() if v is not None}, extra


def scheduler_states(slurm_ids) -> dict[str, str]:
    """SLURM job id -> its state as sacct prints it (runtime.executor.scheduler_meaning reads it)."""
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
