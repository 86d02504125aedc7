"""Built-in figures (one per row of the paper's findings table) and a spec's custom figures.

A figure is a SQL query over the store plus an altair chart of its result. Queries
take the spec name as their parameter and aggregate in SQL (evaluation rows as they
are, per-step curves thinned to buckets), so a chart embeds at most a few tens of
thousands of points however large the store. A query that returns no rows means the
spec produced no data for the figure: it is left out with a note (`needs`), never
drawn empty. Figures that compare groups (losses, datasets, shuffle levels, sizes)
return rows only when there are at least two groups to compare.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import altair as alt
import pandas as pd

from specc.reports.queries import CURVE_POINTS, GOLDEN_ONLINE, METHODS, WITH_EVALS, WITH_RUNS, bucketed


@dataclass(frozen=True)
class Figure:
    name: str
    title: str
    caption: str
    sql: str
    chart: Callable[[pd.DataFrame], alt.TopLevelMixin]
    needs: str  # what the spec must run for this figure to have data


METHOD_COLORS = {"online": "#1f77b4", "offline": "#d62728", "tandem": "#2ca02c", "tandem-shuffled": "#9467bd",
                 GOLDEN_ONLINE: "#7f7f7f"}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]
KL_TITLE = "KL(π ‖ π_sft) (nats)"
WIN_TITLE = "win rate vs baseline (golden judge)"
WIDTH, HEIGHT, FACET_WIDTH = 560, 320, 250
MAX_MARKED_POINTS = 3000  # curves with more rows are drawn as lines only (an SVG symbol per point is slow)
SIZE_ORDER = ("XXS", "XS", "S", "M", "L", "XL", "XXL")
# Charts name their data; the renderer attaches the query's rows under this name as JSON written
# by pandas (altair's own per-row conversion costs seconds on a few tens of thousands of rows).
DATA_NAME = "rows"
DATA = alt.NamedData(name=DATA_NAME)


def _ordered(values: pd.Series, first=()) -> list:
    present = [v for v in values.dropna().unique().tolist()]
    known = [v for v in first if v in present]
    return known + sorted((v for v in present if v not in known), key=str)


def _color(df: pd.DataFrame, field: str, title: str) -> alt.Color:
    """A fixed colour per method (the same in every figure), the palette for anything else."""
    domain = _ordered(df[field], METHODS)
    spare = iter(c for c in PALETTE if c not in METHOD_COLORS.values())
    colors = [METHOD_COLORS.get(v) or next(spare, "#444444") for v in domain]
    return alt.Color(f"{field}:N", title=title, scale=alt.Scale(domain=domain, range=colors), sort=domain)


def _tooltip(df: pd.DataFrame, fields: list[str]) -> list:
    out = []
    for field in dict.fromkeys(f for f in fields if f in df.columns):
        kind = _vl_type(df[field])
        extra = {"format": ".4g"} if pd.api.types.is_float_dtype(df[field]) else {}
        out.append(alt.Tooltip(field=_escape_field(field), type=kind, title=field, **extra))
    return out


def _facet(chart, df: pd.DataFrame, column: str | None = None):
    """Facet by `column`, and by task in rows when the spec has more than one task."""
    row = "task" if "task" in df.columns and df["task"].nunique() > 1 else None
    if column is None and row is None:
        return chart
    kwargs = {}
    if column:
        kwargs["column"] = alt.Column(f"{column}:N", title=column, sort=_ordered(df[column]))
    if row:
        kwargs["row"] = alt.Row("task:N", title="task")
    return chart.facet(**kwargs)


def win_rate_vs_kl(df: pd.DataFrame, color: str = "method", color_title: str = "method",
                   column: str | None = None):
    """Points are evaluations, thin lines join a run's checkpoints in step order, rules are
    the 95% intervals of the win rates."""
    tooltip = _tooltip(df, ["stage", "method", color, "loss", "sweep_label", "seed", "policy_size", "step", "kl",
                            "win_rate", "win_rate_lo", "win_rate_hi"])
    # one baseline: the axis names it; several: each panel does (`_split_by`)
    single = df["against"].dropna().unique() if "against" in df.columns else []
    y_title = (f"{single[0]} (golden judge)" if len(single) == 1 else
               "win rate vs the panel's baseline (golden judge)" if len(single) > 1 else WIN_TITLE)
    base = alt.Chart(DATA).encode(
        x=alt.X("kl:Q", title=KL_TITLE),
        y=alt.Y("win_rate:Q", title=y_title, scale=alt.Scale(zero=False)),
        color=_color(df, color, color_title), detail="job_id:N", tooltip=tooltip)
    layers = alt.layer(
        base.mark_rule(opacity=0.25).encode(y="win_rate_lo:Q", y2="win_rate_hi:Q"),
        base.mark_line(opacity=0.35, strokeWidth=1.2).encode(order="step:Q"),
        base.mark_point(filled=True, size=36),
    ).properties(width=FACET_WIDTH if column else WIDTH, height=HEIGHT).interactive()
    return _facet(layers, df, column)


def _split_by(df: pd.DataFrame, column: str) -> str | None:
    """`column` when its values differ between rows (e.g. two baselines): one panel each."""
    return column if column in df.columns and df[column].nunique() > 1 else None


def _over_steps(df: pd.DataFrame, y_title: str, dash: str | None, column: str | None = None, points: bool = True):
    encoding = dict(
        x=alt.X("step:Q", title="training step"),
        y=alt.Y("value:Q", title=y_title, scale=alt.Scale(zero=False)),
        color=_color(df, "method", "method"), detail="job_id:N",
        tooltip=_tooltip(df, ["stage", "method", dash, column, "sweep_label", "step", "value", "steps"]))
    if dash:
        encoding["strokeDash"] = alt.StrokeDash(f"{dash}:N", title=dash, legend=alt.Legend(symbolType="stroke"))
    points = points and len(df) <= MAX_MARKED_POINTS
    chart = alt.Chart(DATA).mark_line(point=points, strokeWidth=1.5).encode(**encoding)
    chart = chart.properties(width=FACET_WIDTH if column else WIDTH, height=HEIGHT - 40).interactive()
    return _facet(chart, df, column)


def _accuracy_vs_win_rate(df: pd.DataFrame):
    return alt.Chart(DATA).mark_point(filled=True, size=45, opacity=0.8).encode(
        x=alt.X("classifier_accuracy:Q", title="policy-as-classifier accuracy on D_golden",
                scale=alt.Scale(zero=False)),
        y=alt.Y("win_rate:Q", title=WIN_TITLE, scale=alt.Scale(zero=False)),
        color=_color(df, "method", "method"),
        tooltip=_tooltip(df, ["stage", "method", "sweep_label", "step", "classifier_accuracy", "win_rate", "kl"]),
    ).properties(width=WIDTH, height=HEIGHT).interactive()


def size_key(size: str):
    """Sort key for policy sizes: XS < S < M < L, then '770M' < '3B', then by name."""
    if size in SIZE_ORDER:
        return (0, SIZE_ORDER.index(size), "")
    number = re.match(r"^([0-9]+(?:\.[0-9]+)?)\s*([kKmMbB]?)", size)
    if number:
        scale = {"k": 1e3, "m": 1e6, "b": 1e9}.get(number.group(2).lower(), 1)
        return (1, float(number.group(1)) * scale, size)
    return (2, 0, size)


def _zoom(name: str):
    return alt.selection_interval(bind="scales", name=name)


def _best_by_size(df: pd.DataFrame):
    sizes = sorted(df["policy_size"].unique(), key=size_key)
    tooltip = _tooltip(df, ["method", "loss", "policy_size", "win_rate_q90", "normalised", "runs", "checkpoints"])

    def panel(field, title):
        base = alt.Chart(DATA).encode(
            x=alt.X("policy_size:O", title="policy size", sort=sizes, axis=alt.Axis(labelAngle=0)),
            y=alt.Y(f"{field}:Q", title=title, scale=alt.Scale(zero=False)),
            color=_color(df, "method", "method"), strokeDash=alt.StrokeDash("loss:N", title="loss"),
            detail="loss:N", tooltip=tooltip)
        return (base.mark_line() + base.mark_point(filled=True, size=60)).properties(width=FACET_WIDTH, height=260)

    absolute = panel("win_rate_q90", "90% quantile of win rate over checkpoints")
    if df["normalised"].notna().any():
        return alt.hconcat(panel("normalised", "win-rate quantile ÷ online's at that size"), absolute)
    return absolute


def _tandem_loss(df: pd.DataFrame):
    base = alt.Chart(DATA).encode(x=alt.X("step:Q", title="training step"), detail="series:N")
    tooltip = _tooltip(df, ["pair", "series", "step", "value", "steps"])
    # a dash per replay run while they can be told apart; beyond that hover says which is which
    dash = {"strokeDash": alt.StrokeDash("pair:N", title="replay run")} if df["pair"].nunique() <= 6 else {}
    curves = base.transform_filter("datum.panel == 'loss'").mark_line(strokeWidth=1.5).encode(
        y=alt.Y("value:Q", title="train loss"), color=_color(df, "method", "run"), tooltip=tooltip, **dash,
    ).properties(width=WIDTH, height=260).add_params(_zoom("zoom_loss"))
    gaps = base.transform_filter("datum.panel == 'gap'").mark_line(point=True, strokeWidth=1.2).encode(
        y=alt.Y("value:Q", title="max |replay − online| loss"), color=_color(df, "method", "run"), tooltip=tooltip,
        **dash,
    ).properties(width=WIDTH, height=160).add_params(_zoom("zoom_gap"))
    return alt.vconcat(curves, gaps)


# --- the queries ------------------------------------------------------------------------------

_EVAL_POINTS = """SELECT stage, method, loss, sweep_label, seed, policy_size, task, job_id, step, kl, win_rate,
                         win_rate_lo, win_rate_hi"""

KL_VS_WINRATE = f"""{WITH_EVALS}
{_EVAL_POINTS}, 'win rate against ' || coalesce(baseline, 'its init') AS against FROM spec_evals
WHERE win_rate IS NOT NULL AND method IN ('online', 'offline', '{GOLDEN_ONLINE}') ORDER BY job_id, step"""

TANDEM_OVERLAY = f"""{WITH_EVALS}
{_EVAL_POINTS} FROM spec_evals
WHERE win_rate IS NOT NULL AND method IN ('online', 'offline', 'tandem', 'tandem-shuffled')
  AND EXISTS (SELECT 1 FROM spec_evals WHERE method LIKE 'tandem%' AND win_rate IS NOT NULL)
