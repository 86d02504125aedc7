"""Checks of the gap itself: online against offline (peak, matched KL, per loss and size, on
better data, across sizes) and over-optimisation (paper Fig. 1, 5, 9, 10, 11, 14)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from specc.reports.claim_data import Finding, compare, peaks_by_seed, setting_label, settings_of
from specc.reports.figures import size_key
from specc.reports.queries import WITH_EVALS
from specc.reports.stats import se_from_interval, t975, verdict_positive


def online_beats_offline_peak(data, claim) -> list[Finding]:
    peaks = peaks_by_seed(data, "loss, policy_size, method", "method IN ('online', 'offline')")
    settings = settings_of((loss, size) for loss, size, _ in peaks)
    out = []
    for loss, size in settings:
        online, offline = peaks.get((loss, size, "online")), peaks.get((loss, size, "offline"))
        if online is None or offline is None:
            continue
        on, off, diff, how = compare(online, offline)
        best = max(offline.values(), key=lambda p: p.value)
        figure, suffix = setting_label((loss, size), settings)
        out.append(Finding(figure, claim.claim + suffix, verdict_positive(diff),
                           f"peak win rate online {on} vs best offline {off}; difference {diff:+.3f} ({how}); "
                           f"best offline run: {best.run} at KL {_number(best.kl)}"))
    return out


def online_ahead_at_matched_kl(data, claim) -> list[Finding]:
    runs: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for loss, size, method, replicate, job, kl, win, lo, hi in data.rows(f"""{WITH_EVALS}
            SELECT loss, policy_size, method, replicate, job_id, kl, win_rate, win_rate_lo, win_rate_hi FROM spec_evals
            WHERE method IN ('online', 'offline') AND win_rate IS NOT NULL AND kl IS NOT NULL
            ORDER BY job_id, step"""):
        runs[(loss, size, method)][replicate][job].append((kl, win, se_from_interval(lo, hi) or 0.0))
    settings = settings_of((loss, size) for loss, size, _ in runs)
    out = []
    for loss, size in settings:
        if (loss, size, "online") not in runs or (loss, size, "offline") not in runs:
            continue
        figure, suffix = setting_label((loss, size), settings)
        out.append(Finding(figure, claim.claim + suffix,
                           *matched_kl_by_replicate(runs[(loss, size, "online")], runs[(loss, size, "offline")])))
    return out


def _curves(runs: dict) -> list:
    out = []
    for pts in runs.values():
        pts = np.array(sorted(pts))
        out.append((pts[:, 0], pts[:, 1], pts[:, 2]))
    return out


def _at(curves, k: float) -> list[tuple[float, float]]:
    """(win rate, its se) of every curve that covers KL `k`, interpolated."""
    return [(float(np.interp(k, x, y)), float(np.interp(k, x, s))) for x, y, s in curves if x[0] <= k <= x[-1]]


def _verdict(ahead: int, sig_ahead: int, sig_behind: int, n: int) -> str:
    # a few points of "behind" near KL 0, where every run is still the SFT policy and offline is
    # the best of many noisy evaluations, do not overturn a gap seen over the rest of the range
    if ahead >= 0.8 * n and sig_ahead > sig_behind and sig_behind <= 0.1 * n:
        return "observed"
    if ahead < 0.5 * n or sig_behind > sig_ahead:
        return "not observed"
    return "inconclusive"


def matched_kl(online: dict, offline: dict, points: int = 25) -> tuple[str, str]:
    """Win rates interpolated on a common KL grid over the range where both methods have runs:
    online averaged over its runs, offline the best run at each KL (runs of one replicate)."""
    on, off = _curves(online), _curves(offline)
    lo = max(min(c[0][0] for c in on), min(c[0][0] for c in off))
    hi = min(max(c[0][-1] for c in on), max(c[0][-1] for c in off))
    if not hi > lo:
        return "inconclusive", (f"the KL ranges do not overlap (online up to {max(c[0][-1] for c in on):.3g}, "
                                f"offline up to {max(c[0][-1] for c in off):.3g}): no matched-KL comparison")
    ahead = sig_ahead = sig_behind = 0
    diffs = []
    for k in np.linspace(lo, hi, points):
        on_vals, off_vals = _at(on, k), _at(off, k)
        if not on_vals or not off_vals:
            continue
        on_mean = float(np.mean([v for v, _ in on_vals]))
        on_se = (float(np.std([v for v, _ in on_vals], ddof=1) / np.sqrt(len(on_vals))) if len(on_vals) > 1
                 else on_vals[0][1])
        off_best, off_se = max(off_vals)
        diff, se = on_mean - off_best, float(np.hypot(on_se, off_se))
        diffs.append(diff)
        ahead += diff > 0
        sig_ahead += diff > 1.96 * se and se > 0
        sig_behind += diff < -1.96 * se and se > 0
    n = len(diffs)
    if n == 0:
        return "inconclusive", "no KL at which both methods have a run"
    return _verdict(ahead, sig_ahead, sig_behind, n), (
        f"over KL {lo:.3g}–{hi:.3g} ({n} grid points where both have runs): online ahead at "
        f"{ahead}/{n}, significantly (95%) at {sig_ahead}/{n}, significantly behind at {sig_behind}/{n}; "
        f"mean difference {np.mean(diffs):+.3f} (from {min(diffs):+.3f} to {max(diffs):+.3f}); online "
        f"= mean of {len(on)} run(s), offline = best of {len(off)} run(s) at each KL")


def matched_kl_by_replicate(online: dict, offline: dict, points: int = 25) -> tuple[str, str]:
    """`matched_kl` within each replicate (the same seeds and data), paired across replicates:
    at each KL, online's mean minus offline's best run of the same replicate, averaged over the
    replicates covering that KL, with a t-interval over them. Offline's best is never taken
    across replicates (a best-of-seeds envelope would flatter offline). {replicate: {job: points}}."""
    common = sorted(set(online) & set(offline), key=str)
    if len(common) < 2:
        flat = [{job: pts for rep in by_rep.values() for job, pts in rep.items()} for by_rep in (online, offline)]
        return matched_kl(*flat, points=points)
    pairs = {r: (_curves(online[r]), _curves(offline[r])) for r in common}
    lo = min(max(min(c[0][0] for c in on), min(c[0][0] for c in off)) for on, off in pairs.values())
    hi = max(min(max(c[0][-1] for c in on), max(c[0][-1] for c in off)) for on, off in pairs.values())
    ahead = sig_ahead = sig_behind = 0
    diffs = []
    for k in np.linspace(lo, hi, points):
        per_replicate = []
        for on, off in pairs.values():
            on_vals, off_vals = _at(on, k), _at(off, k)
            if on_vals and off_vals:
                per_replicate.append(float(np.mean([v for v, _ in on_vals])) - max(off_vals)[0])
        if len(per_replicate) < 2:
            continue
        mean = float(np.mean(per_replicate))
        half = t975(len(per_replicate) - 1) * float(np.std(per_replicate, ddof=1)) / np.sqrt(len(per_replicate))
        diffs.append(mean)
        ahead += mean > 0
        sig_ahead += mean - half > 0
        sig_behind += mean + half < 0
    n = len(diffs)
    if n == 0:
        return "inconclusive", f"no KL at which two or more of the {len(common)} replicates have both methods"
    return _verdict(ahead, sig_ahead, sig_behind, n), (
        f"paired over {len(common)} replicates (seeds), each online run against the best offline run of its "
        f"own replicate, over KL {lo:.3g}–{hi:.3g} ({n} grid points covered by two or more replicates): online "
        f"ahead at {ahead}/{n}, significantly (95%, t over replicates) at {sig_ahead}/{n}, significantly behind "
        f"at {sig_behind}/{n}; mean difference {np.mean(diffs):+.3f} (from {min(diffs):+.3f} to {max(diffs):+.3f})")


def over_optimisation(data, claim) -> list[Finding]:
    out = []
    for method, n, rise_fall, still_rising, drop, peak_kl in data.rows(f"""{WITH_EVALS},
            per_run AS (
                SELECT method, job_id, max(win_rate) AS peak, arg_max(win_rate_lo, win_rate) AS peak_lo,
                       arg_max(step, win_rate) AS peak_step, arg_max(kl, win_rate) AS peak_kl,
                       arg_min(win_rate_hi, step) AS first_hi, arg_max(win_rate, step) AS last,
                       arg_max(win_rate_hi, step) AS last_hi, max(step) AS last_step
                FROM spec_evals
                WHERE win_rate IS NOT NULL AND method IN ('online', 'offline', 'tandem', 'tandem-shuffled')
                GROUP BY method, job_id HAVING count(*) >= 3)
            SELECT method, count(*), count(*) FILTER (WHERE peak_lo > first_hi AND last_hi < peak_lo),
                   count(*) FILTER (WHERE peak_step = last_step), avg(peak - last), avg(peak_kl)
            FROM per_run GROUP BY method
            ORDER BY array_position(['online', 'offline', 'tandem', 'tandem-shuffled'], method)"""):
        if rise_fall >= n / 2:
            verdict = "observed"
        elif rise_fall == 0 and still_rising == n:
            verdict = "not observed"
        else:
            verdict = "inconclusive"
        out.append(Finding("Fig. 1", f"{claim.claim} ({method})", verdict,
                           f"{rise_fall}/{n} runs rise significantly above their first evaluation and then fall "
                           f"significantly below their peak; {still_rising}/{n} are still at their peak at the last "
                           f"checkpoint; mean drop from peak to last {drop:.3f}, mean KL at the peak "
                           f"{_number(peak_kl)}"))
    return out


def better_data(data, claim) -> list[Finding]:
    peaks = peaks_by_seed(data, "loss, policy_size, CASE method WHEN 'online' THEN '' ELSE data_stage END",
                   "(method = 'online' OR (method = 'offline' AND NOT coalesce(on_eval_pairs, FALSE)))")
    settings = settings_of((loss, size) for loss, size, _ in peaks)
    out = []
    for loss, size in settings:
        online = peaks.get((loss, size, ""))
        datasets = sorted(d for lo, si, d in peaks if (lo, si) == (loss, size) and d != "")
        if online is None or not datasets:
            continue
        parts, verdicts = [], []
        for dataset in datasets:
            _, off, diff, how = compare(online, peaks[(loss, size, dataset)])
            verdicts.append(verdict_positive(diff))
            parts.append(f"offline on {dataset}: best peak {off}, online − offline {diff:+.3f} ({how})")
        verdict = ("observed" if all(v == "observed" for v in verdicts) else
                   "not observed" if "not observed" in verdicts else "inconclusive")
        out.append(Finding("Fig. 5", claim.claim + setting_label((loss, size), settings)[1], verdict,
                           "; ".join(parts)))
    return out


def scaling_narrows(data, claim) -> list[Finding]:
    table = defaultdict(dict)
    for loss, size, method, q90, half in data.rows(f"""{WITH_EVALS}
            SELECT loss, policy_size, method, quantile_cont(win_rate, 0.9), avg(win_rate_hi - win_rate_lo) / 2
            FROM spec_evals WHERE win_rate IS NOT NULL AND method IN ('online', 'offline') AND policy_size IS NOT NULL
            GROUP BY ALL"""):
        table[(loss, size)][method] = (q90, half or 0.0)
    out = []
    for loss in sorted({loss for loss, _ in table}, key=str):
        sizes = sorted((s for (lo, s), v in table.items() if lo == loss and len(v) == 2), key=size_key)
        if len(sizes) < 2:
            continue
        gaps = {s: table[(loss, s)]["online"][0] - table[(loss, s)]["offline"][0] for s in sizes}
        half = table[(loss, sizes[-1])]["online"][1]
        first, last = gaps[sizes[0]], gaps[sizes[-1]]
        if last < first and last > half:
            verdict = "observed"
        elif last >= first or last <= 0:
            verdict = "not observed"
        else:
            verdict = "inconclusive"
        ratio = {s: table[(loss, s)]["offline"][0] / (table[(loss, s)]["online"][0] or float("nan")) for s in sizes}
        detail = ", ".join(f"{s}: {gaps[s]:+.3f} (offline ÷ online {ratio[s]:.3f})" for s in sizes)
        suffix = f" ({loss})" if len({other for other, _ in table}) > 1 else ""
        out.append(Finding("Fig. 10, 11, 14", claim.claim + suffix, verdict,
                           f"online − offline 90% quantile of win rate per size: {detail}; typical half-width of "
                           f"a win-rate interval at {sizes[-1]}: {half:.3f}"))
    return out


def _number(value) -> str:
    return "?" if value is None else f"{value:.3g}"
