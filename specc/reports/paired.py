"""Paired comparisons of runs, the statistics behind the gap and mechanism verdicts.

A run is its evaluated checkpoints: step, KL, the metric's mean and, where the runtime
recorded them, the per-item outcomes behind that mean (each held-out prompt's win, each
D_golden pair's verdict). Runs of one replicate are evaluated on the same items with the
same draws, so two of them are compared item by item.

Every comparison reduces each replicate to one summary (a gap over a shared KL range, a
plateau difference), then: two or more replicates give a t-interval over the replicates'
summaries (paired: both methods of a replicate share their data and seeds); a single
replicate gives a t-interval over its items' paired differences, which says how sure the
comparison is for these trained policies, not across seeds. Nothing takes a maximum over
checkpoints as its statistic, and nothing is interpolated outside the KL both methods reach.
Each rule's false "observed" rate under the null is checked by simulation
(tests/reports/test_calibration.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from specc.reports.stats import Estimate, items_estimate, mean_estimate

GRID_POINTS = 25
PLATEAU_FROM = 0.5  # a run's plateau: its checkpoints from this share of its last step on


@dataclass(frozen=True)
class Run:
    name: str
    steps: np.ndarray  # evaluated steps, ascending
    kl: np.ndarray
    value: np.ndarray  # the metric's mean at each checkpoint
    items: np.ndarray | None = None  # [checkpoint, item] outcomes whose means are `value`

    @classmethod
    def of(cls, name: str, steps, kl, value, items=None) -> "Run":
        order = np.argsort(np.asarray(steps), kind="stable")
        pick = lambda a: None if a is None else np.asarray(a, dtype=float)[order]  # noqa: E731
        return cls(name, np.asarray(steps)[order], pick(kl), pick(value), pick(items))


@dataclass(frozen=True)
class Summary:
    """One replicate's statistic and, where every run had them, its per-item values."""
    value: float
    items: np.ndarray | None = None


def plateau(run: Run) -> Summary:
    """Mean over the run's plateau: its checkpoints from PLATEAU_FROM of its last step on."""
    keep = run.steps >= PLATEAU_FROM * run.steps.max()
    items = None if run.items is None else run.items[keep].mean(axis=0)
    return Summary(float(run.value[keep].mean()), items)


def difference(a: Summary, b: Summary) -> Summary:
    items = None if a.items is None or b.items is None or len(a.items) != len(b.items) else a.items - b.items
    return Summary(a.value - b.value, items)


def mean_of(summaries: list[Summary]) -> Summary:
    items = [s.items for s in summaries]
    same = all(i is not None for i in items) and len({len(i) for i in items}) == 1
    return Summary(float(np.mean([s.value for s in summaries])), np.mean(items, axis=0) if same else None)


def best_plateau(runs: list[Run]) -> tuple[Run, Summary]:
    """The run with the highest plateau (a choice that favours that side, never the other)."""
    scored = [(plateau(run), run) for run in runs]
    summary, run = max(scored, key=lambda pair: pair[0].value)
    return run, summary


def across(per_replicate: list[Summary], unit: str = "held-out prompts") -> tuple[Estimate, str]:
    """The estimate over replicates (t over their summaries) or, with one replicate, over its
    items (t over paired per-item differences); the text says which."""
    n = len(per_replicate)
    if n >= 2:
        return mean_estimate([s.value for s in per_replicate]), f"paired over {n} replicates, t({n - 1})"
    (only,) = per_replicate
    if only.items is not None and len(only.items) >= 2:
        return (items_estimate(only.items), f"one replicate: paired over its {len(only.items)} {unit}, "
                f"t({len(only.items) - 1}); seed-to-seed variation not included")
    return Estimate(only.value, None), "one replicate without per-item outcomes: no interval"


# -- matched KL -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KlGap:
    summary: Summary  # online minus the offline envelope, averaged over the shared KL grid
    lo: float
    hi: float
    ahead: float  # share of the grid where online's mean is above the envelope's


