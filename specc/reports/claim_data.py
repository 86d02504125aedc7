"""What the claim checks share: the Finding they return, the spec's runs loaded as paired.Run
curves (with per-item outcomes where recorded), and labels for the (loss, policy size)
settings a spec compares within.

Conventions: "online" means online runs judged by a proxy (an online run judged by the
golden judge is the golden policy, left out); a replicate is a job's train.seed with the
seeds swept upstream of it (e.g. a task seed): runs of one replicate share data, seeds and
evaluation draws, and are compared with each other, never across replicates.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from specc.reports.figures import size_key
from specc.reports.paired import Run
from specc.reports.queries import WITH_EVALS, WITH_RUNS


@dataclass(frozen=True)
class Finding:
    figure: str
    claim: str
    verdict: str  # observed | contradicted | inconclusive
    evidence: str

    @property
    def css(self) -> str:
        return {"observed": "yes", "contradicted": "no"}.get(self.verdict, "na")


@dataclass(frozen=True)
class RunData:
    """One align run of the spec, with what the claims group and pair it by."""
    job: str
    stage: str
    method: str
    loss: str
    size: str
    replicate: str
    config: str  # its own swept values (seeds aside), e.g. "loss.beta=0.1"
    replays: str | None
    data_stage: str | None
    on_eval_pairs: bool | None
    shuffle: float  # a replay's shuffle level (0 for every other run)
    run: Run


def load_runs(data, column: str, outcome: str | None = None, methods=("online", "offline")) -> list[RunData]:
    """The spec's runs of `methods` with their checkpoints' `column` (an eval metric) and, where
    every checkpoint has them, the per-item outcomes `outcome` (win, oracle_reward,
    classifier_correct) as the items of each Run."""
    listed = ", ".join(f"'{m}'" for m in methods)
    rows = data.rows(f"""{WITH_EVALS}
        SELECT job_id, stage, method, loss, policy_size, replicate, sweep_json, replays, data_stage, on_eval_pairs,
               coalesce(shuffle_level, 0), step, coalesce(kl, 'nan'::DOUBLE), {column}
        FROM spec_evals WHERE method IN ({listed}) AND {column} IS NOT NULL ORDER BY job_id, step""")
    items = _items(data, outcome, listed) if outcome else {}
    by_job: dict = defaultdict(list)
    for row in rows:
        by_job[row[0]].append(row)
    out = []
    for job, checkpoints in by_job.items():
        _, stage, method, loss, size, replicate, sweep, replays, data_stage, on_pairs, shuffle = checkpoints[0][:11]
        steps = [c[11] for c in checkpoints]
        per_step = items.get(job, {})
        matrix = np.array([per_step[s] for s in steps]) if per_step and all(s in per_step for s in steps) else None
        if matrix is not None and matrix.ndim != 2:
            matrix = None
        config = _config_label(sweep, stage)
        run = Run.of(f"{stage} {config}".strip(), steps, [c[12] for c in checkpoints],
                     [c[13] for c in checkpoints], matrix)
        out.append(RunData(job, stage, method, str(loss), str(size), str(replicate), config,
                           replays, data_stage, on_pairs, float(shuffle), run))
    return out


def _items(data, outcome: str, methods: str) -> dict:
    """{job: {step: item outcomes in item order}} from the `outcome/<outcome>/<item>` metric rows."""
    frame = data.df(f"""{WITH_RUNS}
        SELECT m.job_id, m.step, CAST(split_part(m.name, '/', 3) AS INTEGER) AS item, m.value FROM metrics m
        WHERE m.name LIKE 'outcome/{outcome}/%'
          AND m.job_id IN (SELECT job_id FROM spec_runs WHERE method IN ({methods}))
        ORDER BY m.job_id, m.step, item""")
    out: dict = defaultdict(dict)
    for (job, step), group in frame.groupby(["job_id", "step"], sort=False):
        values = group["value"].to_numpy()
        if np.array_equal(group["item"].to_numpy(), np.arange(len(values))):
            out[job][int(step)] = values
    return out


def _config_label(sweep_json: str | None, stage: str) -> str:
    """A run's own stage's swept values; seeds (which make replicates, not configurations) and
    values swept upstream (a task variant shared by every method) left out."""
    try:
        sweep = json.loads(sweep_json) if sweep_json else {}
    except (TypeError, ValueError):
        return ""
    own = {k.split(".", 1)[1]: v for k, v in sweep.items() if k.startswith(f"{stage}.") and not k.endswith("seed")}
    return ", ".join(f"{k}={v}" for k, v in sorted(own.items()))


def by_replicate(runs: list[RunData]) -> dict[str, list[RunData]]:
    out: dict = defaultdict(list)
    for r in runs:
        out[r.replicate].append(r)
    return dict(sorted(out.items()))


def runs_label(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def settings_of(keys) -> list[tuple]:
    """The (loss, policy size) settings present, the paper's main loss first and Bo2 last."""
    return sorted(set(keys), key=lambda k: (k[0] == "bo2", str(k[0]), size_key(str(k[1]))))


def setting_label(setting, settings) -> tuple[str, str]:
    """(paper figure, claim suffix) for a (loss, size) setting; parts that never vary are left out."""
    loss, size = setting
    parts = []
    if len({s[0] for s in settings}) > 1 or loss == "bo2":
        parts.append("Bo2" if loss == "bo2" else str(loss))
    if len({s[1] for s in settings}) > 1:
        parts.append(f"size {size}")
    return ("Fig. 9" if loss == "bo2" else "Fig. 1"), (f" ({', '.join(parts)})" if parts else "")
