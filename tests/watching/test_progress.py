"""progress.json: what a training job says about how far it is, and how readers judge it."""

import json
import time

from specc.live import STUCK_FLOOR_S, is_stuck, running_view
from specc.runtime.jobdir import JobDir
from specc.runtime.progress import PROGRESS, Progress, read_progress
from tests.watching.helpers import jobs_of, metric_series


def test_a_finished_job_reports_its_last_step_loss_and_evaluation(mini_run):
    for jd in jobs_of(mini_run, "offline"):
        progress = read_progress(jd.path)
        assert progress["step"] == progress["steps"] == 10
        assert progress["metrics"]["train/loss"] == metric_series(jd, "train/loss")[10]
        assert progress["eval_step"] == 10
        assert progress["eval"]["eval/win_rate"] == metric_series(jd, "eval/win_rate")[10]
        assert not [name for name in progress["eval"] if name.startswith("outcome/")]  # per-prompt rows stay out
        assert progress["step_s"] > 0 and progress["longest_gap_s"] >= 0


def test_jobs_without_a_training_loop_write_no_progress(mini_run):
    assert read_progress(jobs_of(mini_run, "task")[0].path) is None


def test_writes_are_throttled_but_evaluations_are_written_at_once(tmp_path):
    jd = JobDir(tmp_path / "job")
    jd.path.mkdir()
    progress = Progress(jd, steps=1000, start_step=200, every_s=3600)
    assert read_progress(jd.path)["step"] == 200  # the start is written at once
    for step in range(201, 600):
        progress.step(step, {"train/loss": float(step)})
    assert read_progress(jd.path)["step"] == 200  # within the interval: no write
    progress.evaluated(599, {"eval/win_rate": 0.75, "outcome/win/00000": 1.0})
    record = read_progress(jd.path)
    assert (record["step"], record["metrics"], record["eval"]) == (599, {"train/loss": 599.0}, {"eval/win_rate": 0.75})
    assert record["first_step"] == 200
    progress.step(600, {"train/loss": float("nan")})
    progress.close()
    assert read_progress(jd.path)["metrics"] == {}  # JSON has no NaN: left out, the file stays valid JSON
    assert not [p for p in jd.path.iterdir() if p.name != PROGRESS]  # no temporary files left behind


def test_a_job_silent_far_longer_than_its_step_time_is_flagged(tmp_path):
    jd = JobDir(tmp_path / "job")
    jd.path.mkdir()
    now = time.time()
    record = {"step": 50, "steps": 100, "step_s": 2.0, "longest_gap_s": 10.0, "metrics": {"train/loss": 0.5},
              "eval": {"eval/win_rate": 0.6}, "eval_step": 50}

    class Job:
        stage, id = "online", jd.id

    for silent, stuck in ((5.0, False), (STUCK_FLOOR_S - 1, False), (STUCK_FLOOR_S + 1, True)):
        (jd.path / PROGRESS).write_text(json.dumps({**record, "updated": now - silent}))
        view = running_view(Job, jd, now)
        assert view.stuck is stuck, silent
        assert (view.step, view.steps, view.loss, view.eta_s) == (50, 100, 0.5, 100.0)
        assert view.evaluation == "win 0.600 @50"


def test_stuck_means_far_longer_than_any_gap_the_job_has_had():
    assert not is_stuck(1000.0, step_s=0.1, longest_gap_s=60.0)  # its evaluations take a minute
    assert is_stuck(1300.0, step_s=0.1, longest_gap_s=60.0)
    assert not is_stuck(3000.0, step_s=200.0, longest_gap_s=None)  # a slow step, not a hang
    assert is_stuck(4001.0, step_s=200.0, longest_gap_s=None)


def test_status_flags_a_silent_live_job_and_watch_ends_when_nothing_runs(mini_run, tmp_path):
    import shutil
    import socket
    import subprocess

    from tests.watching.helpers import MINI, specc

    workspace = tmp_path / "runs"
    shutil.copytree(mini_run, workspace)
    job = jobs_of(workspace, "offline")[0]
    (job.path / "DONE").unlink()
    hung = subprocess.Popen(["sleep", "600"])  # a live process that writes nothing: a hung job
    try:
        job.update_status(state="running", host=socket.gethostname(), pid=hung.pid)
        record = read_progress(job.path)
        (job.path / PROGRESS).write_text(json.dumps({**record, "step": 7, "updated": time.time() - 3600}))
        out = specc("status", MINI, "--workspace", workspace, cwd=tmp_path).stdout
        line = next(line for line in out.splitlines() if job.id in line and "running:" in line)
        assert "step 7/10" in line and "last write 1:00:0" in line and "possibly stuck" in line, out
    finally:
        hung.kill()
        hung.wait()
    watched = specc("status", MINI, "--watch", "--interval", "0.5", "--workspace", mini_run, cwd=tmp_path, timeout=120)
    assert "offline" in watched.stdout and "running:" not in watched.stdout  # every job done: it returns
