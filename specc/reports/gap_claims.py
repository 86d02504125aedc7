"""Checks of the gap itself: online against offline (plateau, matched KL, per loss and size, on
better data, across sizes) and over-optimisation (paper Fig. 1, 5, 9, 10, 11, 14).

Statistics come from paired.py: one summary per replicate, paired over replicates, or over the
held-out prompts of a single replicate; never a maximum over checkpoints."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from specc.reports.claim_data import (Finding, RunData, by_replicate, load_runs, runs_label, setting_label,
                                      settings_of)
from specc.reports.figures import size_key
from specc.reports.paired import (PLATEAU_FROM, across, best_plateau, difference, matched_kl_gap, mean_of,
                                  plateau, rise_and_fall)
from specc.reports.stats import verdict_positive


def _settings(runs: list[RunData]) -> dict:
    """{(loss, size): {replicate: {method: [RunData]}}} for settings with both online and offline runs."""
    grouped: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in runs:
        grouped[(r.loss, r.size)][r.replicate][r.method].append(r)
    return {setting: {rep: methods for rep, methods in sorted(reps.items()) if {"online", "offline"} <= set(methods)}
            for setting, reps in grouped.items()}


def online_beats_offline_plateau(data, claim) -> list[Finding]:
    grouped = _settings(load_runs(data, "win_rate", "win"))
    settings, out = settings_of(k for k, reps in grouped.items() if reps), []
    for setting in settings:
        per_replicate, on_levels, off_levels, best_runs = [], [], [], []
        for methods in grouped[setting].values():
            on = mean_of([plateau(r.run) for r in methods["online"]])
            best, off = best_plateau([r.run for r in methods["offline"]])
            per_replicate.append(difference(on, off))
            on_levels.append(on.value)
            off_levels.append(off.value)
            best_runs.append(best.name)
        diff, how = across(per_replicate)
        figure, suffix = setting_label(setting, settings)
        out.append(Finding(figure, claim.claim + suffix, verdict_positive(diff),
                           f"mean win rate over each run's plateau (steps from {PLATEAU_FROM:.0%} of its last on): "
                           f"online {np.mean(on_levels):.3f}, best offline run of each replicate "
                           f"{np.mean(off_levels):.3f} ({_most_common(best_runs)}); online − offline {diff:+.3f} "
                           f"({how})"))
    return out


def online_ahead_at_matched_kl(data, claim) -> list[Finding]:
    grouped = _settings(load_runs(data, "win_rate", "win"))
    rewards = _settings(load_runs(data, "oracle_reward", "oracle_reward"))
    settings, out = settings_of(k for k, reps in grouped.items() if reps), []
    for setting in settings:
        figure, suffix = setting_label(setting, settings)
        verdict, evidence = matched_kl_verdict(grouped[setting])
        if rewards.get(setting):
            _, reward_evidence = matched_kl_verdict(rewards[setting], "oracle reward", ".2f")
            evidence += f". The same in oracle reward: {reward_evidence}"
        out.append(Finding(figure, claim.claim + suffix, verdict, evidence))
    return out


def matched_kl_verdict(replicates: dict, metric: str = "win rate", fmt: str = ".3f") -> tuple[str, str]:
    """Online minus the offline envelope at matched KL: one mean gap over the shared KL range per
    replicate, paired over replicates (or over the items of a single replicate).
    replicates: {replicate: {method: [RunData]}}."""
    gaps = {rep: matched_kl_gap([r.run for r in methods["online"]], [r.run for r in methods["offline"]])
            for rep, methods in replicates.items()}
    usable = {rep: gap for rep, gap in gaps.items() if gap is not None}
    if not usable:
        return "inconclusive", "the KL ranges of online and offline runs do not overlap: no matched-KL comparison"
    estimate, how = across([gap.summary for gap in usable.values()])
    ranges = ", ".join(f"{g.lo:.2g}–{g.hi:.2g}" for g in usable.values())
    ahead = ", ".join(f"{g.ahead:.0%}" for g in usable.values())
    left = len(gaps) - len(usable)
    return verdict_positive(estimate), (
        f"{metric}, online − the best offline run at each KL, averaged over the KL both reach with trained "
        f"checkpoints ({ranges}; online ahead on {ahead} of it): {estimate:+{fmt}} ({how})"
        + (f"; {left} replicate(s) without overlapping KL left out" if left else ""))


def over_optimisation(data, claim) -> list[Finding]:
    runs = load_runs(data, "win_rate", "win", methods=("online", "offline", "tandem", "tandem-shuffled"))
    out = []
    for method in ("online", "offline", "tandem", "tandem-shuffled"):
        mine = [r for r in runs if r.method == method and len(r.run.steps) >= 3]
        if not mine:
            continue
        still = sum(int(np.argmax(r.run.value)) == len(r.run.value) - 1 for r in mine)
        decided = over_optimisation_verdict([[r.run for r in reps] for reps in by_replicate(mine).values()])
        if decided is None:
            out.append(Finding("Fig. 1", f"{claim.claim} ({method})", "inconclusive",
                               f"{runs_label(len(mine))}: needs per-prompt outcomes (outcome/win/*) to choose each "
                               f"run's peak on half the prompts and measure it on the other half"))
            continue
        verdict, rise, fall, how = decided
        out.append(Finding("Fig. 1", f"{claim.claim} ({method})", verdict,
                           f"win rate at each run's peak (chosen on half the held-out prompts, measured on the "
                           f"other half) minus its first checkpoint {rise:+.3f}, minus its last checkpoint "
                           f"{fall:+.3f} ({how}); {still}/{len(mine)} runs end at their best checkpoint"))
    return out


def over_optimisation_verdict(replicates: list[list]) -> tuple | None:
    """(verdict, rise, fall, how) over replicates, each a list of one method's Runs; None when
    no replicate has per-item outcomes for every run. Observed: a significant rise from the
    first checkpoint to the (cross-fitted) peak and a significant fall from it to the last."""
    rises, falls = [], []
    for runs in replicates:
        fitted = [rise_and_fall(run) for run in runs]
        if fitted and all(f is not None for f in fitted):
            rises.append(mean_of([f[0] for f in fitted]))
            falls.append(mean_of([f[1] for f in fitted]))
    if not falls:
        return None
    (rise, how), (fall, _) = across(rises), across(falls)
    if verdict_positive(rise) == "observed" and verdict_positive(fall) == "observed":
        verdict = "observed"
    elif verdict_positive(rise) == "observed" and fall.hi <= 0:
        verdict = "contradicted"  # a significant rise and no fall: still at (or rising to) its peak
    else:
        verdict = "inconclusive"
    return verdict, rise, fall, how


def _most_common(names: list[str]) -> str:
    counts = Counter(names)
    name, n = counts.most_common(1)[0]
    return name if len(names) == 1 else f"most often {name}, {n}/{len(names)}"


def plateau_gaps(replicates: dict) -> list:
    """Per replicate: online's plateau minus the best offline run's. {replicate: {method: [RunData]}}."""
    return [difference(mean_of([plateau(r.run) for r in methods["online"]]),
                       best_plateau([r.run for r in methods["offline"]])[1]) for methods in replicates.values()]


def better_data(data, claim) -> list[Finding]:
    runs = [r for r in load_runs(data, "win_rate", "win")
            if r.method == "online" or (r.method == "offline" and not r.on_eval_pairs)]
    settings, out = settings_of((r.loss, r.size) for r in runs if r.method == "offline"), []
    for setting in settings:
        mine = [r for r in runs if (r.loss, r.size) == setting]
        parts, verdicts = [], []
        for dataset in sorted({str(r.data_stage) for r in mine if r.method == "offline"}):
            chosen = [r for r in mine if r.method == "online" or str(r.data_stage) == dataset]
            replicates = _settings(chosen).get(setting, {})
            if not replicates:
                continue
            diff, how = across(plateau_gaps(replicates))
            verdicts.append(verdict_positive(diff))
            parts.append(f"offline on {dataset}: online − best offline plateau win rate {diff:+.3f} ({how})")
        if not verdicts:
            continue
        verdict = ("observed" if all(v == "observed" for v in verdicts) else
                   "contradicted" if "contradicted" in verdicts else "inconclusive")
        out.append(Finding("Fig. 5", claim.claim + setting_label(setting, settings)[1], verdict, "; ".join(parts)))
    return out


def scaling_narrows(data, claim) -> list[Finding]:
    grouped = _settings(load_runs(data, "win_rate", "win"))
    out = []
    for loss in sorted({loss for loss, _ in grouped}, key=str):
        sizes = sorted((size for (lo, size), reps in grouped.items() if lo == loss and reps and size != "None"),
                       key=size_key)
        if len(sizes) < 2:
            continue
        gaps = {size: dict(zip(grouped[(loss, size)], plateau_gaps(grouped[(loss, size)]))) for size in sizes}
        first, last = sizes[0], sizes[-1]
        last_gap, how = across(list(gaps[last].values()))
        shared = sorted(set(gaps[first]) & set(gaps[last]))
        narrowing, narrowing_how = (across([difference(gaps[first][r], gaps[last][r]) for r in shared])
                                    if shared else (None, "no shared replicates"))
        verdicts = [verdict_positive(last_gap)] + ([verdict_positive(narrowing)] if narrowing else [])
        verdict = ("observed" if verdicts == ["observed", "observed"] else
                   "contradicted" if "contradicted" in verdicts else "inconclusive")
        detail = ", ".join(f"{size}: {across(list(gaps[size].values()))[0]:+.3f}" for size in sizes)
        suffix = f" ({loss})" if len({other for other, _ in grouped}) > 1 else ""
        out.append(Finding("Fig. 10, 11, 14", claim.claim + suffix, verdict,
                           f"online − best offline plateau win rate per size: {detail} (at {last}: {how}); "
                           f"narrowing from {first} to {last}: "
                           + (f"{narrowing:+.3f} ({narrowing_how})" if narrowing else narrowing_how)))
    return out
