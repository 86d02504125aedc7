"""`specc`: validate, plan, run, status, query, report, ingest, schema.

Bad input is reported as located, readable errors with exit code 2; a run
whose jobs failed exits 1. No command prints a traceback for a user error.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from specc.errors import SpecErrors, UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Compile preference-alignment experiment specs into jobs, run them, query and report results.")
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)  # paths in messages stay copyable

SpecArg = Annotated[Path, typer.Argument(help="spec file (YAML)")]
Overrides = Annotated[Optional[list[str]], typer.Argument(help="overrides key.path=value", show_default=False)]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="override key.path=value (repeatable)")]
ProfileOpt = Annotated[Optional[str], typer.Option("--profile", "-p", help="apply a named profile of the spec")]
WorkspaceOpt = Annotated[Optional[Path], typer.Option("--workspace", "-w", help="workspace dir (default: the spec's `workspace`)")]
MaxJobsOpt = Annotated[Optional[int], typer.Option("--max-jobs", help="raise the job-count limit for large sweeps")]


def _compile(spec: Path, overrides, sets, profile, max_jobs=None):
    from specc.compiler.plan import compile_spec

    return compile_spec(spec, profile=profile, overrides=[*(sets or []), *(overrides or [])], max_jobs=max_jobs)


def _workspace(plan, workspace: Path | None) -> Path:
    ws = Path(workspace) if workspace else Path(plan.spec.workspace)
    existing = next((p for p in (ws, *ws.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise UserError(f"workspace {ws}: {existing} is not a directory")
    return ws


def _output_file(path: Path | None) -> Path | None:
    """An --output FILE the command can write (its folder made if missing), checked before any work."""
    if path is None:
        return None
    if path.is_dir():
        raise UserError(f"--output {path}: is a directory; give a file name")
    existing = next((p for p in path.parents if p.exists()), Path("."))
    if not existing.is_dir():
        raise UserError(f"--output {path}: {existing} is not a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--output {path}: cannot make the folder {path.parent}: {exc.strerror or exc}") from None
    return path


@app.command()
def validate(spec: SpecArg, overrides: Overrides = None, set_: SetOpt = None, profile: ProfileOpt = None,
             max_jobs: MaxJobsOpt = None):
    """Check a spec and every profile it has; print every error with file:line:column."""
    from specc.compiler.load import load_source
    from specc.compiler.memory import memory_errors
    from specc.compiler.plan import profile_errors

    plan = _compile(spec, overrides, set_, profile, max_jobs)
    errors = memory_errors(plan, load_source(spec, profile=profile, overrides=[*(set_ or []), *(overrides or [])]))
    if profile is None:
        errors += profile_errors(plan, overrides=[*(set_ or []), *(overrides or [])], max_jobs=max_jobs)
    if errors:
        raise SpecErrors(errors)
    console.print(f"[green]ok[/green] {spec}: {len(plan.spec.stages)} stages, {len(plan.jobs)} jobs")


@app.command()
def plan(spec: SpecArg, overrides: Overrides = None, set_: SetOpt = None, profile: ProfileOpt = None,
         workspace: WorkspaceOpt = None, max_jobs: MaxJobsOpt = None,
         as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False):
    """Show the jobs a spec expands to, by wave, with what is already done."""
    from specc.compiler.memory import plan_memory
    from specc.runtime.jobdir import JobDir

    compiled = _compile(spec, overrides, set_, profile, max_jobs)
    root = _workspace(compiled, workspace) / "jobs"
    states = {job.id: _state(JobDir(root / job.id)) for job in compiled.jobs}
    memory = plan_memory(compiled)
    if as_json:
        print(json.dumps({"spec": compiled.spec.name, "executor": compiled.executor.model_dump(),
                          "jobs": [{**job.to_json(), "status": states[job.id], "ranks": _ranks(compiled, job),
                                    "memory_gb": memory[job.id]}
                                   for job in compiled.jobs]}, indent=1))
        return
    table = Table(title=f"{compiled.spec.name}: {len(compiled.jobs)} jobs, executor {compiled.executor.kind}")
    for column in ("wave", "stage", "kind", "swept values", "ranks", "job id", "status", "peak GB (device / host)"):
        table.add_column(column)
    for job in compiled.jobs:
        swept = ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in job.sweep.items() if k.startswith(job.stage + "."))
        table.add_row(str(job.wave), job.stage, job.kind, swept or "-", str(_ranks(compiled, job)), job.id,
                      states[job.id], _memory_cell(memory[job.id]))
    console.print(table)


def _ranks(compiled, job) -> int:
    """Processes the job runs as: several for a training stage given several GPUs (or ranks)
    on SLURM (docs/multi-gpu.md); 1 otherwise."""
    from specc.compiler.schema import RANKED_KINDS

    if compiled.executor.kind != "slurm" or job.kind not in RANKED_KINDS:
        return 1
    nodes, per_node, _ = compiled.executor.for_stage(job.stage).layout()
    return nodes * per_node


def _memory_cell(memory: dict | None) -> str:
    """Estimated peak per GPU (or in host memory for a CPU job) against what the stage gets."""
    if memory is None:
        return "unknown model"
    where = f"/{memory['gpu_mem_gb']} per GPU" if memory["gpus"] else ""
    flag = "" if memory["fits"] else " [red]does not fit[/red]"
    sharded = f" ({' and '.join(memory['frozen_sharded'])} sharded)" if memory.get("frozen_sharded") else ""
    return f"{memory['device']:.1f}{where} / {memory['host']:.1f}{sharded}{flag}"


def _state(jd) -> str:
    if jd.is_done():
        return "cached"
    if jd.damage() or jd.status().get("state") in ("damaged", "done"):
        return "damaged: reruns"  # a finished job's files went missing or changed
    return {"failed": "failed", "running": "running", "interrupted": "resumable"}.get(jd.status().get("state"), "pending")


@app.command()
def run(spec: SpecArg, overrides: Overrides = None, set_: SetOpt = None, profile: ProfileOpt = None,
        workspace: WorkspaceOpt = None, max_jobs: MaxJobsOpt = None,
        executor: Annotated[Optional[str], typer.Option(help="debug | local | slurm (overrides the spec)")] = None,
        max_parallel: Annotated[Optional[int], typer.Option(help="jobs at once (local)")] = None,
        wait: Annotated[bool, typer.Option(help="slurm: follow the jobs until they end")] = False,
        report: Annotated[bool, typer.Option(help="write the HTML report when done")] = True,
        pdb: Annotated[bool, typer.Option("--pdb", help="debug executor: open the debugger on a failing job")] = False):
    """Run every job of a spec that is not done yet, ingest results, write the report.

    Locally this returns when every job has ended. On SLURM it returns once the whole DAG is
    submitted (afterok dependencies); --wait follows it to the end."""
    from specc.contracts import EXECUTORS
    from specc.live import RunDisplay
    from specc.runtime.executor import make_executor
    from specc.runtime.sinks import write_sink_settings
    from specc.store.db import ingest, record_spec

    compiled = _compile(spec, overrides, set_, profile, max_jobs)
    ws = _workspace(compiled, workspace)
    kind = executor or compiled.executor.kind
    if kind not in EXECUTORS:
        raise UserError(f"unknown executor '{kind}': expected {', '.join(EXECUTORS[:-1])} or {EXECUTORS[-1]}")
    if pdb and kind != "debug":
        raise UserError("--pdb debugs jobs in this process: add --executor debug")
    record_spec(ws, compiled)
    write_sink_settings(compiled, ws, [job for job in compiled.jobs if not (ws / "jobs" / job.id / "DONE").exists()])
    started = time.time()
    display = RunDisplay(compiled, ws, console)  # drawn in place in a terminal; plain lines elsewhere

    def on_event(event, job, info=""):
        display.event(event, job)
        style = {"done": "green", "failed": "red", "blocked": "yellow", "cached": "dim"}.get(event, "cyan")
        # info may quote an error, whose brackets are not markup
        console.print(f"[{style}]{event:>9}[/{style}] {job.stage:<16} {job.id} {escape(str(info))}")

    runner = make_executor(kind, ws, compiled.executor, on_event=on_event, max_parallel=max_parallel, pdb=pdb)
    try:
        with display.live(enabled=not pdb):  # the debugger needs the terminal to itself
            result = runner.submit(compiled)
    except KeyboardInterrupt:  # local workers are stopped and marked interrupted: make the store agree
        ingest(ws, warn=lambda m: err_console.print(f"[yellow]warning[/yellow] {m}"))
        err_console.print(f"interrupted: running jobs stopped; specc run {spec} resumes them")
        raise typer.Exit(130) from None
    if runner.detaches:
        console.print(f"{len(result.submitted)} submitted, {len(result.cached)} cached in "
                      f"{time.time() - started:.1f}s")
        if not wait:
            console.print(f"follow with: specc status {spec}  (or specc run {spec} --wait)")
            return
        cached = result.cached
        with display.live():
            result = runner.wait(compiled)
        result.cached = cached
    ingest(ws, warn=lambda m: err_console.print(f"[yellow]warning[/yellow] {m}"))
    elapsed = time.time() - started
    if not result.done and not result.failed and not result.blocked:
        console.print(f"every job already done ({len(result.cached)} cached); nothing to run")
    console.print(f"{len(result.done)} ran, {len(result.cached)} cached, {len(result.failed)} failed, "
                  f"{len(result.blocked)} blocked in {elapsed:.1f}s; results in {ws / 'specc.duckdb'}")
    for job_id, message in result.failed.items():
        err_console.print(Text.assemble(("failed", "red"), f" {job_id}: {message}"))
    if report:
        out = _write_report(ws, compiled, None)
        console.print(f"report: {out}")
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def cancel(spec: SpecArg, overrides: Overrides = None, set_: SetOpt = None, profile: ProfileOpt = None,
           workspace: WorkspaceOpt = None):
    """Cancel the spec's submitted and running SLURM jobs."""
    from specc.runtime.executor import make_executor

    compiled = _compile(spec, overrides, set_, profile)
    ids = make_executor("slurm", _workspace(compiled, workspace), compiled.executor).cancel(compiled)
    console.print(f"cancelled {len(ids)} SLURM jobs" if ids else "nothing to cancel")


