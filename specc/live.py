"""Watching a run from its job directories: the live display of `specc run` and `specc status`.

Everything here reads files that jobs write anyway (status.json, progress.json), so it shows
local and SLURM jobs alike and costs a job nothing. In a terminal `specc run` draws a table
that refreshes in place; elsewhere (CI, logs) it prints plain lines as it always did.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from specc.runtime.jobdir import JobDir
from specc.runtime.progress import read_progress

# A job silent this many times longer than its usual gap between progress writes (or than its
# step time) is flagged; never before STUCK_FLOOR_S, since a job's first evaluation or a model
# load can take a while.
STUCK_FACTOR, STUCK_FLOOR_S = 20.0, 300.0
EVAL_SHOWN = (("eval/win_rate", "win"), ("eval/judge_accuracy", "acc"), ("eval/classifier_accuracy", "cls"))


@dataclass
class Running:
    """What a running job's directory says about how far it is."""

    stage: str
    job_id: str
    step: int | None = None
    steps: int | None = None
    step_s: float | None = None  # seconds per step so far in this attempt, evaluations included
    loss: float | None = None
    evaluation: str = ""  # e.g. "win 0.61 @100"
    silent_s: float | None = None  # since the job last wrote progress (or started)
    stuck: bool = False

    @property
    def eta_s(self) -> float | None:
        if self.step_s is None or self.steps is None or self.step is None:
            return None
        return max(0.0, (self.steps - self.step) * self.step_s)


def running_view(job, jd: JobDir, now: float | None = None) -> Running:
    """`job` (anything with .stage and .id) as its progress.json and status.json show it."""
    now = time.time() if now is None else now
    view = Running(job.stage, job.id)
    progress = read_progress(jd.path)
    if progress is None:  # not training yet (loading, a data stage): silent since it started
        started = jd.status().get("attempt_started")
        view.silent_s = now - started if isinstance(started, (int, float)) else None
        return view
    view.step, view.steps, view.step_s = progress.get("step"), progress.get("steps"), progress.get("step_s")
    view.loss = (progress.get("metrics") or {}).get("train/loss")
    evals = progress.get("eval") or {}
    for name, label in EVAL_SHOWN:
        if name in evals:
            view.evaluation = f"{label} {evals[name]:.3f} @{progress.get('eval_step')}"
            break
    if isinstance(progress.get("updated"), (int, float)):
        view.silent_s = max(0.0, now - progress["updated"])
        view.stuck = is_stuck(view.silent_s, view.step_s, progress.get("longest_gap_s"))
    return view


def is_stuck(silent_s: float, step_s: float | None, longest_gap_s: float | None) -> bool:
    """Silent for far longer than the job's step time and than any gap it has had so far."""
    usual = max(step_s or 0.0, longest_gap_s or 0.0)
    return silent_s > max(STUCK_FLOOR_S, STUCK_FACTOR * usual)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _cells(v: Running) -> list[str]:
    """step, rate, ETA, loss, evaluation"""
    return [f"{v.step}/{v.steps}" if v.step is not None else "-", f"{1 / v.step_s:.1f}/s" if v.step_s else "-",
            duration(v.eta_s), f"{v.loss:.4f}" if v.loss is not None else "-", v.evaluation or "-"]


def running_table(views: list[Running]) -> Table:
    """The live display's rows: one per running job, with a bar."""
    table = Table(box=None, pad_edge=False)
    for column in ("stage", "job", "step", "", "rate", "ETA", "loss", "eval"):
        table.add_column(column, justify="right" if column in ("step", "rate", "ETA", "loss") else "left",
                         no_wrap=True)
    for v in views:
        step, rate, eta, loss, evaluation = _cells(v)
        bar = ProgressBar(total=v.steps or 1, completed=v.step or 0, width=20) if v.steps else Text("")
        table.add_row(v.stage, v.job_id, step, bar, rate, eta, loss, evaluation)
    return table


def running_line(v: Running) -> Text:
    """`specc status`'s line for a running job: plain, so a log or a narrow terminal keeps it whole."""
    step, rate, eta, loss, evaluation = _cells(v)
    silent = f"{duration(v.silent_s)} ago" if v.silent_s is not None else "-"
    line = Text(f"  running: {v.stage:<16} {v.job_id}  step {step}  {rate}  ETA {eta}  loss {loss}  "
                f"{evaluation}  last write {silent}")
    if v.stuck:
        line.append(f"  possibly stuck (silent far longer than its {v.step_s or 0:.2g} s per step)", style="bold red")
    return line


