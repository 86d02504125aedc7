"""Store -> one self-contained HTML report (jinja2 + altair, vega JS inlined once).

Safety: every value from the store or a job dir reaches the page through jinja2's
autoescaping, or as JSON inside `<script type="application/json">` with `<`, `>` and
`&` written as \\u escapes, so neither dataset text nor a stage name can open or close
a tag. The charts render from inlined data with the inlined bundle: no network.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
import time
import uuid
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import altair as alt
import jinja2

from specc.errors import UserError
from specc.reports.figures import CUSTOM_ROWS, DATA_NAME, FIGURES, FIGURES_BY_NAME, Figure, custom_figure
from specc.reports.findings import findings
from specc.reports.queries import WITH_RUNS, SpecData
from specc.store.db import connect

EXAMPLES_PER_DATASET, DATASETS_SHOWN, TEXT_CHARS = 5, 10, 2000


def render_report(workspace: Path, spec_name: str, output: Path, wanted: list[str] | None = None,
                  custom: dict | None = None) -> Path:
    """Write the report of `spec_name` to `output`.

    wanted: built-in figure names to draw (None: every one the data supports).
    custom: the spec's `report.custom` figures ({name: {title, sql, mark, x, y, color}}),
    drawn whatever `wanted` says; a custom figure whose query fails is noted, not fatal.
    """
    started = time.perf_counter()
    workspace = Path(workspace)
    with connect(workspace, read_only=True) as con:
        known = [r[0] for r in con.execute("SELECT spec_name FROM specs ORDER BY 1").fetchall()]
        if spec_name not in known:
            raise UserError(f"no results for spec '{spec_name}' in {workspace} (have: {', '.join(known) or 'none'})")
        spec_text, spec_path = con.execute("SELECT text, path FROM specs WHERE spec_name = ?", [spec_name]).fetchone()
        data = SpecData(con, spec_name).share()
        figures, missing = [], []
        for figure in FIGURES:
            if wanted is None or figure.name in wanted:
                _draw(data, figure, figures, missing, custom=False)
        for name, settings in (custom or {}).items():
            try:
                figure = custom_figure(name, settings)
            except (KeyError, ValueError, TypeError) as exc:
                missing.append({"title": name, "error": f"invalid custom figure: {exc}"})
                continue
            _draw(data, figure, figures, missing, custom=True)
        tables = _provenance_tables(data)
        unfinished, total_jobs = _unfinished(data, workspace)
        verdicts, not_measured = findings(data)
    unknown = sorted(set(wanted or []) - set(FIGURES_BY_NAME) - set(custom or {}))
    html = _template().render(
        spec_name=spec_name, spec_path=spec_path, spec_text=spec_text, figures=figures, missing=missing,
        unknown=unknown, findings=verdicts, not_measured=not_measured, **tables,
        examples=_examples(workspace, tables["dataset_jobs"]), job_notes=_job_notes(workspace, tables["jobs"]),
        provenance=_provenance(spec_path), unfinished=unfinished, total_jobs=total_jobs,
        render_s=time.perf_counter() - started, vega_js=vega_bundle(), data_name=DATA_NAME)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(output)
    return output


def _provenance_tables(data: SpecData) -> dict:
    """The job table, wall time per stage, one resolved config per stage, the dataset jobs."""
    jobs = data.rows(f"""{WITH_RUNS}
        SELECT r.stage, r.job_id, r.kind, r.method, r.status, round(r.wall_s, 1), j.host, j.attempt, r.sweep_label
        FROM spec_runs r JOIN jobs j USING (job_id) ORDER BY r.stage, r.job_id""")
    stage_times = data.rows(f"""{WITH_RUNS}
        SELECT r.stage, count(*), count(*) FILTER (WHERE r.status = 'done'), round(sum(r.wall_s), 1),
               round(max(r.wall_s), 1), round(max(j.finished) - min(j.started), 1)
        FROM spec_runs r JOIN jobs j USING (job_id) GROUP BY r.stage
        ORDER BY min(j.started) NULLS LAST, r.stage""")
    (total_s, elapsed_s), = data.rows(f"""{WITH_RUNS}
        SELECT round(sum(r.wall_s), 1), round(max(j.finished) - min(j.started), 1)
        FROM spec_runs r JOIN jobs j USING (job_id)""")
    configs = [(stage, n, json.dumps(json.loads(config), indent=1, sort_keys=True) if config else "")
               for stage, n, config in data.rows("""
        SELECT stage, count(*), CAST(any_value(config) AS VARCHAR) FROM runs WHERE spec_name = ?
        GROUP BY stage ORDER BY stage""")]
    dataset_jobs = data.rows(f"""{WITH_RUNS}
        SELECT stage, job_id FROM spec_runs WHERE kind NOT IN ('align', 'sft', 'preference_model')
        ORDER BY stage, job_id""")
    return {"jobs": jobs, "stage_times": stage_times, "total_s": total_s, "elapsed_s": elapsed_s,
            "configs": configs, "dataset_jobs": dataset_jobs}


def _draw(data: SpecData, figure: Figure, figures: list, missing: list, custom: bool) -> None:
    try:
        df = data.df(figure.sql, limit=CUSTOM_ROWS + 1 if custom else None)  # a spec's own query is capped
        note = ""
        if custom and len(df) > CUSTOM_ROWS:
            df, note = df.head(CUSTOM_ROWS), f" Only the first {CUSTOM_ROWS:,} rows are drawn."
        if df.empty:
            missing.append({"title": figure.title, "needs": figure.needs})
            return
        spec = figure.chart(df).to_dict(validate=False)  # tests validate; it costs ~0.1 s a chart
    except Exception as exc:  # a spec's own SQL or columns may be wrong; say so in the report
        if not custom:
            raise
        missing.append({"title": figure.title, "error": f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"})
        return
    spec.setdefault("usermeta", {})["specc_figure"] = figure.name
    # The rows travel column-wise ({columns, data}: about half the size of one object per row) in
    # usermeta, which Vega-Lite ignores; the page turns them into the `datasets` entry before drawing.
    placeholder = f"specc-rows-{uuid.uuid4().hex}"  # stands for the rows until they are spliced in
    spec["datasets"] = {DATA_NAME: []}
    spec["usermeta"]["specc_rows"] = placeholder
    figures.append({"name": figure.name, "title": figure.title, "caption": figure.caption + note,
                    "spec_json": script_json(spec, {placeholder: _rows_json(df)}), "points": len(df),
                    "custom": custom})


def _rows_json(df) -> str:
    """The rows as {"columns": [...], "data": [[...], ...]}: NaN and missing values become null,
    times ISO strings."""
    values = df.to_json(orient="values", date_format="iso", double_precision=10, default_handler=str)
    return f'{{"columns":{json.dumps([str(c) for c in df.columns])},"data":{values}}}'


def script_json(obj, splice: dict[str, str] | None = None) -> str:
    """JSON that is safe as the text of a <script> element: '<', '>' and '&' (which only occur
    inside JSON strings) are written as \\u escapes, so no '</script>' or '<!--' can appear.
    `splice` maps placeholder strings in `obj` to JSON text that replaces them."""
    text = json.dumps(obj, allow_nan=False, default=_json_default, separators=(",", ":"))
    for placeholder, replacement in (splice or {}).items():
        text = text.replace(json.dumps(placeholder), replacement, 1)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _unfinished(data: SpecData, workspace: Path) -> tuple[list[dict], int]:
    """The spec's jobs that have not finished (running, waiting, failed, ...) as the store last saw
    them, each with its step from progress.json; and the spec's number of jobs."""
    from specc.runtime.progress import read_progress

    rows = data.rows("""
        SELECT sj.stage, sj.job_id, coalesce(j.status, 'pending') AS state, count(*) OVER () AS n, j.job_id IS NULL
        FROM spec_jobs sj LEFT JOIN jobs j USING (job_id) WHERE sj.spec_name = ?
        ORDER BY sj.stage, sj.job_id""")
    unfinished = []
    for stage, job_id, state, _, _ in rows:
        if state == "done":
            continue
        progress = read_progress(workspace / "jobs" / job_id) or {}
        step = f"{progress['step']}/{progress['steps']}" if state != "pending" and "step" in progress else ""
        unfinished.append({"stage": stage, "job_id": job_id, "state": state, "step": step})
    return unfinished, (rows[0][3] if rows else 0)