def _interpolate(run: Run, k: float) -> tuple[float, np.ndarray | None] | None:
    """The run's value (and items) at KL `k`, linear between its two nearest evaluated
    checkpoints in KL order; None outside the KL it reached (never extrapolated)."""
    order = np.argsort(run.kl, kind="stable")
    x = run.kl[order]
    if not x[0] <= k <= x[-1]:
        return None
    if len(x) == 1:
        i, w = 0, 0.0
    else:
        i = int(min(max(np.searchsorted(x, k, side="right") - 1, 0), len(x) - 2))
        w = 0.0 if x[i + 1] == x[i] else (k - x[i]) / (x[i + 1] - x[i])
    j = min(i + 1, len(x) - 1)
    value = (1 - w) * run.value[order][i] + w * run.value[order][j]
    items = None if run.items is None else (1 - w) * run.items[order][i] + w * run.items[order][j]
    return float(value), items


def _trained(run: Run) -> Run:
    """The run without its step-0 checkpoint: every method starts at the same policy, so it
    carries no comparison, and curves are never interpolated from it."""
    keep = run.steps > 0
    return Run(run.name, run.steps[keep], run.kl[keep], run.value[keep],
               None if run.items is None else run.items[keep])


def matched_kl_gap(online: list[Run], offline: list[Run], points: int = GRID_POINTS) -> KlGap | None:
    """Online (mean of its runs) minus the offline envelope (the best offline run at each KL),
    over the KL range where both methods have evaluated, trained checkpoints; None if the
    ranges do not overlap."""
    online = [r for r in map(_trained, online) if len(r.steps)]
    offline = [r for r in map(_trained, offline) if len(r.steps)]
    if not online or not offline:
        return None
    lo = max(min(r.kl.min() for r in online), min(r.kl.min() for r in offline))
    hi = min(max(r.kl.max() for r in online), max(r.kl.max() for r in offline))
    if not hi >= lo:
        return None
    gaps, item_gaps, ahead = [], [], 0
    for k in np.linspace(lo, hi, points) if hi > lo else [lo]:
        on = [v for v in (_interpolate(r, k) for r in online) if v is not None]
        off = [v for v in (_interpolate(r, k) for r in offline) if v is not None]
        if not on or not off:
            continue
        best = max(off, key=lambda v: v[0])
        gap = float(np.mean([v for v, _ in on])) - best[0]
        gaps.append(gap)
        ahead += gap > 0
        if all(i is not None for _, i in on) and best[1] is not None:
            item_gaps.append(np.mean([i for _, i in on], axis=0) - best[1])
    if not gaps:
        return None
    items = np.mean(item_gaps, axis=0) if len(item_gaps) == len(gaps) else None
    return KlGap(Summary(float(np.mean(gaps)), items), float(lo), float(hi), ahead / len(gaps))


# -- over-optimisation ----------------------------------------------------------------------------

def rise_and_fall(run: Run) -> tuple[Summary, Summary] | None:
    """Cross-fitted rise and fall of one run's curve: the peak checkpoint is chosen on the
    even items and measured on the odd ones, so picking the best of many checkpoints does not
    inflate it. (rise = peak - first checkpoint, fall = peak - last), over the odd items.
    Needs per-item outcomes and three or more checkpoints."""
    if run.items is None or len(run.steps) < 3 or run.items.shape[1] < 4:
        return None
    choose, measure = run.items[:, 0::2], run.items[:, 1::2]
    peak = int(np.argmax(choose.mean(axis=1)))
    rise, fall = measure[peak] - measure[0], measure[peak] - measure[-1]
    return Summary(float(rise.mean()), rise), Summary(float(fall.mean()), fall)


# -- correlation ------------------------------------------------------------------------------------

def within_replicate_correlation(points: dict) -> tuple[float, float] | None:
    """Pearson r of x and y over runs after removing each replicate's means, and the effective
    number of points for its interval (runs less the replicate means removed, plus one).
    points: {replicate: [(x, y), ...]}."""
    xs, ys = [], []
    for pairs in points.values():
        if len(pairs) < 2:
            continue
        arr = np.asarray(pairs, dtype=float)
        xs.extend(arr[:, 0] - arr[:, 0].mean())
        ys.extend(arr[:, 1] - arr[:, 1].mean())
    groups = sum(1 for pairs in points.values() if len(pairs) >= 2)
    if len(xs) < 3 or np.std(xs) == 0 or np.std(ys) == 0:
        return None
    return float(np.corrcoef(xs, ys)[0, 1]), len(xs) - groups + 1
