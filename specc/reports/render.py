"""Store -> one self-contained HTML report (jinja2 + altair, vega JS inlined once)."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import jinja2

from specc.errors import UserError
from specc.reports.figures import FIGURES, FIGURES_BY_NAME
from specc.reports.findings import findings
from specc.store.db import connect


@lru_cache(maxsize=1)
def vega_bundle() -> str:
    import vl_convert

    return vl_convert.javascript_bundle()


def render_report(workspace: Path, spec_name: str, output: Path, wanted: list[str] | None = None) -> Path:
    with connect(workspace, read_only=True) as con:
        known = [r[0] for r in con.execute("SELECT spec_name FROM specs").fetchall()]
        if spec_name not in known:
            raise UserError(f"no results for spec '{spec_name}' in {workspace} (have: {', '.join(known) or 'none'})")
        spec_text, spec_path = con.execute("SELECT text, path FROM specs WHERE spec_name = ?", [spec_name]).fetchone()
        figures, missing = [], []
        for figure in FIGURES:
            if wanted is not None and figure.name not in wanted:
                continue
            df = con.execute(figure.sql, [spec_name]).df()
            if df.empty:
                missing.append({"title": figure.title, "needs": figure.needs})
                continue
            spec = figure.chart(df).to_dict()
            figures.append({"name": figure.name, "title": figure.title, "caption": figure.caption,
                            "spec_json": _script_json(spec), "points": len(df)})
        jobs = con.execute("""SELECT stage, job_id, kind, method, status, round(wall_s, 1) AS wall_s, threads,
                                     CAST(sweep AS VARCHAR) AS sweep
                              FROM runs WHERE spec_name = ? ORDER BY stage, job_id""", [spec_name]).fetchall()
        stage_times = con.execute("""SELECT stage, count(*), round(sum(wall_s), 1) FROM runs
                                     WHERE spec_name = ? GROUP BY stage ORDER BY stage""", [spec_name]).fetchall()
        verdicts = findings(con, spec_name)
    unknown = sorted(set(wanted or []) - set(FIGURES_BY_NAME))
    html = _template().render(
        spec_name=spec_name, spec_path=spec_path, spec_text=spec_text, figures=figures, missing=missing,
        unknown=unknown, jobs=jobs, stage_times=stage_times, findings=verdicts, provenance=_provenance(),
        vega_js=vega_bundle())
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(html, encoding="utf-8")
    return output


def _script_json(obj) -> str:
    """JSON safe inside a <script> element: no '</' can close it early."""
    return json.dumps(obj).replace("</", "<\\/").replace("<!--", "<\\!--")


def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("specc.reports", "templates"),
                             autoescape=jinja2.select_autoescape(default=True, default_for_string=True))
    return env.get_template("report.html.j2")


def _provenance() -> dict:
    versions = {}
    for package in ("specc", "torch", "transformers", "duckdb", "altair", "submitit", "pydantic"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        commit = "unknown"
    return {"versions": versions, "python": platform.python_version(), "machine": f"{platform.node()} "
            f"({platform.machine()}, {platform.system()})", "git_commit": commit,
            "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
