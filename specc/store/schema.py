"""Tables and views of the results store. Views are documented in README.md (Results store)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS specs (
    spec_name VARCHAR PRIMARY KEY, path VARCHAR, text VARCHAR, recorded_at DOUBLE);
CREATE TABLE IF NOT EXISTS spec_jobs (
    spec_name VARCHAR, job_id VARCHAR, stage VARCHAR, PRIMARY KEY (spec_name, job_id, stage));
CREATE TABLE IF NOT EXISTS jobs (
    job_id VARCHAR PRIMARY KEY, kind VARCHAR, stage VARCHAR, config JSON, upstream JSON, sweep JSON,
    status VARCHAR, started DOUBLE, finished DOUBLE, wall_s DOUBLE, host VARCHAR, threads INTEGER,
    attempt INTEGER, scheduler_id VARCHAR, error VARCHAR);
CREATE TABLE IF NOT EXISTS metrics (
    job_id VARCHAR, step BIGINT, name VARCHAR, value DOUBLE, PRIMARY KEY (job_id, step, name));
CREATE TABLE IF NOT EXISTS ingested_files (path VARCHAR PRIMARY KEY, size BIGINT, mtime DOUBLE);
"""

VIEWS = """
CREATE OR REPLACE VIEW runs AS
SELECT sj.spec_name, sj.stage, j.job_id, j.kind, j.status, j.sweep, j.config, j.wall_s, j.threads,
       CASE WHEN j.kind <> 'align' THEN j.kind
            WHEN json_extract_string(j.config, '$.sampler.online') IS NOT NULL THEN 'online'
            WHEN json_extract_string(j.config, '$.sampler.replay') IS NOT NULL THEN
                 CASE WHEN CAST(json_extract(j.config, '$.sampler.shuffle') AS DOUBLE) = 0 THEN 'tandem' ELSE 'tandem-shuffled' END
            ELSE 'offline' END AS method,
       json_extract_string(j.config, '$.loss.name') AS loss,
       CAST(json_extract(j.config, '$.loss.beta') AS DOUBLE) AS beta,
       CAST(json_extract(j.config, '$.train.lr') AS DOUBLE) AS lr,
       CAST(json_extract(j.config, '$.train.seed') AS BIGINT) AS seed,
       json_extract_string(j.config, '$.model.size') AS policy_size,
       CAST(json_extract(j.config, '$.sampler.shuffle') AS DOUBLE) AS shuffle_level
FROM spec_jobs sj JOIN jobs j USING (job_id);

CREATE OR REPLACE VIEW evals AS
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
FROM metrics WHERE name LIKE 'eval/%' GROUP BY job_id, step;

CREATE OR REPLACE VIEW kl_vs_winrate AS
SELECT r.spec_name, r.stage, r.method, r.loss, r.beta, r.lr, r.seed, r.policy_size, r.shuffle_level,
       r.job_id, e.step, e.kl, e.win_rate, e.win_rate_lo, e.win_rate_hi
FROM runs r JOIN evals e USING (job_id) WHERE e.win_rate IS NOT NULL;

CREATE OR REPLACE VIEW train_curves AS
SELECT r.spec_name, r.stage, r.method, r.job_id, m.step, m.name, m.value
FROM runs r JOIN metrics m USING (job_id) WHERE m.name LIKE 'train/%' OR m.name LIKE 'online/%';
"""
