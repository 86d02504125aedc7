"""A run watched while it runs: `specc run` in a terminal draws live progress, `specc status`
shows how far each running job is, and `specc report` says which jobs are not finished.

One real run in the background (a long offline align job on the local executor, in a
pseudo-terminal), observed from outside, then stopped with Ctrl-C as a user would."""

import os
import pty
import re
import signal
import subprocess
import threading
import time

import pytest

from specc.runtime.progress import read_progress
from tests.watching.helpers import CLI, MINI, cli_env, jobs_of, specc

LONG = ["--set", "stages.offline.train.steps=100000"]


class Terminal:
    """A command running in a pseudo-terminal; everything it draws is collected."""

    def __init__(self, args, cwd, env):
        master, slave = pty.openpty()
        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True)
        os.close(slave)
        self.master, self.chunks = master, []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.chunks.append(data)

    @property
    def text(self) -> str:
        """What was drawn, without the terminal's colour and cursor codes."""
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(self.chunks).decode(errors="replace"))

    def interrupt(self, timeout=180) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
        try:
            return self.proc.wait(timeout)
        finally:
            self.reader.join(5)
            os.close(self.master)


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("watched")
    workspace = cwd / "runs"
    env = cli_env(COLUMNS="220", LINES="40")
    terminal = Terminal([*CLI, "run", str(MINI), *LONG, "--workspace", str(workspace), "--no-report"], cwd, env)
    first, second = jobs_of(workspace, "offline", LONG[1:])
    try:
        wait_for(lambda: (read_progress(first.path) or {}).get("step", 0) >= 20 or terminal.proc.poll() is not None,
                 600, "the first align job to train 20 steps")
        assert terminal.proc.poll() is None, terminal.text
        time.sleep(2.5)  # the display redraws twice a second
        yield {"cwd": cwd, "workspace": workspace, "terminal": terminal, "running": first, "waiting": second,
               "status": specc("status", MINI, *LONG, "--workspace", workspace, cwd=cwd),
               "report": specc("report", MINI, *LONG, "--workspace", workspace, cwd=cwd)}
    finally:
        if terminal.proc.poll() is None:
            terminal.interrupt()


def test_run_in_a_terminal_draws_counts_and_the_running_jobs_step(watched):
    text, job = watched["terminal"].text, watched["running"]
    assert re.search(r"mini: 4/6 done · 1 running · 1 pending", text), text[-3000:]
    assert re.search(rf"offline\s+{job.id}\s+\d+/100000", text), text[-3000:]
    assert re.search(r"\d+\.\d/s", text)  # steps per second
    assert re.search(r"win \d\.\d{3} @\d+", text)  # the latest win rate, once an evaluation landed


def test_status_shows_each_running_jobs_step_metrics_and_silence(watched):
    out, job = watched["status"].stdout, watched["running"]
    line = next(line for line in out.splitlines() if job.id in line and "/100000" in line)
    step = int(re.search(r"(\d+)/100000", line).group(1))
    assert step >= 20
    assert re.search(r"loss \d+\.\d{4}", line)  # its last loss
    assert re.search(r"last write \d+:\d\d ago", line)  # how long since it last wrote
    assert "possibly stuck" not in out


def test_report_written_mid_run_lists_the_unfinished_jobs(watched):
    html = (watched["workspace"] / "reports" / "mini.html").read_text()
    banner = html[html.index('id="unfinished"'):html.index("</div>", html.index('id="unfinished"'))]
    assert "2 of 6 jobs are not finished" in banner
    assert re.search(rf"<td>{watched['running'].id}</td><td>running</td><td>\d+/100000</td>", banner)
    assert f"<td>{watched['waiting'].id}</td><td>pending</td>" in banner


def test_ctrl_c_stops_the_run_and_the_job_resumes_later(watched):
    terminal = watched["terminal"]
    code = terminal.interrupt()
    assert code == 130, terminal.text[-2000:]
    assert watched["running"].status()["state"] == "interrupted"