ORDER BY job_id, step"""

BY_LOSS = f"""{WITH_EVALS}
{_EVAL_POINTS} FROM spec_evals
WHERE win_rate IS NOT NULL AND method IN ('online', 'offline', 'tandem', 'tandem-shuffled')
  AND (SELECT count(DISTINCT loss) FROM spec_evals WHERE win_rate IS NOT NULL AND method <> '{GOLDEN_ONLINE}') >= 2
ORDER BY job_id, step"""

DATASETS = f"""{WITH_EVALS}
{_EVAL_POINTS}, CASE method WHEN 'online' THEN 'online (its own samples)' ELSE 'offline on ' || data_stage END AS data
FROM spec_evals
WHERE win_rate IS NOT NULL AND method IN ('online', 'offline')
  AND (SELECT count(DISTINCT data_stage) FROM spec_evals WHERE method = 'offline' AND win_rate IS NOT NULL) >= 2
ORDER BY job_id, step"""

SHUFFLE = f"""{WITH_EVALS}
{_EVAL_POINTS}, CASE WHEN method = 'online' THEN 'online'
                     ELSE 'shuffle ' || CAST(shuffle_level AS VARCHAR) END AS shuffle
FROM spec_evals
WHERE win_rate IS NOT NULL AND method IN ('online', 'tandem', 'tandem-shuffled')
  AND (SELECT count(DISTINCT shuffle_level) FROM spec_evals
       WHERE method LIKE 'tandem%' AND win_rate IS NOT NULL) >= 2