@app.command()
def status(spec: SpecArg, overrides: Overrides = None, set_: SetOpt = None, profile: ProfileOpt = None,
           workspace: WorkspaceOpt = None,
           watch: Annotated[bool, typer.Option("--watch", help="redraw until no job runs or waits (Ctrl-C stops)")] = False,
           interval: Annotated[float, typer.Option(help="--watch: seconds between redraws", min=0.5)] = 5.0):
    """Jobs by stage and state; each running job's step, last metrics and time since it last wrote."""
    from specc.live import StatusView
    from specc.store.db import ingest

    compiled = _compile(spec, overrides, set_, profile)
    ws = _workspace(compiled, workspace)
    view = StatusView(compiled, ws)
    if watch:
        try:
            view.watch(console, interval)
        except KeyboardInterrupt:
            pass
    else:
        console.print(view.render())
    if (ws / "jobs").exists():
        ingest(ws, warn=lambda m: err_console.print(f"[yellow]warning[/yellow] {m}"))


@app.command()
def ingest(workspace: Annotated[Path, typer.Argument(help="workspace dir")] = Path("runs")):
    """Ingest finished and in-progress job dirs into the workspace's DuckDB file (only what changed)."""
    from specc.store.db import ingest as ingest_store

    if not (workspace / "jobs").is_dir():
        raise UserError(f"no job dirs at {workspace / 'jobs'}: is {workspace} a specc workspace? (specc run SPEC makes one)")
    start = time.perf_counter()
    counts = ingest_store(workspace, warn=lambda m: err_console.print(Text.assemble(("warning ", "yellow"), m)))
    console.print(f"ingested {counts['files']} new files ({counts['rows']} metric rows) and {counts['jobs_updated']} "
                  f"changed jobs of {counts['jobs']} in {time.perf_counter() - start:.2f} s"
                  + (f"; {counts['skipped']} unreadable files skipped, retried next time" if counts["skipped"] else ""))


