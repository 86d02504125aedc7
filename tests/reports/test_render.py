"""The HTML report without a browser: self-contained, valid Vega-Lite, escaped, thin, complete."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from altair.vegalite.v6.schema import load_schema

from specc.compiler.schema import CustomFigure
from specc.reports.figures import FIGURES
from specc.reports.queries import SpecData
from specc.reports.render import render_report, script_json, vega_bundle
from specc.store.db import connect

SPEC_SCRIPT = re.compile(r'<script type="application/json" id="spec-\d+">(.*?)</script>', re.S)


def chart_specs(html: str) -> list[dict]:
    """Each chart's Vega-Lite spec with its rows put back as the page does."""
    specs = []
    for text in SPEC_SCRIPT.findall(html):
        spec = json.loads(text)
        split = spec["usermeta"].pop("specc_rows")
        name = next(iter(spec["datasets"]))
        spec["datasets"][name] = [dict(zip(split["columns"], row)) for row in split["data"]]
        specs.append(spec)
    return specs


def figure_names(html: str) -> list[str]:
    return re.findall(r'<div class="figure" id="figure-\d+" data-name="([^"]+)"', html)


def test_report_is_one_self_contained_file(quickstart_report):
    html = quickstart_report.read_text()
    assert html.count(vega_bundle()) == 1  # the JS is inlined, once
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html), "the report links to the network"
    assert "default-src 'none'" in html  # and the page may not fetch anything even if asked to


def test_every_chart_is_valid_vega_lite_with_rows(quickstart_report):
    schema = load_schema()
    specs = chart_specs(quickstart_report.read_text())
    assert specs
    for spec in specs:
        jsonschema.validate(spec, schema)
        assert next(iter(spec["datasets"].values())), spec["usermeta"]["specc_figure"]


def test_script_json_cannot_close_its_script_element():
    obj = {"title": "</script><script>alert(1)</script>", "c": "<!-- & -->", "u": "\u2028 ok"}
    text = script_json(obj)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == obj
    rows = '{"columns":["a"],"data":[["</script>"]]}'
    spliced = script_json({"d": "PLACE"}, {"PLACE": rows})
    assert "</" not in spliced and json.loads(spliced) == {"d": {"columns": ["a"], "data": [["</script>"]]}}


def test_provenance_spec_jobs_versions_and_stage_times(quickstart_workspace, tmp_path):
    html = render_report(quickstart_workspace, "quickstart", tmp_path / "r.html").read_text()
    with connect(quickstart_workspace, read_only=True) as con:
        job_ids = [r[0] for r in con.execute("SELECT job_id FROM spec_jobs WHERE spec_name = 'quickstart'").fetchall()]
        spec_text = con.execute("SELECT text FROM specs WHERE spec_name = 'quickstart'").fetchone()[0]
    assert all(job_id in html for job_id in job_ids)
    assert "Wall time per stage" in html and "Resolved configuration per stage" in html
    assert "duckdb" in html and "altair" in html and "specc commit" in html
    first_line = spec_text.strip().splitlines()[0]
    assert first_line.replace('"', "&#34;").replace("'", "&#39;").replace("<", "&lt;") in html
    assert "Data</h2>" in html  # the dataset job's example pairs


def test_shared_tables_change_nothing(quickstart_workspace):
    """Render computes spec_runs / spec_evals once; every figure must read the same rows either way."""
    with connect(quickstart_workspace, read_only=True) as con:
        plain = {f.name: SpecData(con, "quickstart").df(f.sql) for f in FIGURES}
        shared_data = SpecData(con, "quickstart").share()
        for figure in FIGURES:
            shared = shared_data.df(figure.sql)
            assert shared.equals(plain[figure.name]), figure.name


def test_wanted_figures_only_and_unknown_names_noted(quickstart_workspace, tmp_path):
    html = render_report(quickstart_workspace, "quickstart", tmp_path / "r.html",
                         wanted=["kl_vs_winrate", "no_such_figure"]).read_text()
    assert figure_names(html) == ["kl_vs_winrate"]
    assert "Unknown figure requested: no_such_figure" in html


def test_figures_without_data_are_left_out_with_a_note(store, tmp_path):
    offline = store.align("offline", {"offline": "golden_data"})
    store.evals(offline, [{"step": s, "kl": s / 10, "win_rate": 0.5 + s / 100} for s in (0, 10, 20)])
    workspace = store.write()
    html = render_report(workspace, "hand", tmp_path / "r.html").read_text()
    names = figure_names(html)
    assert names == ["kl_vs_winrate"]
    assert "Left out: <b>Tandem runs on the same axes (Fig. 4)</b>" in html
    assert "needs an align stage with `sampler: {replay: ...}`" in html
    for spec in chart_specs(html):
        assert len(next(iter(spec["datasets"].values()))) == 3


