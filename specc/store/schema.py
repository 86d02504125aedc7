"""Tables and views of the results store, each with the one-line description `specc query --views`
prints and docs/store.md repeats (a test keeps the two in step).

Tables hold what ingestion copies from job dirs; views shape it for the paper's figures. Opening
the store for writing recreates the views when their SQL differs from the one recorded in the
file, so a newer specc brings an older file's views up to date.
"""

from __future__ import annotations

from specc.contracts import UNKNOWN_METHOD

SCHEMA_VERSION = 3  # 2: metrics without a primary key (ingestion keeps (job_id, step, name) unique)
#                    3: spec_jobs holds each spec's own sweep labels and replicate of a job

# name -> (description, DDL)
TABLES: dict[str, tuple[str, str]] = {
    "store_info": (
        "key/value facts about the store file itself (schema_version, views_sha256)",
        "CREATE TABLE IF NOT EXISTS store_info (key VARCHAR PRIMARY KEY, value VARCHAR)"),
    "specs": (
        "one row per spec run in this workspace: its path and full text when last run",
        "CREATE TABLE IF NOT EXISTS specs (spec_name VARCHAR PRIMARY KEY, path VARCHAR, text VARCHAR, "
        "recorded_at DOUBLE)"),
    "spec_jobs": (
        "which jobs (by stage) make up each spec's current plan, with the spec's sweep labels of the job and its "
        "replicate (the seeds it was drawn with: its own train.seed and the seeds swept upstream, e.g. a task seed)",
        "CREATE TABLE IF NOT EXISTS spec_jobs (spec_name VARCHAR, job_id VARCHAR, stage VARCHAR, sweep JSON, "
        "replicate VARCHAR, PRIMARY KEY (spec_name, job_id, stage))"),
    "jobs": (
        "one row per job dir: resolved config, upstream job ids, state and timings from status.json",
        "CREATE TABLE IF NOT EXISTS jobs (job_id VARCHAR PRIMARY KEY, kind VARCHAR, stage VARCHAR, config JSON, "
        "upstream JSON, sweep JSON, status VARCHAR, started DOUBLE, finished DOUBLE, wall_s DOUBLE, host VARCHAR, "
        "threads INTEGER, attempt INTEGER, scheduler_id VARCHAR, error VARCHAR)"),
    "metrics": (
        "every metric row of every job, unique on (job_id, step, name); the newest file wins",
        # No PRIMARY KEY: maintaining the index made a 1M-row ingest take 2-3 s. Ingestion
        # deduplicates each batch and deletes the keys it replaces, in one transaction.
        "CREATE TABLE IF NOT EXISTS metrics (job_id VARCHAR, step BIGINT, name VARCHAR, value DOUBLE)"),
    "ingested_files": (
        "manifest of job files already read, by path relative to the workspace, with the size and mtime seen",
        "CREATE TABLE IF NOT EXISTS ingested_files (path VARCHAR PRIMARY KEY, size BIGINT, mtime DOUBLE)"),
}

_UPSTREAM_REPLAY = """json_extract_string(j.upstream, '$."sampler.replay"')"""

# sampler kind (contracts.SAMPLERS) -> the SQL of its runs' method label; an align run whose
# sampler has no entry here is labelled UNKNOWN_METHOD, never taken for another method.
SAMPLER_METHODS: dict[str, str] = {
    "online": "'online'",
    "replay": "CASE WHEN CAST(json_extract(j.config, '$.sampler.shuffle') AS DOUBLE) = 0 THEN 'tandem' "
              "ELSE 'tandem-shuffled' END",
    "offline": "'offline'",
}
_METHOD = ("CASE WHEN j.kind <> 'align' THEN j.kind\n"
           + "".join(f"            WHEN json_extract_string(j.config, '$.sampler.{kind}') IS NOT NULL THEN {label}\n"
                     for kind, label in SAMPLER_METHODS.items())
           + f"            ELSE '{UNKNOWN_METHOD}' END")

