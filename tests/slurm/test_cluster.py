"""Real jobs on a real SLURM cluster through submitit.

Needs a running cluster (``bash scripts/slurm/up.sh``); skipped otherwise.
Every wait has a deadline, so a broken cluster fails a test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit
from submitit.core.utils import FailedJobError

pytestmark = pytest.mark.slurm

# pytest imports this file under a rootdir-relative name (e.g. `slurm.test_cluster`)
# that the job's interpreter cannot import: ship the job code by value instead.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


# --------------------------------------------------------------------- helpers
def wait_done(jobs, timeout_s: float) -> None:
    """Wait until every job is done; on timeout cancel them and fail the test."""
    jobs = list(jobs)
    deadline = time.monotonic() + timeout_s
    while not all(job.done() for job in jobs):
        if time.monotonic() > deadline:
            stuck = [job for job in jobs if not job.done(force_check=True)]
            details = []
            for job in stuck:
                details.append(f"job {job.job_id}: state={job.state} stderr={job.stderr()!r}")
                job.cancel(check=False)
            pytest.fail(f"{len(stuck)} job(s) not done after {timeout_s:.0f}s:\n" + "\n".join(details))
        time.sleep(0.2)


def result_within(job, timeout_s: float):
    wait_done([job], timeout_s)
    return job.result()


def wait_until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.2)


def sacct_state(job_id: str) -> str:
    proc = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


# ------------------------------------------------------------ job functions
def add(a: int, b: int) -> dict:
    return {"sum": a + b, "slurm_job_id": os.environ.get("SLURM_JOB_ID")}


def square_together(x: int, folder: str, together: int, cap_s: float = 300.0) -> tuple[int, float, float]:
    """x*x, once `together` tasks have started (each leaves a file in `folder`): tasks that can
    run at once overlap however slowly the machine starts them; `cap_s` ends the wait if not."""
    start = time.time()
    Path(folder, str(x)).touch()
    while len(list(Path(folder).iterdir())) < together and time.time() - start < cap_s:
        time.sleep(0.1)
    return x * x, start, time.time()


def stamp(path: str, sleep_s: float) -> None:
    """Write this job's start and end times (epoch seconds) to `path`."""
    start = time.time()
    time.sleep(sleep_s)
    Path(path).write_text(json.dumps({"start": start, "end": time.time()}))


def explode(message: str) -> None:
    raise ValueError(message)


class StepCounter(submitit.helpers.Checkpointable):
    """Sums i*i over `n_steps` steps, one every `step_s` seconds.

    Progress lives in a file-backed counter (`state.json`, replaced atomically
    after every step), so a requeued run resumes from its last saved step. Every
    (re)start appends the step it started from to `starts`.
    """

    def __init__(self, workdir: str, n_steps: int, step_s: float, hold_at: int | None = None) -> None:
        self.workdir = workdir
        self.n_steps = n_steps
        self.step_s = step_s
        self.hold_at = hold_at  # wait at this step until the test creates `release`: no race with the clock

    def _save(self, state: dict) -> None:
        path = Path(self.workdir) / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    def __call__(self) -> dict:
        path = Path(self.workdir) / "state.json"
        state = json.loads(path.read_text()) if path.exists() else {"step": 0, "acc": 0, "starts": []}
        state["starts"].append(state["step"])
        self._save(state)
        while state["step"] < self.n_steps:
            while state["step"] == self.hold_at and not (Path(self.workdir) / "release").exists():
                time.sleep(0.1)
            time.sleep(self.step_s)
            state = {**state, "acc": state["acc"] + state["step"] ** 2, "step": state["step"] + 1}
            self._save(state)
        return {"acc": state["acc"], "starts": state["starts"]}

    def checkpoint(self, *args, **kwargs):
        with open(Path(self.workdir) / "checkpoints.log", "a") as log:
            log.write(f"{time.time()}\n")
        return super().checkpoint(*args, **kwargs)


# ------------------------------------------------------------------- tests
def test_submit_returns_result(slurm_executor):
    executor = slurm_executor(name="specc-test-submit")
    job = executor.submit(add, 2, 40)
    result = result_within(job, 600)
    assert result == {"sum": 42, "slurm_job_id": job.job_id}