ORDER BY shuffle_level NULLS FIRST, job_id, step"""

ACCURACY = f"""{WITH_EVALS},
{bucketed("SELECT m.job_id, m.name, m.step, m.value FROM metrics m JOIN spec_runs r USING (job_id) "
          "WHERE r.kind = 'align' AND m.name = 'online/judge_accuracy_golden'")},
long AS (
    UNPIVOT (SELECT stage, method, sweep_label, task, job_id, step, classifier_accuracy, self_classifier_accuracy,
                    proxy_accuracy_on_policy FROM spec_evals)
    ON classifier_accuracy, self_classifier_accuracy, proxy_accuracy_on_policy
    INTO NAME metric VALUE value)
SELECT stage, method, sweep_label, task, job_id, step, value, 1 AS steps,
       CASE metric WHEN 'classifier_accuracy' THEN 'D_golden' ELSE 'policy''s own samples' END AS pairs,
       CASE WHEN metric LIKE 'proxy%' THEN 'proxy judge' ELSE 'policy' END AS classifier
FROM long WHERE value IS NOT NULL
  AND NOT (metric = 'proxy_accuracy_on_policy' AND method = '{GOLDEN_ONLINE}')  -- its judge is the golden one
UNION ALL
SELECT r.stage, r.method, r.sweep_label, r.task, c.job_id, c.step, c.value, c.steps, 'online stream', 'proxy judge'
FROM curve c JOIN spec_runs r USING (job_id) WHERE r.method <> '{GOLDEN_ONLINE}'
ORDER BY job_id, classifier, pairs, step"""

ACCURACY_VS_WIN = f"""{WITH_EVALS}
SELECT stage, method, sweep_label, job_id, step, kl, classifier_accuracy, win_rate FROM spec_evals
WHERE classifier_accuracy IS NOT NULL AND win_rate IS NOT NULL ORDER BY job_id, step"""

LOGP = f"""{WITH_EVALS}
SELECT stage, method, sweep_label, task, job_id, step, 'chosen (winner)' AS response, logp_chosen AS value
FROM spec_evals WHERE logp_chosen IS NOT NULL
UNION ALL
SELECT stage, method, sweep_label, task, job_id, step, 'rejected (loser)', logp_rejected
FROM spec_evals WHERE logp_rejected IS NOT NULL
ORDER BY job_id, response, step"""

BEST_BY_SIZE = f"""{WITH_EVALS},
q AS (SELECT method, loss, policy_size, quantile_cont(win_rate, 0.9) AS win_rate_q90,
             count(DISTINCT job_id) AS runs, count(*) AS checkpoints
      FROM spec_evals WHERE win_rate IS NOT NULL AND policy_size IS NOT NULL AND method <> '{GOLDEN_ONLINE}'
      GROUP BY ALL)
