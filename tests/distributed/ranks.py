"""Start a job as N ranks on this machine, as a launcher (torchrun, SLURM via submitit) would:
one process per rank, rendezvous by environment variables, gloo on the CPU."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

# runs one rank; from update `fail_step` on, that rank raises ("raise") or stops answering ("hang")
RANK_MAIN = """
import sys, time
from specc.runtime import job, microbatch
fail_step, how = int(sys.argv[2]), sys.argv[3]
if fail_step >= 0:
    real = microbatch.accumulated_update
    def failing(*args, _seen=[0]):
        _seen[0] += 1
        if _seen[0] > fail_step:
            if how == "hang":
                time.sleep(3600)
            raise RuntimeError("injected failure in this rank")
        return real(*args)
    for module in ("specc.runtime.stages.align", "specc.runtime.stages.sft", "specc.runtime.stages.preference_model"):
        __import__(module)
        sys.modules[module].accumulated_update = failing
sys.exit(job.main([sys.argv[1]]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks(job_path: Path, ranks: int, fail: dict[int, int] | None = None, how: str = "raise",
                timeout_s: float = 600) -> list[subprocess.Popen]:
    """One process per rank running the job; `fail` = {rank: step} makes a rank fail there
    (`how`: "raise" or "hang"); `timeout_s`: the collectives' timeout."""
    port = free_port()
    procs = []
    for rank in range(ranks):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
               "WORLD_SIZE": str(ranks), "LOCAL_RANK": str(rank), "SPECC_COLLECTIVE_TIMEOUT_S": str(timeout_s)}
        step = (fail or {}).get(rank, -1)
        procs.append(subprocess.Popen([sys.executable, "-c", RANK_MAIN, str(job_path), str(step), how], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return procs


def run_ranks(job_path: Path, ranks: int, wait_s: float = 300, **kwargs) -> list[tuple[int, str]]:
    """Run the job as `ranks` processes to the end: each rank's (exit code, output)."""
    procs = start_ranks(job_path, ranks, **kwargs)
    out = []
    for proc in procs:
        try:
            text, _ = proc.communicate(timeout=wait_s)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        out.append((proc.returncode, text))
    return out