def _job_notes(workspace: Path, jobs) -> list[dict]:
    """What jobs noted in their status.json (records a loader dropped, a capped evaluation)."""
    notes = []
    for stage, job_id, *_ in jobs:
        try:
            status = json.loads((workspace / "jobs" / job_id / "status.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        notes += [{"stage": stage, "job_id": job_id, "note": str(note)}
                  for note in (status.get("notes") or []) if isinstance(status, dict)]
    return notes


def _examples(workspace: Path, dataset_jobs) -> list[dict]:
    """A few pairs of each dataset job, as the job wrote them (artifacts/examples.json)."""
    shown = []
    for stage, job_id in dataset_jobs:
        if len(shown) >= DATASETS_SHOWN:
            break
        path = workspace / "jobs" / job_id / "artifacts" / "examples.json"
        try:
            examples = json.loads(path.read_text(encoding="utf-8")).get("examples", [])
        except (OSError, ValueError, AttributeError):
            continue
        cleaned = [{key: _clip(example.get(key)) for key in ("prompt", "chosen", "rejected")}
                   for example in examples[:EXAMPLES_PER_DATASET] if isinstance(example, dict)]
        if cleaned:
            shown.append({"stage": stage, "job_id": job_id, "examples": cleaned, "total": len(examples)})
    return shown


def _clip(text) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + f" … ({len(text) - TEXT_CHARS:,} more characters)"


@lru_cache(maxsize=1)
def vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script, matching altair's Vega-Lite version.

    Building it takes vl-convert about two seconds, so it is kept in the user's cache
    directory, keyed by the vl-convert and Vega-Lite versions."""
    import vl_convert

    wanted = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    version = wanted if wanted in vl_convert.get_vegalite_versions() else None
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "specc"
    cached = cache_root / f"vega-bundle-{vl_convert.__version__}-vl{version or 'default'}.js"
    try:
        return cached.read_text(encoding="utf-8")
    except OSError:
        pass
    bundle = vl_convert.javascript_bundle(vl_version=version) if version else vl_convert.javascript_bundle()
    bundle = re.sub(r"</(script)", r"<\\/\1", bundle, flags=re.IGNORECASE)  # it is inlined in a <script>
    try:
        cache_root.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        tmp.write_text(bundle, encoding="utf-8")
        tmp.replace(cached)
    except OSError:
        pass  # a read-only home only costs the two seconds again
    return bundle


def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("specc.reports", "templates"),
                             autoescape=jinja2.select_autoescape(default=True, default_for_string=True))
    return env.get_template("report.html.j2")


def _git_commit(directory: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(directory), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "not a git checkout"


def _provenance(spec_path: str | None) -> dict:
    versions = {}
    for package in ("specc", "torch", "transformers", "numpy", "duckdb", "altair", "vl-convert-python", "jinja2",
                    "submitit", "pydantic"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    import specc

    spec_dir = Path(spec_path).resolve().parent if spec_path else None
    return {"versions": versions, "python": platform.python_version(),
            "machine": f"{platform.node()} ({platform.machine()}, {platform.system()} {platform.release()}, "
                       f"{os.cpu_count()} CPUs)",
            "git_commit": _git_commit(Path(specc.__file__).resolve().parent),
            "spec_commit": _git_commit(spec_dir) if spec_dir and spec_dir.is_dir() else "unknown",
            "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
