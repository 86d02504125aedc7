"""SQL shared by figures and findings: the spec's runs with their lineage, and thinned curves.

Every query takes the spec name as its only parameter; it may be written
once or several times (`?` each time) and `run_query` binds it to all of them.
Aggregation happens here, in DuckDB, so a report reads a few thousand rows
however large the store is.
"""

from __future__ import annotations

import pandas as pd

from specc.contracts import METHODS as SAMPLER_METHODS

GOLDEN_ONLINE = "online (golden judge)"
METHODS = (*SAMPLER_METHODS, GOLDEN_ONLINE)  # align methods, in legend order

# A run's swept values as a short label: {"offline.loss.beta": 0.1} -> offline.loss.beta: 0.1
SWEEP_LABEL = "coalesce(nullif(regexp_replace(CAST(r.sweep AS VARCHAR), '[{}\"]', '', 'g'), ''), '-')"

# The spec's jobs, one row each, with what they were built from:
#   data_stage     the stage whose pairs an offline run trained on (its `sampler.offline` upstream)
#   on_eval_pairs  whether that dataset is the one the spec evaluates classification on (D_golden)
#   replays        the online job a tandem run replays (its `sampler.replay` upstream)
#   task           the stage that supplied the prompts
# An online run whose judge is the evaluation's golden judge (the paper's golden policy, the usual
# baseline) is method 'online (golden judge)': comparisons of online and offline leave it out.
SPEC_RUNS = f"""
spec_stages AS (SELECT job_id, min(stage) AS stage FROM spec_jobs WHERE spec_name = ? GROUP BY job_id),
spec_runs AS MATERIALIZED (
    SELECT r.stage, r.job_id, r.kind,
           CASE WHEN r.method = 'online' AND json_extract_string(j.upstream, '$."sampler.online"')
                     = json_extract_string(j.upstream, '$."evaluate.judge"') THEN '{GOLDEN_ONLINE}'
                ELSE r.method END AS method,
           r.loss, r.beta, r.lr, r.seed, r.replicate, r.policy_size, r.shuffle_level,
           r.status, r.wall_s, {SWEEP_LABEL} AS sweep_label, CAST(r.sweep AS VARCHAR) AS sweep_json,
           coalesce(ds.stage, dj.stage, json_extract_string(r.config, '$.sampler.offline')) AS data_stage,
           json_extract_string(j.upstream, '$."sampler.offline"')
               = json_extract_string(j.upstream, '$."evaluate.pairs"') AS on_eval_pairs,
           json_extract_string(j.upstream, '$."sampler.replay"') AS replays,
           coalesce(ts.stage, tj.stage) AS task,
           -- the policy its win rate is measured against: evaluate.baseline, else its own init
           coalesce(bs.stage, bj.stage) AS baseline,
           coalesce(CAST(json_extract(r.config, '$.evaluate.classifier_pairs') AS BIGINT), 256) AS classifier_pairs,
           coalesce(CAST(json_extract(r.config, '$.evaluate.kl_prompts') AS BIGINT), 256) AS kl_prompts,
           coalesce(CAST(json_extract(r.config, '$.evaluate.win_prompts') AS BIGINT), 512) AS win_prompts
    FROM runs r JOIN jobs j USING (job_id)
    LEFT JOIN spec_stages ds ON ds.job_id = json_extract_string(j.upstream, '$."sampler.offline"')
    LEFT JOIN jobs dj ON dj.job_id = json_extract_string(j.upstream, '$."sampler.offline"')
    LEFT JOIN spec_stages ts ON ts.job_id = json_extract_string(j.upstream, '$.prompts')
    LEFT JOIN jobs tj ON tj.job_id = json_extract_string(j.upstream, '$.prompts')
    LEFT JOIN spec_stages bs ON bs.job_id = coalesce(json_extract_string(j.upstream, '$."evaluate.baseline"'),
                                                     json_extract_string(j.upstream, '$.init'))
    LEFT JOIN jobs bj ON bj.job_id = coalesce(json_extract_string(j.upstream, '$."evaluate.baseline"'),
                                              json_extract_string(j.upstream, '$.init'))
    WHERE r.spec_name = ?
    QUALIFY row_number() OVER (PARTITION BY r.job_id ORDER BY r.stage) = 1)"""