@app.command()
def query(sql: Annotated[Optional[str], typer.Argument(help="SQL that reads (SELECT, WITH, DESCRIBE, ...)")] = None,
          workspace: Annotated[Path, typer.Option("--workspace", "-w")] = Path("runs"),
          fmt: Annotated[str, typer.Option("--format", "-f", help="table | csv | json | parquet")] = "table",
          output: Annotated[Optional[Path], typer.Option("--output", "-o", help="write to FILE (parquet needs one)")] = None,
          views: Annotated[bool, typer.Option("--views", help="list the store's views and what each holds")] = False):
    """Run read-only SQL over the results store; statements that would change anything are refused."""
    import duckdb

    from specc.store import export
    from specc.store.db import query as run_query
    from specc.store.db import query_arrow
    from specc.store.schema import VIEWS

    if views:
        width = max(len(name) for name in VIEWS)
        print("\n".join(f"{name:<{width}}  {description}" for name, (description, _) in VIEWS.items()))
        return
    if not sql:
        raise UserError('give the SQL to run, e.g. specc query "select * from runs limit 5", or --views')
    if fmt not in export.FORMATS:
        raise UserError(f"--format {fmt}: expected one of {', '.join(export.FORMATS)}")
    if fmt == "parquet" and output is None:
        raise UserError("--format parquet writes a file: add --output FILE")
    if not workspace.is_dir() and workspace.exists():
        raise UserError(f"--workspace {workspace}: not a directory")
    output = _output_file(output)
    try:
        if fmt == "parquet":
            result = query_arrow(workspace, sql)
        else:
            columns, rows = run_query(workspace, sql)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    except duckdb.Error as exc:
        message = str(exc).splitlines()[0]
        if "read-only" in message or "read only" in message:
            message = "the store is opened read-only: queries cannot change it (" + message + ")"
        raise UserError(message) from None
    if fmt == "parquet":
        with _writing(output):
            export.write_parquet(result, output)
        err_console.print(f"wrote {result.num_rows} rows to {output}")
        return
    with _writing(output):
        out = output.open("w", newline="", encoding="utf-8") if output else sys.stdout
    try:
        if fmt == "json":
            export.write_json(columns, rows, out)
        elif fmt == "csv":
            export.write_csv(columns, rows, out)
        else:
            table = Table()
            for c in columns:
                table.add_column(c)
            for r in rows:
                table.add_row(*("" if v is None else str(v) for v in r))
            (Console(file=out, highlight=False, width=10_000) if output else console).print(table)
    finally:
        if output:
            out.close()
    if output:
        err_console.print(f"wrote {len(rows)} rows to {output}")