class RunDisplay:
    """Counts of a run's jobs and a row per running job, fed by the runner's events and
    refreshed from the job dirs. `live()` draws it in place when the console is a terminal."""

    STATUS_EVERY_S = 2.0  # how often the open jobs' status.json are read again (SLURM: many jobs)
    ROWS = 20  # running jobs drawn at most: the block must fit a terminal

    def __init__(self, plan, workspace, console: Console):
        self.jobs = {job.id: job for job in plan.jobs}
        self.root = workspace / "jobs"
        self.console, self.name = console, plan.spec.name
        self.ended: dict[str, str] = {}  # job id -> done | failed | blocked
        self.launched: set[str] = set()  # started locally, or submitted to (or found in) SLURM's queue
        self.started = time.time()
        self._running: list[str] = []
        self._scanned = 0.0

    def event(self, event: str, job) -> None:
        if event in ("started", "submitted", "in flight", "waiting"):
            self.launched.add(job.id)
        elif event in ("done", "cached"):
            self.ended[job.id] = "done"
        elif event in ("failed", "blocked", "stopped"):
            self.ended[job.id] = "failed" if event == "stopped" else event

    def running(self) -> list[str]:
        """Launched jobs not ended whose status.json says running (a job marks itself when it
        starts); only those are read, so a large sweep costs no more than its active jobs."""
        now = time.monotonic()
        if now - self._scanned >= self.STATUS_EVERY_S:
            self._scanned = now
            ended = self.ended.copy()  # the runner adds to it from another thread
            self._running = [i for i in self.jobs if i in self.launched and i not in ended
                             and JobDir(self.root / i).status().get("state") == "running"]
        return [i for i in self._running if i not in self.ended]

    def __rich__(self):
        running, ended = self.running(), self.ended.copy()
        counts = {state: sum(1 for s in ended.values() if s == state) for state in ("done", "failed", "blocked")}
        pending = len(self.jobs) - len(ended) - len(running)
        head = Text.assemble((f"{self.name}: ", "bold"), (f"{counts['done']}/{len(self.jobs)} done", "green"),
                             f" · {len(running)} running · {pending} pending",
                             (f" · {counts['failed']} failed", "red") if counts["failed"] else "",
                             (f" · {counts['blocked']} blocked", "yellow") if counts["blocked"] else "",
                             f" · {duration(time.time() - self.started)}")
        views = [running_view(self.jobs[i], JobDir(self.root / i)) for i in running[:self.ROWS]]
        more = [Text(f"... and {len(running) - self.ROWS} more running (specc status lists them all)")] \
            if len(running) > self.ROWS else []
        return Group(head, *([running_table(views)] if views else []), *more)

    @contextmanager
    def live(self, enabled: bool = True):
        """Draw in place while the block runs (a terminal only; elsewhere nothing is drawn)."""
        if not (enabled and self.console.is_terminal):
            yield self
            return
        with Live(self, console=self.console, refresh_per_second=2, transient=True, redirect_stdout=False,
                  redirect_stderr=False):
            yield self


class StatusView:
    """`specc status`: job counts by stage, then each running job's step, last metrics and how
    long since it last wrote (flagged when far longer than its step time), for local and
    SLURM jobs alike. Each render reads the job dirs (and asks the scheduler) again."""

    def __init__(self, plan, workspace):
        self.plan, self.root = plan, workspace / "jobs"
        self.dirs = {job.id: JobDir(self.root / job.id) for job in plan.jobs}

    def states(self) -> dict[str, str]:
        from specc.runtime.executor import make_executor

        return make_executor(self.plan.executor.kind, self.root.parent, self.plan.executor).states(self.plan)

    def render(self, states: dict[str, str] | None = None) -> Group:
        states = self.states() if states is None else states
        jobs, columns = self.plan.jobs, ("done", "running", "pending", "failed", "blocked")
        table = Table(title=f"{self.plan.spec.name}: {len(jobs)} jobs")
        table.add_column("stage")
        for c in columns:
            table.add_column(c, justify="right")
        for stage in self.plan.spec.stages:
            table.add_row(stage, *(str(sum(1 for j in jobs if j.stage == stage and states[j.id] == c)) for c in columns))
        parts = [table]
        now = time.time()
        views = [running_view(job, self.dirs[job.id], now) for job in jobs if states[job.id] == "running"]
        parts += [running_line(v) for v in views]
        walls = [(s["wall_s"], job) for job in jobs
                 if isinstance((s := self.dirs[job.id].status()).get("wall_s"), (int, float))]
        for wall, job in sorted(walls, key=lambda x: -x[0])[:5]:
            parts.append(Text(f"  slowest: {job.stage:<16} {job.id} {wall:.1f}s"))
        for job in jobs:
            for note in self.dirs[job.id].status().get("notes") or []:
                parts.append(Text(f"  note: {job.stage:<16} {job.id} {note}"))
        return Group(*parts)

    def watch(self, console: Console, every_s: float) -> None:
        """Redraw every `every_s` seconds until no job is running or pending (or Ctrl-C)."""
        with Live(console=console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False) as live:
            while True:
                states = self.states()
                live.update(self.render(states), refresh=True)
                if not any(s in ("running", "pending") for s in states.values()):
                    return
                time.sleep(every_s)
