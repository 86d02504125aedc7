"""Built-in figures: each is a SQL query over the store's views plus an altair chart.

Queries take the spec name as their only parameter (`?`) and aggregate in
SQL; a figure whose query returns no rows is left out of the report with a
note saying which stages would produce its data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import altair as alt
import pandas as pd


@dataclass(frozen=True)
class Figure:
    name: str
    title: str
    caption: str
    sql: str
    chart: Callable[[pd.DataFrame], alt.Chart]
    needs: str  # what the spec must run for this figure to have data


def _kl_vs_winrate(df: pd.DataFrame) -> alt.Chart:
    df = df.assign(run=df["stage"] + " " + df["sweep_label"])
    base = alt.Chart(df).encode(
        x=alt.X("kl:Q", title="KL(π ‖ π_sft) (nats)"),
        y=alt.Y("win_rate:Q", title="win rate vs baseline (golden judge)", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("method:N", title="method"),
        detail="run:N",
        tooltip=["stage", "method", "sweep_label", "step", alt.Tooltip("kl:Q", format=".3f"),
                 alt.Tooltip("win_rate:Q", format=".3f"), alt.Tooltip("win_rate_lo:Q", format=".3f"),
                 alt.Tooltip("win_rate_hi:Q", format=".3f")],
    )
    return (base.mark_line(opacity=0.35) + base.mark_point(filled=True)).properties(width=560, height=340).interactive()


def _accuracy_over_steps(df: pd.DataFrame) -> alt.Chart:
    return alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("step:Q"), y=alt.Y("value:Q", title="accuracy", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("method:N"), strokeDash=alt.StrokeDash("metric:N"), detail="job_id:N",
        tooltip=["stage", "method", "metric", "step", alt.Tooltip("value:Q", format=".3f")],
    ).properties(width=560, height=300).interactive()


def _logp_over_steps(df: pd.DataFrame) -> alt.Chart:
    return alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("step:Q"), y=alt.Y("value:Q", title="mean log π(y|x) on D_golden"),
        color=alt.Color("method:N"), strokeDash=alt.StrokeDash("response:N"), detail="job_id:N",
        tooltip=["stage", "method", "response", "step", alt.Tooltip("value:Q", format=".3f")],
    ).properties(width=560, height=300).interactive()


def _train_loss(df: pd.DataFrame) -> alt.Chart:
    return alt.Chart(df).mark_line().encode(
        x="step:Q", y=alt.Y("value:Q", title="train loss"), color="stage:N", detail="job_id:N",
        tooltip=["stage", "method", "step", alt.Tooltip("value:Q", format=".5f")],
    ).properties(width=560, height=300).interactive()


SWEEP_LABEL = "coalesce(nullif(regexp_replace(CAST(r.sweep AS VARCHAR), '[{}\"]', '', 'g'), ''), '-')"

FIGURES = [
    Figure("kl_vs_winrate", "Win rate against KL budget (Fig. 1, 4)",
           "Each point is one evaluation of a checkpoint; lines join a run's checkpoints. Offline runs are pooled "
           "over their sweep. Higher at equal KL is better.",
           f"""SELECT r.stage, r.method, {SWEEP_LABEL} AS sweep_label, r.job_id, e.step, e.kl, e.win_rate,
                      e.win_rate_lo, e.win_rate_hi
               FROM runs r JOIN evals e USING (job_id)
               WHERE r.spec_name = ? AND e.win_rate IS NOT NULL ORDER BY r.job_id, e.step""",
           _kl_vs_winrate, "align stages with `evaluate.judge`"),
    Figure("accuracy_over_time", "Policy as a classifier over training (Fig. 6, 8)",
           "Sign agreement of the policy's log-ratio with golden labels, on D_golden and on its own samples.",
           """SELECT r.stage, r.method, r.job_id, m.step,
                      replace(m.name, 'eval/', '') AS metric, m.value
               FROM runs r JOIN metrics m USING (job_id)
               WHERE r.spec_name = ? AND m.name IN ('eval/classifier_accuracy', 'eval/self_classifier_accuracy')
               ORDER BY r.job_id, m.step""",
           _accuracy_over_steps, "align stages with `evaluate.pairs`"),
    Figure("winner_logprob", "Log-probability of winning and losing responses (Fig. 8, bottom)",
           "Mean sequence log-probability of D_golden's chosen and rejected responses under the policy.",
           """SELECT r.stage, r.method, r.job_id, m.step,
                      CASE m.name WHEN 'eval/logp_chosen' THEN 'chosen' ELSE 'rejected' END AS response, m.value
               FROM runs r JOIN metrics m USING (job_id)
               WHERE r.spec_name = ? AND m.name IN ('eval/logp_chosen', 'eval/logp_rejected')
               ORDER BY r.job_id, m.step""",
           _logp_over_steps, "align stages with `evaluate.pairs`"),
    Figure("train_loss", "Training loss", "Per-step training loss of every learner.",
           """SELECT r.stage, r.method, r.job_id, m.step, m.value
               FROM runs r JOIN metrics m USING (job_id)
               WHERE r.spec_name = ? AND m.name = 'train/loss' ORDER BY r.job_id, m.step""",
           _train_loss, "any training stage"),
]
FIGURES_BY_NAME = {f.name: f for f in FIGURES}