@app.command()
def report(spec: SpecArg, output: Annotated[Optional[Path], typer.Option("--output", "-o")] = None,
           overrides: Overrides = None, set_: SetOpt = None, profile: ProfileOpt = None, workspace: WorkspaceOpt = None):
    """Write the spec's HTML report (one self-contained file)."""
    from specc.store.db import ingest as ingest_store

    compiled = _compile(spec, overrides, set_, profile)
    ws = _workspace(compiled, workspace)
    output = _output_file(output)
    if not (ws / "jobs").exists():
        raise UserError(f"nothing to report: no jobs in {ws} (run the spec first: specc run {spec})")
    ingest_store(ws, warn=lambda m: err_console.print(f"[yellow]warning[/yellow] {m}"))
    out = _write_report(ws, compiled, output)
    console.print(f"report: {out}")


def _write_report(ws: Path, compiled, output: Path | None) -> Path:
    from specc.reports.render import render_report

    name, settings = compiled.spec.name, compiled.spec.report
    out = output or ws / "reports" / f"{name}.html"
    with _writing(out):
        return render_report(ws, name, out, settings.figures, custom=settings.custom)


@contextmanager
def _writing(path: Path | None):
    """An OS error while writing `path` (a read-only or special folder) becomes a user error naming it."""
    try:
        yield
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


@app.command()
def schema(output: Annotated[Optional[Path], typer.Option("--output", "-o")] = None):
    """Print the JSON Schema of the spec language (for editor completion)."""
    from specc.compiler.schema import Spec

    text = json.dumps(Spec.model_json_schema(), indent=1)
    if _output_file(output):
        with _writing(output):
            output.write_text(text + "\n")
    else:
        print(text)


def main() -> None:
    try:
        code = app(standalone_mode=False)  # returns the code of a typer.Exit
        if isinstance(code, int) and code:
            sys.exit(code)
    except SpecErrors as exc:
        for error in exc.errors:
            err_console.print(str(error), markup=False)
        err_console.print(f"{len(exc.errors)} error{'s' if len(exc.errors) != 1 else ''}", style="red")
        sys.exit(2)
    except UserError as exc:
        err_console.print(f"error: {exc}", markup=False)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except OSError as exc:  # a path the user named cannot be used (a special or read-only folder)
        where = f"{exc.filename}: " if exc.filename else ""
        err_console.print(f"error: {where}{exc.strerror or exc}", markup=False)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors and the like
        import click
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