def test_custom_figures_draw_or_explain(store, tmp_path):
    offline = store.align("offline", {"offline": "golden_data"})
    store.evals(offline, [{"step": s, "kl": s / 10, "win_rate": 0.5 + s / 100} for s in (0, 10, 20)])
    workspace = store.write()
    custom = {
        "kl_by_step": {"title": "KL by step", "mark": "line", "x": "step", "y": "kl.value", "color": "stage",
                       "sql": """SELECT r.stage, m.step, m.value AS "kl.value" FROM runs r JOIN metrics m USING (job_id)
                                 WHERE r.spec_name = ? AND m.name = 'eval/kl' AND r.spec_name = ? ORDER BY step;
                                 -- a trailing comment"""},
        "broken_sql": {"title": "Broken", "sql": "SELECT nope FROM nowhere", "x": "a", "y": "b"},
        "wrong_column": {"title": "Wrong column", "sql": "SELECT 1 AS a", "x": "a", "y": "b", "mark": "point"},
        "empty": {"title": "Empty", "sql": "SELECT 1 AS a, 2 AS b WHERE ? = 'other'", "x": "a", "y": "b"},
        "many": {"title": "Many", "mark": "point", "x": "a", "y": "b",
                 "sql": "SELECT range AS a, range % 7 AS b FROM range(30000)"},
        # as the CLI passes them: the spec's validated `report.custom` entries
        "from_spec": CustomFigure(title="Steps per stage", mark="bar", x="stage", y="n",
                                  sql="SELECT stage, count(*) AS n FROM runs WHERE spec_name = ? GROUP BY stage"),
    }
    html = render_report(workspace, "hand", tmp_path / "r.html", wanted=[], custom=custom).read_text()
    assert figure_names(html) == ["kl_by_step", "many", "from_spec"]
    spec, many, bars = chart_specs(html)
    assert len(many["datasets"]["rows"]) == 20_000 and "Only the first 20,000 rows are drawn." in html
    assert bars["mark"]["type"] == "bar" and {r["stage"] for r in bars["datasets"]["rows"]} >= {"offline", "sft"}
    jsonschema.validate(spec, load_schema())
    assert [row["kl.value"] for row in spec["datasets"]["rows"]] == [0.0, 1.0, 2.0]
    assert spec["encoding"]["y"]["field"] == "kl\\.value"
    assert "Not drawn: <b>Broken</b>" in html and "CatalogException" in html
    assert "Not drawn: <b>Wrong column</b>" in html and "no column &#39;b&#39;" in html
    assert "Left out: <b>Empty</b>" in html


def test_curves_are_thinned_in_sql(store, tmp_path):
    online = store.align("online", {"online": "proxy"})
    store.curve(online, "train/loss", [1.0 / (1 + s) for s in range(50_000)])
    workspace = store.write()
    html = render_report(workspace, "hand", tmp_path / "r.html", wanted=["train_loss"]).read_text()
    (spec,) = chart_specs(html)
    rows = spec["datasets"]["rows"]
    assert 20 <= len(rows) <= 400
    assert max(row["step"] for row in rows) == 50_000
    assert sum(row["steps"] for row in rows) == 50_000


def test_dataset_ablation_groups_offline_runs_by_their_data_stage(store, tmp_path):
    store.add("d_4k_vs_4k", "pairs", {"kind": "pairs"})
    for data in ("golden_data", "d_4k_vs_4k"):
        job = store.align(f"offline_{data}", {"offline": data})
        store.evals(job, [{"step": s, "kl": s / 10, "win_rate": 0.5 + s / 100} for s in (0, 10)])
    workspace = store.write()
    html = render_report(workspace, "hand", tmp_path / "r.html", wanted=["dataset_ablation"]).read_text()
    (spec,) = chart_specs(html)
    assert {row["data"] for row in spec["datasets"]["rows"]} == {"offline on golden_data", "offline on d_4k_vs_4k"}


def test_unknown_spec_is_a_user_error(quickstart_workspace, tmp_path):
    from specc.errors import UserError

    with pytest.raises(UserError, match="no results for spec 'nope'"):
        render_report(quickstart_workspace, "nope", tmp_path / "r.html")


def test_kl_chart_never_mixes_baselines_on_one_axis(quickstart_report):
    """The golden policy is measured against SFT, every other run against the golden policy:
    each baseline gets its own panel, titled with it."""
    specs = chart_specs(quickstart_report.read_text())
    (spec,) = [s for s in specs if s["usermeta"]["specc_figure"] == "kl_vs_winrate"]
    rows = next(iter(spec["datasets"].values()))
    against = {row["method"]: row["against"] for row in rows}
    assert against["online"] == "win rate against golden_policy"
    assert against["online (golden judge)"] == "win rate against sft"
    assert spec["facet"]["column"]["field"] == "against"
