"""What the claim checks share: the Finding they return, per-seed peak win rates and their
comparison, and labels for the (loss, policy size) settings a spec compares within.

Conventions: "online" means online runs judged by a proxy (an online run judged by the
golden judge is the golden policy, left out); offline runs are pooled over their sweep
by taking, per seed, the best run's peak; seeds are pooled by averaging per-seed peaks
(t-interval with two or more seeds, paired where both methods have the same seeds).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from specc.reports.figures import size_key
from specc.reports.queries import WITH_EVALS
from specc.reports.stats import Estimate, group_difference, mean_estimate, se_from_interval


@dataclass(frozen=True)
class Finding:
    figure: str
    claim: str
    verdict: str  # observed | not observed | inconclusive
    evidence: str

    @property
    def css(self) -> str:
        return {"observed": "yes", "not observed": "no"}.get(self.verdict, "na")


@dataclass(frozen=True)
class Peak:
    value: float
    lo: float | None
    hi: float | None
    kl: float
    run: str


def peaks_by_seed(data, group: str, where: str = "TRUE") -> dict:
    """{group value(s): {seed: Peak}}: per seed, the best checkpoint of the group's runs. A "seed"
    is a replicate: a job's train.seed with the seeds swept upstream of it (e.g. a task seed)."""
    out: dict = defaultdict(dict)
    for *key, seed, value, lo, hi, kl, run in data.rows(f"""{WITH_EVALS}
            SELECT {group}, replicate, max(win_rate), arg_max(win_rate_lo, win_rate), arg_max(win_rate_hi, win_rate),
                   arg_max(kl, win_rate), arg_max(stage || ' ' || sweep_label, win_rate)
            FROM spec_evals WHERE win_rate IS NOT NULL AND {where} GROUP BY ALL"""):
        out[key[0] if len(key) == 1 else tuple(key)][seed] = Peak(value, lo, hi, kl, run)
    return out


def pooled(peaks: dict) -> Estimate:
    ordered = [peaks[s] for s in sorted(peaks, key=str)]
    return mean_estimate([p.value for p in ordered], [se_from_interval(p.lo, p.hi) for p in ordered])


def compare(a: dict, b: dict) -> tuple[Estimate, Estimate, Estimate, str]:
    """Pooled peaks of a and b and a - b over seeds: paired when both have the same two or
    more seeds, else as two groups (see stats.group_difference)."""
    est_a, est_b = pooled(a), pooled(b)
    se = {key: {seed: se_from_interval(p.lo, p.hi) for seed, p in peaks.items()} for key, peaks in (("a", a), ("b", b))}
    if len(a) >= 2 and set(a) == set(b):
        floors = [np.hypot(se["a"][s], se["b"][s]) if se["a"][s] is not None and se["b"][s] is not None else None
                  for s in a]
        return est_a, est_b, mean_estimate([a[s].value - b[s].value for s in a], floors), f"paired over {len(a)} seeds"
    diff = group_difference([p.value for p in a.values()], [p.value for p in b.values()],
                            list(se["a"].values()), list(se["b"].values()))
    if len(a) >= 2 and len(b) >= 2:
        how = f"Welch over seeds, {len(a)} and {len(b)}"
    elif len(a) >= 2 or len(b) >= 2:
        how = f"seeds {len(a)} and {len(b)}: the larger group's spread stands for both"
    else:
        how = "one seed: binomial intervals of the peak checkpoints" if diff.has_interval else "no interval"
    return est_a, est_b, diff, how


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
