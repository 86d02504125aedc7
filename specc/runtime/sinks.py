"""Metric sinks in the ecosystem's formats, opt-in per spec (`report_to: [tensorboard, wandb]`).

The job dir and the DuckDB store stay the source of truth: a sink sees a copy of the metrics
a job writes, and a sink that fails (not installed, a full disk, a W&B error) is logged in the
job's log.txt and switched off; it never fails the job or changes a result.

  tensorboard  event files in <job dir>/tensorboard/<stage>,<swept key>=<value>,.../, so
               `tensorboard --logdir runs/` shows every job named by its stage and swept values
  wandb        one W&B run per job (id = the job id, config = its resolved config), written under
               <job dir>/wandb; offline unless WANDB_MODE says otherwise (`wandb sync` uploads it)

The runner writes which sinks a spec asked for to <job dir>/sinks.json at submission: not in
job.json, since where metrics are copied to is no part of what a job computes (its id).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import time
import traceback
from pathlib import Path

from specc.runtime.jobdir import JobDir, atomic_write_json

SINKS_FILE = "sinks.json"
KNOWN = ("tensorboard", "wandb")


def run_name(job) -> str:
    """`stage,key=value,...`: the stage, then every swept value that shaped the job, each key by
    its last part (`lr`) unless two of them share it."""
    keys = {key: key.split(".", 1)[1] if key.startswith(job.stage + ".") else key for key in job.sweep}
    last = [key.rsplit(".", 1)[-1] for key in keys.values()]
    short = {key: name.rsplit(".", 1)[-1] if last.count(name.rsplit(".", 1)[-1]) == 1 else name
             for key, name in keys.items()}
    return ",".join([job.stage, *(f"{short[key]}={job.sweep[key]}" for key in sorted(job.sweep))])


def write_sink_settings(plan, workspace: Path, jobs=None) -> None:
    """Record the spec's `report_to` in each job dir to run (removed where the spec has none)."""
    wanted = list(getattr(plan.spec, "report_to", None) or [])
    for job in jobs if jobs is not None else plan.jobs:
        path = Path(workspace) / "jobs" / job.id / SINKS_FILE
        if wanted:
            atomic_write_json(path, {"report_to": wanted, "project": plan.spec.name, "run_name": run_name(job)})
        else:
            path.unlink(missing_ok=True)


def open_sinks(job: JobDir, start_step: int = 0) -> list:
    """The sinks the job dir's sinks.json asks for, each open; none without the file. A job
    resumed at `start_step` rewrites the steps after it."""
    try:
        settings = json.loads((job.path / SINKS_FILE).read_text())
    except (OSError, ValueError):
        return []
    sinks = []
    for name in settings.get("report_to") or []:
        opener = {"tensorboard": TensorBoardSink, "wandb": WandbSink}.get(name)
        if opener is None:
            _log(job, f"metric sink {name!r} unknown (expected one of {', '.join(KNOWN)}): skipped")
            continue
        try:
            sinks.append(Guarded(job, name, opener(job, settings, start_step)))
        except Exception:  # the sink's package missing or broken: the job runs without it
            _log(job, f"metric sink {name} could not start; the job goes on without it:\n{traceback.format_exc()}")
    return sinks


class Guarded:
    """A sink whose first failure is logged and switches it off."""

    def __init__(self, job: JobDir, name: str, sink):
        self.job, self.name, self.sink = job, name, sink
        atexit.register(self.close)  # a job that raises still flushes what its sinks hold

    def step(self, step: int, metrics: dict) -> None:
        self._call("log", step, metrics)

    def close(self) -> None:
        self._call("close")
        self.sink = None

    def _call(self, method: str, *args) -> None:
        if self.sink is None:
            return
        try:
            getattr(self.sink, method)(*args)
        except Exception:
            _log(self.job, f"metric sink {self.name} failed and is switched off; the job goes on:\n"
                           f"{traceback.format_exc()}")
            self.sink = None


class TensorBoardSink:
    def __init__(self, job: JobDir, settings: dict, start_step: int):
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        folder = job.path / "tensorboard" / _safe(settings.get("run_name") or job.id)
        job_json = job.job_json()
        # a resumed job rewrites the steps after its checkpoint: purge_step hides the first attempt's
        self.writer = SummaryWriter(str(folder), flush_secs=5, purge_step=start_step or None)
        self.writer.add_text("config", "```\n" + json.dumps(_run_config(job_json), indent=1, sort_keys=True) + "\n```", 0)

    def log(self, step: int, metrics: dict) -> None:
        # one event holding every metric of the step: one add_scalar per metric cost a tiny
        # model 8% of its step time, this ~1% (benchmarks/bench_progress.py)
        from tensorboard.compat.proto.summary_pb2 import Summary

        values = [Summary.Value(tag=name, simple_value=float(value)) for name, value in metrics.items()]
        self.writer._get_file_writer().add_summary(Summary(value=values), step)

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    def __init__(self, job: JobDir, settings: dict, start_step: int):
        import wandb

        job_json = job.job_json()
        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or settings.get("project") or "specc",
            name=settings.get("run_name") or job.id, id=job.id, resume="allow", group=job_json["stage"],
            config=_run_config(job_json), dir=str(job.path),
            mode=os.environ.get("WANDB_MODE") or "offline",  # a compute node rarely has network: sync later
            settings=wandb.Settings(console="off", x_disable_stats=True))

    def log(self, step: int, metrics: dict) -> None:
        self.run.log({name: float(value) for name, value in metrics.items()}, step=step)

    def close(self) -> None:
        self.run.finish()


def _run_config(job_json: dict) -> dict:
    return {**job_json["config"], "specc": {"job_id": job_json["id"], "stage": job_json["stage"],
                                            "kind": job_json["kind"], "sweep": job_json.get("sweep", {}),
                                            "upstream": job_json.get("upstream", {})}}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", name)[:200]


def _log(job: JobDir, message: str) -> None:
    try:
        with open(job.log_path, "a") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
    except OSError:
        pass