# name -> (description, SELECT); order matters: a view may only use the ones above it.
VIEWS: dict[str, tuple[str, str]] = {
    "runs": ("jobs of each spec with their method (online, offline, tandem, tandem-shuffled or the kind) and "
             "swept hyperparameters as columns", f"""
SELECT sj.spec_name, sj.stage, j.job_id, j.kind, j.status, coalesce(sj.sweep, j.sweep) AS sweep, j.config,
       j.wall_s, j.threads,
       {_METHOD} AS method,
       json_extract_string(j.config, '$.loss.name') AS loss,
       CAST(json_extract(j.config, '$.loss.beta') AS DOUBLE) AS beta,
       CAST(json_extract(j.config, '$.train.lr') AS DOUBLE) AS lr,
       CAST(json_extract(j.config, '$.train.seed') AS BIGINT) AS seed,
       coalesce(sj.replicate, 'train.seed=' || coalesce(json_extract_string(j.config, '$.train.seed'), '-')) AS replicate,
       -- align jobs inherit the policy of their init (sft, or an align run started from one)
       coalesce(json_extract_string(j.config, '$.model.size'), json_extract_string(i.config, '$.model.size'),
                json_extract_string(ii.config, '$.model.size')) AS policy_size,
       CAST(json_extract(j.config, '$.sampler.shuffle') AS DOUBLE) AS shuffle_level
FROM spec_jobs sj JOIN jobs j USING (job_id)
LEFT JOIN jobs i ON i.job_id = json_extract_string(j.upstream, '$.init')
LEFT JOIN jobs ii ON ii.job_id = json_extract_string(i.upstream, '$.init')"""),

    "evals": ("one row per evaluated checkpoint (job_id, step) with every eval/* metric as a column", """
SELECT job_id, step,
       max(value) FILTER (WHERE name = 'eval/kl') AS kl,
       max(value) FILTER (WHERE name = 'eval/win_rate') AS win_rate,
       max(value) FILTER (WHERE name = 'eval/win_rate_lo') AS win_rate_lo,
       max(value) FILTER (WHERE name = 'eval/win_rate_hi') AS win_rate_hi,
       max(value) FILTER (WHERE name = 'eval/classifier_accuracy') AS classifier_accuracy,
       max(value) FILTER (WHERE name = 'eval/self_classifier_accuracy') AS self_classifier_accuracy,
       max(value) FILTER (WHERE name = 'eval/logp_chosen') AS logp_chosen,
       max(value) FILTER (WHERE name = 'eval/logp_rejected') AS logp_rejected,
       max(value) FILTER (WHERE name = 'eval/oracle_reward') AS oracle_reward
FROM metrics WHERE name LIKE 'eval/%' GROUP BY job_id, step"""),

    "eval_outcomes": ("per-item outcomes of every evaluated checkpoint, long format: the win (1, 0.5, 0) and oracle "
                      "reward on each held-out prompt, the verdict on each pair of D_golden; runs evaluated on the "
                      "same items compare item by item", """
SELECT job_id, step, split_part(name, '/', 2) AS outcome, CAST(split_part(name, '/', 3) AS INTEGER) AS item, value
FROM metrics WHERE name LIKE 'outcome/%'"""),

    "kl_vs_winrate": ("win rate against the baseline vs KL to the SFT policy, per checkpoint (paper Fig. 1, 4)", """
SELECT r.spec_name, r.stage, r.method, r.loss, r.beta, r.lr, r.seed, r.policy_size, r.shuffle_level,
       r.job_id, e.step, e.kl, e.win_rate, e.win_rate_lo, e.win_rate_hi
FROM runs r JOIN evals e USING (job_id) WHERE e.win_rate IS NOT NULL"""),

    "train_curves": ("per-step train/* and online/* metrics of every learner, long format", """
SELECT r.spec_name, r.stage, r.method, r.job_id, m.step, m.name, m.value
FROM runs r JOIN metrics m USING (job_id) WHERE m.name LIKE 'train/%' OR m.name LIKE 'online/%'"""),

    "best_of": ("best achievable win rate: 90% quantile over all checkpoints per spec, method and policy size, "
                "and that divided by the online method's at the same size (paper Fig. 11)", """
WITH per_method AS (
    SELECT spec_name, method, policy_size, count(DISTINCT job_id) AS n_runs, count(*) AS n_checkpoints,
           quantile_cont(win_rate, 0.9) AS win_rate_q90, max(win_rate) AS win_rate_max
    FROM kl_vs_winrate GROUP BY spec_name, method, policy_size)
SELECT p.spec_name, p.method, p.policy_size, p.n_runs, p.n_checkpoints, p.win_rate_q90, p.win_rate_max,
       o.win_rate_q90 AS online_win_rate_q90, p.win_rate_q90 / nullif(o.win_rate_q90, 0) AS normalised_win_rate
FROM per_method p LEFT JOIN per_method o
  ON o.spec_name = p.spec_name AND o.method = 'online' AND o.policy_size IS NOT DISTINCT FROM p.policy_size"""),

    "accuracy_over_time": ("every eval/*accuracy* metric per checkpoint, e.g. the policy as a classifier of "
                           "D_golden and of its own samples (paper Fig. 6, 8)", """
SELECT r.spec_name, r.stage, r.method, r.loss, r.beta, r.policy_size, r.shuffle_level, r.job_id, m.step,
       replace(m.name, 'eval/', '') AS metric, m.value AS accuracy
FROM runs r JOIN metrics m USING (job_id) WHERE m.name LIKE 'eval/%accuracy%'"""),

    "logp_over_time": ("mean log-probability of D_golden's chosen and rejected responses per checkpoint "
                       "(paper Fig. 8, bottom)", """
SELECT r.spec_name, r.stage, r.method, r.loss, r.beta, r.policy_size, r.shuffle_level, r.job_id, m.step,
       CASE m.name WHEN 'eval/logp_chosen' THEN 'chosen' ELSE 'rejected' END AS response, m.value AS logp
FROM runs r JOIN metrics m USING (job_id) WHERE m.name IN ('eval/logp_chosen', 'eval/logp_rejected')"""),

    "tandem_vs_online_loss": ("per-step train/loss of each replay (tandem) job next to the online job it replays "
                              "(its upstream role sampler.replay); equal in exact order (paper App. F)", f"""
WITH replays AS (
    SELECT r.spec_name, r.stage, r.method, r.shuffle_level, r.job_id, {_UPSTREAM_REPLAY} AS online_job_id
    FROM runs r JOIN jobs j USING (job_id) WHERE {_UPSTREAM_REPLAY} IS NOT NULL)
SELECT p.spec_name, p.stage, p.method, p.shuffle_level, p.job_id, p.online_job_id, oj.stage AS online_stage,
       t.step, t.value AS tandem_loss, o.value AS online_loss, t.value - o.value AS loss_difference
FROM replays p
JOIN metrics t ON t.job_id = p.job_id AND t.name = 'train/loss'
JOIN metrics o ON o.job_id = p.online_job_id AND o.name = 'train/loss' AND o.step = t.step
LEFT JOIN jobs oj ON oj.job_id = p.online_job_id"""),
}

SCHEMA = ";\n".join(ddl for _, ddl in TABLES.values()) + ";"


def views_sql() -> str:
    """Every view, (re)created in dependency order."""
    return "\n".join(f"CREATE OR REPLACE VIEW {name} AS {sql.strip()};" for name, (_, sql) in VIEWS.items())
