"""Fixtures for tests that run real jobs on a real SLURM cluster.

Start a single-node cluster on this machine with ``bash scripts/slurm/up.sh``
(stop it with ``scripts/slurm/down.sh``). Without a reachable cluster every test
that uses ``slurm_cluster`` is skipped with a visible reason.

Mark such tests with ``@pytest.mark.slurm`` (registered in pyproject.toml), so
``pytest -m slurm`` / ``-m "not slurm"`` select them.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

SKIP_REASON = "no SLURM cluster reachable: run scripts/slurm/up.sh"

# `sinfo -o %T` states of a node that can run jobs; a responding node has no suffix
# (`idle*` = not responding, `idle~` = powered down, `idle#` = powering up, ...).
_UP_STATES = {"idle", "mixed", "allocated", "completing"}


def probe_slurm(timeout_s: float = 60.0) -> tuple[list[str], str]:
    """Return (names of nodes able to run jobs, why none were found)."""
    if shutil.which("sinfo") is None:
        return [], "`sinfo` not found"
    # `scontrol ping` answers at once when the controller is down, while `sinfo`
    # retries for about 9 s before giving up.
    if shutil.which("scontrol") is not None:
        try:
            ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=timeout_s)
        except (subprocess.TimeoutExpired, OSError):
            ping = None
        if ping is not None and ping.returncode != 0 and " is UP" not in ping.stdout:
            lines = (ping.stdout + ping.stderr).strip().splitlines()
            return [], f"`scontrol ping`: {lines[0] if lines else f'exit {ping.returncode}'}"
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%N %T"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return [], f"`sinfo` did not answer within {timeout_s:.0f}s"
    except OSError as exc:
        return [], f"`sinfo` could not run: {exc}"
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return [], f"`sinfo` failed: {lines[-1] if lines else f'exit {proc.returncode}'}"
    nodes, seen = [], []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        name, state = parts
        seen.append(f"{name}={state}")
        if state in _UP_STATES:
            nodes.append(name)
    return nodes, "" if nodes else f"no node up ({', '.join(seen) or 'no nodes'})"


@pytest.fixture(scope="session")
def slurm_cluster() -> dict:
    """Skip unless `sinfo` is installed and at least one node can run jobs.

    Returns ``{"nodes": [...]}``, the names of the nodes that are up.
    """
    nodes, why = probe_slurm()
    if not nodes:
        pytest.skip(f"{SKIP_REASON} ({why})")
    return {"nodes": nodes}


@pytest.fixture
def submitit_folder(tmp_path: Path) -> Path:
    """A submitit folder no earlier run has used.

    Job ids restart at 1 when the controller state is wiped
    (``SPECC_SLURM_FRESH=1 scripts/slurm/up.sh``), and submitit finds results by
    job id: a reused folder silently returns *stale* results from older jobs.
    """
    folder = tmp_path / f"submitit-{uuid.uuid4().hex[:12]}"
    folder.mkdir()
    return folder


@pytest.fixture
def slurm_executor(slurm_cluster, submitit_folder):
    """Factory: ``slurm_executor(**params)`` -> a submitit AutoExecutor on the SLURM
    cluster, writing into this test's fresh folder. Default ``timeout_min=5``: the
    pre-emption signal is sent 90 s before the time limit (and SLURM may send it up
    to 60 s early), so a shorter limit can requeue short jobs by surprise."""
    import submitit

    def make(**params):
        executor = submitit.AutoExecutor(folder=submitit_folder, cluster="slurm")
        params.setdefault("timeout_min", 5)
        executor.update_parameters(**params)
        return executor

    return make
