"""Watching a SLURM run: `specc run --wait` in a terminal and `specc status` show a running
job's step from its job directory, as they do locally. Needs a cluster (scripts/slurm/up.sh)."""

import os
import re

import pytest

from specc.runtime.progress import read_progress
from tests.slurm.conftest import probe_slurm
from tests.watching.helpers import CLI, MINI, cli_env, jobs_of, specc
from tests.watching.test_watching_a_run import Terminal, wait_for

pytestmark = pytest.mark.slurm
SETTINGS = ["--set", "executor.kind=slurm", "--set", "stages.offline.train.steps=100000", "--set", "executor.time_min=10",
            "--set", "executor.cpus=1", "--set", "executor.mem_gb=2"]


@pytest.fixture(scope="module")
def cluster():
    nodes, why = probe_slurm()
    if not nodes:
        pytest.skip(f"no SLURM cluster reachable: run scripts/slurm/up.sh ({why})")


def test_wait_and_status_show_a_slurm_jobs_step(cluster, tmp_path):
    workspace = tmp_path / "runs"
    job = jobs_of(workspace, "offline", [s for s in SETTINGS if s != "--set"])[0]
    terminal = Terminal([*CLI, "run", str(MINI), *SETTINGS, "--workspace", str(workspace), "--wait",
                         "--no-report"], tmp_path, cli_env(COLUMNS="220", LINES="40"))
    try:
        wait_for(lambda: (read_progress(job.path) or {}).get("step", 0) >= 10, 600, "the align job to train on SLURM")
        assert "6 submitted" in terminal.text
        try:
            wait_for(lambda: re.search(rf"offline\s+{job.id}\s+\d+/100000", terminal.text), 30, "the live display")
        except AssertionError:
            raise AssertionError(f"the display drew:\n{terminal.text[-3000:]}") from None
        assert re.search(r"mini: 4/6 done · [12] running", terminal.text), terminal.text[-2000:]
        status = specc("status", MINI, *SETTINGS, "--workspace", workspace, cwd=tmp_path).stdout
        line = next(line for line in status.splitlines() if job.id in line and "running:" in line)
        assert re.search(r"step \d+/100000 .* loss \d+\.\d{4} .* last write \d+:\d\d ago", line), line
    finally:
        specc("cancel", MINI, *SETTINGS, "--workspace", workspace, cwd=tmp_path, check=False)
        code = terminal.proc.wait(300)
        terminal.reader.join(5)
        os.close(terminal.master)
    assert code == 1  # the cancelled jobs end the wait as failed
