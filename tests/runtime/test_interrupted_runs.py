"""Ctrl-C of `specc run`: the workers stop, every record says interrupted, and nothing waits on a debugger."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from specc.runtime.executor import _alive
from specc.runtime.jobdir import JobDir

CLI = [sys.executable, "-c", "from specc.cli import main; main()"]
SPEC = """
name: interrupted
defaults:
  model: {size: XS}
  train: {batch_size: 8, eval_every: 5000, checkpoint_every: 5}
stages:
  task:   {kind: dataset, task: {train_prompts: 32, eval_prompts: 8}}
  golden: {kind: oracle, data: task}
  labels: {kind: label, data: task, judge: golden}
  sft:    {kind: sft, data: labels, train: {steps: 100000}}
"""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """The sft job's finished upstream jobs, run in-process once: each test's `specc run` starts only sft."""
    from specc.compiler.plan import compile_spec
    from specc.runtime.executor import run_local

    tmp = tmp_path_factory.mktemp("upstream")
    spec = tmp / "interrupted.yaml"
    spec.write_text(SPEC.replace("  sft:", "  # sft:"))
    assert run_local(compile_spec(spec), tmp / "runs", kind="debug").ok
    return tmp / "runs"


@pytest.mark.parametrize("to_group", [False, True], ids=["kill-INT-runner", "ctrl-C-process-group"])
def test_sigint_stops_the_local_workers_and_marks_them_interrupted(tmp_path, to_group, upstream):
    shutil.copytree(upstream, tmp_path / "runs")
    spec = tmp_path / "interrupted.yaml"
    spec.write_text(SPEC)
    runner = subprocess.Popen([*CLI, "run", str(spec), "-w", str(tmp_path / "runs"), "--no-report", "--executor", "local"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)  # its own process group, as a terminal gives it
    sft = None
    deadline = time.monotonic() + 540  # generous: the machine may be busy; the loop ends as soon as sft trains
    while sft is None and time.monotonic() < deadline and runner.poll() is None:
        for d in (tmp_path / "runs" / "jobs").glob("*/checkpoint/state.pt"):
            sft = JobDir(d.parent.parent)
        time.sleep(0.2)
    assert sft is not None, "the sft job never checkpointed"
    worker = sft.status()["pid"]
    if to_group:  # what Ctrl-C at a terminal does: every process of the group gets SIGINT
        os.killpg(runner.pid, signal.SIGINT)
    else:  # to the runner alone, as `kill -INT` does
        runner.send_signal(signal.SIGINT)
    out, err = runner.communicate(timeout=300)
    assert runner.returncode == 130, out + err
    assert "Traceback" not in err and "interrupted" in err
    assert not _alive(worker) or _zombie(worker)  # stopped, not orphaned
    assert sft.status()["state"] == "interrupted" and not sft.is_done()
    con = duckdb.connect(str(tmp_path / "runs" / "specc.duckdb"), read_only=True)
    assert con.execute("select status from jobs where job_id = ?", [sft.id]).fetchone() == ("interrupted",)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return True


@pytest.mark.timeout(300)
def test_the_debug_executor_never_waits_in_a_debugger_unless_asked(tmp_path, monkeypatch, capfd):
    from specc.compiler.plan import compile_spec
    from specc.runtime.executor import run_local

    spec = tmp_path / "interrupted.yaml"
    spec.write_text(SPEC)
    monkeypatch.setenv("SPECC_DEVICE", "tpu")  # every job fails at once, before any work
    read_end, write_end = os.pipe()  # stdin stays open, as a terminal's would: a debugger would wait on it
    monkeypatch.setattr(sys, "stdin", os.fdopen(read_end))
    try:
        result = run_local(compile_spec(spec), tmp_path / "runs", kind="debug")
    finally:
        os.close(write_end)
    assert len(result.failed) == 1 and "SPECC_DEVICE" in next(iter(result.failed.values()))
    assert "(Pdb)" not in "".join(capfd.readouterr())
