"""What a job dir records about its attempts."""

from __future__ import annotations

import pytest

from specc.runtime import jobdir
from specc.runtime.jobdir import JobDir


def test_wall_s_counts_the_attempts_not_the_downtime_between_them(tmp_path, monkeypatch):
    clock = iter([100.0, 110.0, 900.0, 903.0, 2000.0, 2002.0])
    monkeypatch.setattr(jobdir.time, "time", lambda: next(clock))
    job = JobDir(tmp_path / "0123456789abcdef")
    job.mark_running(threads=1)  # 100
    job.mark_interrupted()  # 110: pre-empted after 10 s
    job.mark_running(threads=1)  # 900, requeued much later
    job.mark_failed("boom")  # 903: 3 s more
    job.mark_running(threads=1)  # 2000: rerun
    job.mark_done({})  # 2002
    status = job.status()
    assert status["wall_s"] == pytest.approx(15.0) and status["attempt"] == 3 and status["started"] == 100.0


def test_a_killed_jobs_message_names_only_logs_that_exist(tmp_path):
    from specc.runtime.executor import _Finished, _outcome

    job = JobDir(tmp_path / "0123456789abcdef")
    job.mark_running(threads=1)  # then killed before it wrote a log
    message = _outcome(_Finished(), job)
    assert "killed" in message and "log.txt" not in message
    job.log_path.write_text("Traceback ...\n")
    assert f"logs: {job.log_path}" in _outcome(_Finished(), job)