# Evaluations of the spec's policies, one row per checkpoint (pivoted here rather than through
# the store's `evals` view so that only this spec's rows are read, and with the extra metrics).
EVAL_COLUMNS = ("kl", "win_rate", "win_rate_lo", "win_rate_hi", "classifier_accuracy", "self_classifier_accuracy",
                "proxy_accuracy_on_policy", "logp_chosen", "logp_rejected", "oracle_reward")
SPEC_EVALS = """
spec_evals AS MATERIALIZED (
    SELECT r.*, e.* EXCLUDE (job_id)
    FROM (SELECT job_id, step, {columns} FROM metrics
          WHERE name IN ({names}) AND job_id IN (SELECT job_id FROM spec_runs WHERE kind = 'align'
                                                 AND status NOT IN ('failed', 'damaged'))  -- e.g. diverged
          GROUP BY job_id, step) AS e
    JOIN spec_runs r USING (job_id))""".format(
    columns=", ".join(f"max(value) FILTER (WHERE name = 'eval/{c}') AS {c}" for c in EVAL_COLUMNS),
    names=", ".join(f"'eval/{c}'" for c in EVAL_COLUMNS))

WITH_RUNS = f"WITH {SPEC_RUNS}"
WITH_EVALS = f"WITH {SPEC_RUNS}, {SPEC_EVALS}"

CURVE_POINTS = 10_000  # at most this many points per curve figure, spread over its curves


def bucketed(source: str, points: int = CURVE_POINTS) -> str:
    """CTEs `curve_raw` (the rows of `source`: job_id, name, step, value) and `curve` (the
    same thinned to at most ~`points` rows in all: each curve's steps in equal-width buckets,
    value averaged, step the bucket's last). A curve keeps 20 to 400 buckets."""
    return f"""
curve_raw AS MATERIALIZED ({source}),
curve_width AS (
    SELECT job_id, name, min(step) AS first,
           greatest(1, ceil((max(step) - min(step) + 1) / greatest(20, least(400, {points} //
               (SELECT greatest(1, count(*)) FROM (SELECT DISTINCT job_id, name FROM curve_raw))))))::BIGINT AS width
    FROM curve_raw GROUP BY job_id, name),
curve AS (
    SELECT c.job_id, c.name, max(c.step) AS step, avg(c.value) AS value, count(*) AS steps
    FROM curve_raw c JOIN curve_width w USING (job_id, name)
    GROUP BY c.job_id, c.name, (c.step - w.first) // w.width)"""


def bind(con, sql: str, spec_name: str):
    """The parameters for `sql`: the spec name for every placeholder (`?`, `$1` or `$name`)."""
    statements = con.extract_statements(sql)
    if len(statements) != 1:
        raise ValueError(f"expected one SQL statement, got {len(statements)}")
    names = statements[0].named_parameters
    if all(name.isdigit() for name in names):
        return [spec_name] * max((int(n) for n in names), default=0)
    return {name: spec_name for name in names}


class SpecData:
    """Runs figure and finding SQL for one spec on one open connection.

    `share()` computes the common CTEs (spec_runs, spec_evals) once, as temporary tables of
    this connection; queries that start with WITH_RUNS or WITH_EVALS then read those instead
    of recomputing them. Results are the same either way (tests check both)."""

    def __init__(self, con, spec_name: str):
        self.con, self.spec_name, self.shared = con, spec_name, False

    def share(self) -> "SpecData":
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE spec_runs AS {WITH_RUNS} SELECT * FROM spec_runs",
                         bind(self.con, f"{WITH_RUNS} SELECT 1", self.spec_name))
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE spec_evals AS WITH {SPEC_EVALS} SELECT * FROM spec_evals")
        self.shared = True
        return self

    def _sql(self, sql: str) -> str:
        if self.shared:
            for prefix in (WITH_EVALS, WITH_RUNS):  # the longer first: it starts with the other
                if sql.startswith(prefix):
                    return "WITH shared_tables AS (SELECT 1)" + sql[len(prefix):]
        return sql

    def df(self, sql: str, limit: int | None = None) -> pd.DataFrame:
        """The result as a DataFrame; with `limit`, only its first `limit` rows are fetched."""
        sql = self._sql(sql)
        cursor = self.con.execute(sql, bind(self.con, sql, self.spec_name))
        if limit is None:
            return cursor.df()
        vectors = -(-limit // 2048)  # DuckDB hands results over in vectors of 2,048 rows
        return cursor.fetch_df_chunk(vectors).head(limit)

    def rows(self, sql: str) -> list[tuple]:
        sql = self._sql(sql)
        return self.con.execute(sql, bind(self.con, sql, self.spec_name)).fetchall()