SELECT q.*, q.win_rate_q90 / nullif(o.win_rate_q90, 0) AS normalised
FROM q LEFT JOIN q o ON o.method = 'online' AND o.loss IS NOT DISTINCT FROM q.loss AND o.policy_size = q.policy_size
WHERE (SELECT count(DISTINCT policy_size) FROM q) >= 2
ORDER BY q.method, q.loss, q.policy_size"""

TANDEM_LOSS = f"""{WITH_RUNS},
pairs AS (SELECT stage, method, job_id AS tandem_job, replays AS online_job,
                 stage || ' ' || left(job_id, 8) AS pair FROM spec_runs WHERE replays IS NOT NULL),
{bucketed("SELECT job_id, name, step, value FROM metrics WHERE name = 'train/loss' AND job_id IN "
          "(SELECT tandem_job FROM pairs UNION SELECT online_job FROM pairs)")},
gap_raw AS (
    SELECT p.pair, p.method, t.step, abs(t.value - o.value) AS gap
    FROM pairs p JOIN curve_raw t ON t.job_id = p.tandem_job
    JOIN curve_raw o ON o.job_id = p.online_job AND o.step = t.step),
gap_width AS (
    SELECT pair, min(step) AS first, greatest(1, ceil((max(step) - min(step) + 1) / greatest(20, least(400,
               {CURVE_POINTS // 2} // (SELECT count(*) FROM pairs)))))::BIGINT AS width
    FROM gap_raw GROUP BY pair)
SELECT p.pair, p.method, c.job_id, 'loss' AS panel, p.method || ': ' || p.pair AS series, c.step, c.value, c.steps
FROM pairs p JOIN curve c ON c.job_id = p.tandem_job
UNION ALL  -- each replayed online run once, however many replays it has
SELECT 'online ' || left(c.job_id, 8), 'online', c.job_id, 'loss', 'online ' || left(c.job_id, 8), c.step, c.value,
       c.steps
FROM curve c WHERE c.job_id IN (SELECT online_job FROM pairs)
UNION ALL
SELECT g.pair, g.method, NULL, 'gap', g.pair, max(g.step), max(g.gap), count(*)
FROM gap_raw g JOIN gap_width w USING (pair) GROUP BY g.pair, g.method, (g.step - w.first) // w.width
ORDER BY panel, series, step"""

TRAIN_LOSS = f"""{WITH_RUNS},
{bucketed("SELECT m.job_id, m.name, m.step, m.value FROM metrics m JOIN spec_runs r USING (job_id) "
          "WHERE m.name = 'train/loss'")}
SELECT r.stage, r.method, r.sweep_label, r.task, c.job_id, c.step, c.value, c.steps
FROM curve c JOIN spec_runs r USING (job_id) ORDER BY c.job_id, c.step"""


FIGURES = [
    Figure("kl_vs_winrate", "Win rate against KL budget: online vs offline (Fig. 1)",
           "Each point is one evaluated checkpoint; thin lines join a run's checkpoints in step order; rules are "
           "95% intervals. Offline runs are pooled over their sweep (hover for the swept values). Higher at "
           "equal KL is better; a curve that turns down has over-optimised. Runs measured against different "
           "baselines (the golden policy is measured against SFT, the others against the golden policy) are "
           "drawn in separate panels, each titled with its baseline.",
           KL_VS_WINRATE, lambda df: win_rate_vs_kl(df, column=_split_by(df, "against")),
           "align stages evaluated with `evaluate.judge`"),
    Figure("tandem_overlay", "Tandem runs on the same axes (Fig. 4)",
           "Offline learning on the online run's own stream, in its exact order (tandem) and shuffled, next to "
           "online and offline. If coverage explained the gap, the shuffled tandem run would match online.",
           TANDEM_OVERLAY, lambda df: win_rate_vs_kl(df), "an align stage with `sampler: {replay: ...}`"),
    Figure("by_loss", "Win rate against KL per loss: IPO vs Bo2 (Fig. 9)",
           "One panel per loss (`loss.name`), methods coloured as elsewhere.",
           BY_LOSS, lambda df: win_rate_vs_kl(df, column="loss"), "align stages with at least two losses"),
    Figure("accuracy_over_time", "Policies and the proxy judge as classifiers over training (Fig. 6, 8 top)",
           "Agreement with the golden judge: the policy's log-ratio classifier on D_golden, on the online stream "
           "and on its own samples, and the proxy judge's on the online stream (solid: policy, dashed: proxy "
           "judge). Per-step stream accuracies are averaged in buckets of steps.",
           ACCURACY, lambda df: _over_steps(df, "accuracy (agreement with golden labels)", "classifier",
                                            column="pairs"),
           "align stages with `evaluate.pairs`, or online stages with `evaluate.judge`"),
    Figure("accuracy_vs_winrate", "Classification accuracy against win rate (Fig. 7)",
           "Each point is a checkpoint: accuracy on D_golden does not need to predict its win rate.",
           ACCURACY_VS_WIN, _accuracy_vs_win_rate, "align stages with `evaluate.pairs` and `evaluate.judge`"),
    Figure("winner_logprob", "Log-probability of winning and losing responses (Fig. 8, bottom)",
           "Mean sequence log-probability of D_golden's chosen (solid) and rejected (dashed) responses.",
           LOGP, lambda df: _over_steps(df, "mean log π(y|x) on D_golden", "response"),
           "align stages with `evaluate.pairs`"),
    Figure("best_by_size", "Best achievable win rate against policy size (Fig. 10, 11, 14)",
           "90% quantile of win rate over every checkpoint of a method at a size (pooled over sweeps and "
           "seeds); left, divided by online's at the same size; right, absolute.",
           BEST_BY_SIZE, _best_by_size, "align stages at two or more `model.size`s"),
    Figure("dataset_ablation", "Offline on different datasets (Fig. 5, 12)",
           "Offline runs coloured by the dataset stage they trained on (their `sampler.offline`), with online "
           "for reference.",
           DATASETS, lambda df: win_rate_vs_kl(df, color="data", color_title="trained on"),
           "offline stages on at least two datasets"),
    Figure("shuffle_levels", "Tandem at several shuffle levels (Fig. 13)",
           "Replays of the online stream, shuffled by `sampler.shuffle` (0 = exact order, 1 = uniform).",
           SHUFFLE, lambda df: win_rate_vs_kl(df, color="shuffle", color_title="replay"),
           "replay stages at two or more `sampler.shuffle` levels"),
    Figure("tandem_loss", "Tandem against the online run it replays: training loss (App. F)",
           "Top: loss of each replay run and of the online run it replays (bucket means). Bottom: the largest "
           "per-step |difference| in each bucket; exact-order replay should stay at zero.",
           TANDEM_LOSS, _tandem_loss, "an align stage with `sampler: {replay: ...}` and its online run's train/loss"),
    Figure("train_loss", "Training loss",
           "Per-step training loss of every learner, averaged in buckets of steps on long runs.",
           TRAIN_LOSS, lambda df: _over_steps(df, "train loss", None, points=False), "any training stage"),
]
FIGURES_BY_NAME = {f.name: f for f in FIGURES}


# --- custom figures ---------------------------------------------------------------------------

CUSTOM_ROWS = 20_000  # a custom query's rows beyond this are cut, with a note


def custom_figure(name: str, settings) -> Figure:
    """A spec's `report.custom` entry ({title, sql, mark, x, y, color}) as a Figure."""
    if hasattr(settings, "model_dump"):
        settings = settings.model_dump()
    settings = dict(settings)
    mark, x, y, color = settings.get("mark", "line"), settings["x"], settings["y"], settings.get("color")
    if mark not in ("line", "point", "bar"):
        raise ValueError(f"mark must be line, point or bar, not {mark!r}")
    sql = settings["sql"]

    def chart(df: pd.DataFrame):
        missing = [c for c in (x, y, color) if c and c not in df.columns]
        if missing:
            raise ValueError(f"the query returned no column {', '.join(map(repr, missing))} "
                             f"(it has {', '.join(map(repr, df.columns))})")
        encoding = {"x": alt.X(field=_escape_field(x), type=_vl_type(df[x]), title=x),
                    "y": alt.Y(field=_escape_field(y), type=_vl_type(df[y]), title=y),
                    "tooltip": _tooltip(df, list(df.columns)[:12])}
        if color:
            encoding["color"] = alt.Color(field=_escape_field(color), type=_vl_type(df[color]), title=color)
        marks = {"line": lambda c: c.mark_line(point=True), "point": lambda c: c.mark_point(filled=True),
                 "bar": lambda c: c.mark_bar()}
        return marks[mark](alt.Chart(DATA)).encode(**encoding).properties(width=WIDTH, height=HEIGHT).interactive()

    return Figure(name, settings.get("title") or name, f"Custom figure from the spec ({mark} of {y} against {x}).",
                  sql, chart, "its query to return rows")


def _vl_type(values: pd.Series) -> str:
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return "temporal"
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return "quantitative"
    return "nominal"


def _escape_field(column: str) -> str:
    """Vega-Lite reads '.' and '[' in a field name as nesting; escape them."""
    return re.sub(r"([.\[\]\\])", r"\\\1", column)