def test_job_array_returns_every_result_in_order(slurm_executor, tmp_path):
    executor = slurm_executor(name="specc-test-array")
    xs = list(range(6))
    started = tmp_path / "started"
    started.mkdir()
    jobs = executor.map_array(square_together, xs, [str(started)] * len(xs), [3] * len(xs))
    with executor.batch():
        batch_jobs = [executor.submit(add, x, 100) for x in xs]
    assert len({job.job_id.split("_")[0] for job in jobs}) == 1, "map_array should submit one array"
    assert len({job.job_id.split("_")[0] for job in batch_jobs}) == 1, "batch() should submit one array"

    wait_done(jobs + batch_jobs, 600)
    results = [job.result() for job in jobs]
    assert [r[0] for r in results] == [x * x for x in xs]
    assert [job.result()["sum"] for job in batch_jobs] == [x + 100 for x in xs]

    # the node advertises more slots than cores: small tasks overlap in time
    def running_at(t):
        return sum(start <= t < end for _, start, end in results)

    peak = max(running_at(start) for _, start, _ in results)
    assert peak >= min(3, len(xs)), f"array tasks barely overlapped (peak {peak} at once)"


def test_afterok_dependency_runs_after_parent(slurm_executor, tmp_path):
    executor = slurm_executor(name="specc-test-dep")
    parent_file, child_file = tmp_path / "parent.json", tmp_path / "child.json"
    parent = executor.submit(stamp, str(parent_file), 3.0)
    executor.update_parameters(slurm_additional_parameters={"dependency": f"afterok:{parent.job_id}"})
    child = executor.submit(stamp, str(child_file), 0.0)

    wait_done([parent, child], 600)
    parent.result(), child.result()
    p, c = json.loads(parent_file.read_text()), json.loads(child_file.read_text())
    assert c["start"] >= p["end"], f"child started at {c['start']:.2f}, before its parent ended at {p['end']:.2f}"


def test_exception_surfaces_as_failed_job_error(slurm_executor):
    executor = slurm_executor(name="specc-test-fail")
    job = executor.submit(explode, "specc-boom-1234")
    wait_done([job], 600)
    with pytest.raises(FailedJobError, match=r"ValueError: specc-boom-1234"):
        job.result()
    # accounting (slurmdbd) records the failure too
    assert wait_until(lambda: sacct_state(job.job_id) == "FAILED", 300, f"sacct to report job {job.job_id} FAILED")


def test_preempted_checkpointable_job_is_requeued_and_resumes(slurm_executor, tmp_path):
    n_steps, step_s = 24, 0.5
    expected = sum(i * i for i in range(n_steps))
    interrupted_dir, reference_dir = tmp_path / "interrupted", tmp_path / "reference"
    interrupted_dir.mkdir()
    reference_dir.mkdir()

    executor = slurm_executor(name="specc-test-preempt")
    job = executor.submit(StepCounter(str(interrupted_dir), n_steps, step_s, hold_at=6))
    reference = executor.submit(StepCounter(str(reference_dir), n_steps, step_s))

    state_file = interrupted_dir / "state.json"

    def progress():
        try:
            return json.loads(state_file.read_text())["step"]
        except (OSError, ValueError):
            return 0

    # The job holds at step 6 until released, so the pre-emption lands mid-run however slowly
    # the machine delivers it; it is released once the requeued run has started.
    wait_until(lambda: progress() >= 4, 600, "the job to reach step 4")
    job._interrupt()  # SIGTERM (ignored by submitit) then USR2: pre-emption

    def restarted():
        try:
            return len(json.loads(state_file.read_text())["starts"]) >= 2
        except (OSError, ValueError):
            return False

    wait_until(restarted, 600, "the pre-empted job to be requeued and start again")
    (interrupted_dir / "release").touch()
    wait_done([job, reference], 600)
    result, ref_result = job.result(), reference.result()

    assert ref_result == {"acc": expected, "starts": [0]}
    assert result["acc"] == ref_result["acc"] == expected
    starts = result["starts"]
    assert len(starts) == 2 and starts[0] == 0 and 4 <= starts[1] < n_steps, (
        f"expected one restart resuming mid-run, got starts={starts}"
    )
    assert (interrupted_dir / "checkpoints.log").read_text().count("\n") == 1, "checkpoint() should run once"
    show = subprocess.run(["scontrol", "show", "job", job.job_id], capture_output=True, text=True, timeout=120)
    assert "Restarts=1" in show.stdout, show.stdout + show.stderr
