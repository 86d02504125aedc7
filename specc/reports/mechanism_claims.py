"""Checks of what might explain the gap: coverage and shuffling of the online data (Fig. 4, 13),
the policy and the proxy judge as classifiers (Fig. 6, 7, 8), log-probabilities of winners
(Fig. 8) and exact tandem replay (App. F)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from specc.reports.claim_data import Finding, RunData, by_replicate, load_runs, setting_label, settings_of
from specc.reports.paired import Summary, across, difference, mean_of, plateau, within_replicate_correlation
from specc.reports.queries import WITH_EVALS, WITH_RUNS
from specc.reports.stats import Estimate, binomial_se, correlation_interval, mean_estimate, verdict_positive

TANDEM_TOLERANCE = 1e-3  # App. F: the paper's tandem losses agree within 0.1%


def replay_gaps(data, level_filter) -> dict:
    """{shuffle level: [Summary per replicate]}: the online run's plateau minus its replay's,
    item by item (a replay is evaluated on the same prompts as the run it replays)."""
    runs = load_runs(data, "win_rate", "win", methods=("online", "tandem", "tandem-shuffled"))
    online = {r.job: r for r in runs if r.method == "online"}
    per_level: dict = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r.replays in online and level_filter(r.shuffle):
            per_level[r.shuffle][r.replicate].append(difference(plateau(online[r.replays].run), plateau(r.run)))
    return {level: [mean_of(gaps) for _, gaps in sorted(reps.items())] for level, reps in sorted(per_level.items())}


def shuffled_below_online(data, claim) -> list[Finding]:
    gaps = replay_gaps(data, lambda level: level > 0)
    if not gaps:
        return []
    level = max(gaps)
    gap, how = across(gaps[level])
    exact = replay_gaps(data, lambda lv: lv == 0)
    also = f"; exact-order replay: online − tandem {across(exact[0.0])[0]:+.3f}" if exact else ""
    return [Finding("Fig. 4", claim.claim, verdict_positive(gap),
                    f"plateau win rate, online − offline on its stream shuffled (level {level:g}): {gap:+.3f} "
                    f"({how}){also}")]


def shuffle_levels(data, claim) -> list[Finding]:
    gaps = replay_gaps(data, lambda level: level > 0)
    if len(gaps) < 2:
        return []
    levels = sorted(gaps)
    (small, how), (large, _) = across(gaps[levels[0]]), across(gaps[levels[-1]])
    if verdict_positive(large) == "observed" and verdict_positive(small) != "observed":
        verdict = "observed"
    elif verdict_positive(large) == "contradicted" or verdict_positive(small) == "observed":
        verdict = "contradicted"
    else:
        verdict = "inconclusive"
    return [Finding("Fig. 13", claim.claim, verdict,
                    f"plateau win rate below the online run it replays: shuffle {levels[0]:g}: {small:+.3f}; "
                    f"shuffle {levels[-1]:g}: {large:+.3f} ({how})")]


def proxy_beats_policy(data, claim) -> list[Finding]:
    checkpoints = data.rows(f"""{WITH_EVALS}
        SELECT replicate, job_id, step, self_classifier_accuracy,
               proxy_accuracy_on_policy, least(kl_prompts, win_prompts)
        FROM spec_evals WHERE method = 'online' AND step > 0 ORDER BY job_id, step""")
    per_run: dict = defaultdict(list)  # (replicate, job) -> [(proxy - policy, its binomial se, proxy, policy)]
    for replicate, job, _, policy, proxy, pairs in checkpoints:
        if policy is not None and proxy is not None:
            se = np.hypot(binomial_se(proxy, pairs), binomial_se(policy, pairs))
            per_run[(replicate, job)].append((proxy - policy, se, proxy, policy))
    if not per_run:
        return []
    gap, unit = _over_runs({key: ([c[0] for c in cks], float(np.mean([c[1] for c in cks])))
                            for key, cks in per_run.items()})
    every = [c for cks in per_run.values() for c in cks]
    proxy, policy = np.mean([c[2] for c in every]), np.mean([c[3] for c in every])
    return [Finding("Fig. 6", claim.claim, verdict_positive(gap),
                    f"agreement with the golden judge on the online policy's samples, mean over trained checkpoints: "
                    f"proxy judge {proxy:.3f}, policy as classifier {policy:.3f}; proxy − policy {gap:+.3f} ({unit})")]


def _over_runs(per_run: dict) -> tuple[Estimate, str]:
    """{(replicate, job): (values over checkpoints, one checkpoint's se)} -> the mean of each
    run's mean: t over replicates with two or more, else one checkpoint's own interval (the
    checkpoints share their draws, so averaging them is not counted as more evidence)."""
    by_rep: dict = defaultdict(list)
    for (replicate, _), (values, _) in per_run.items():
        by_rep[replicate].append(float(np.mean(values)))
    if len(by_rep) >= 2:
        n = len(by_rep)
        return mean_estimate([np.mean(v) for v in by_rep.values()]), f"over {n} replicates, t({n - 1})"
    means = [np.mean(values) for values, _ in per_run.values()]
    se = float(np.mean([s for _, s in per_run.values()]))
    return Estimate(float(np.mean(means)), se), "one replicate: one checkpoint's binomial error, checkpoints not pooled"


def proxy_decays(data, claim) -> list[Finding]:
    per_run = data.rows(f"""{WITH_EVALS},
        s AS (SELECT replicate, job_id, step, proxy_accuracy_on_policy AS value,
                     least(kl_prompts, win_prompts) AS pairs,
                     max(step) OVER (PARTITION BY job_id) AS last
              FROM spec_evals WHERE method = 'online' AND proxy_accuracy_on_policy IS NOT NULL)
        SELECT replicate, job_id, avg(value) FILTER (WHERE step <= 0.2 * last),
               avg(value) FILTER (WHERE step >= 0.8 * last), any_value(pairs)
        FROM s GROUP BY replicate, job_id HAVING count(*) >= 3 ORDER BY job_id""")
    per_run = [r for r in per_run if r[2] is not None and r[3] is not None]
    if not per_run:
        return []
    drop, unit = _over_runs({(rep, job): ([early - late], float(np.hypot(binomial_se(early, n), binomial_se(late, n))))
                             for rep, job, early, late, n in per_run})
    early, late = np.mean([r[2] for r in per_run]), np.mean([r[3] for r in per_run])
    return [Finding("Fig. 6", claim.claim, verdict_positive(drop),
                    f"the proxy judge's own verdicts (its preferred side) against the golden judge's on pairs of the "
                    f"online policy's samples: first 20% of steps {early:.3f}, last 20% {late:.3f}; drop "
                    f"{drop:+.3f} ({unit})")]


def accuracy_not_predictive(data, claim) -> list[Finding]:
    runs = load_runs(data, "classifier_accuracy")
    wins = {r.job: r for r in load_runs(data, "win_rate")}
    points: dict = defaultdict(list)
    for r in runs:
        if r.job in wins:
            points[r.replicate].append((plateau(r.run).value, plateau(wins[r.job].run).value))
    decided = correlation_verdict(points)
    if decided is None:
        return []
    verdict, r, n, lo, hi = decided
    return [Finding("Fig. 7", claim.claim, verdict,
                    f"Pearson correlation, over online and offline runs, of plateau accuracy on D_golden with plateau "
                    f"win rate, within replicates: r = {r:+.2f} [{lo:+.2f}, {hi:+.2f}] ({n:g} effective runs); "
                    f"observed only where higher accuracy goes with a lower win rate")]


def correlation_verdict(points: dict) -> tuple | None:
    """(verdict, r, effective n, lo, hi) for "accuracy does not predict win rate", tested in the
    paper's direction: observed only when the correlation is significantly negative."""
    fitted = within_replicate_correlation(points)
    interval = correlation_interval(*fitted) if fitted else None
    if interval is None:
        return None
    (r, n), (lo, hi) = fitted, interval
    return ("observed" if hi < 0 else "contradicted" if lo > 0 else "inconclusive"), r, n, lo, hi


def _per_offline_config(runs: list[RunData], statistic) -> dict:
    """{(loss, size, offline config): [statistic(offline run, online runs) per replicate]}."""
    out: dict = defaultdict(list)
    for replicate, reps in by_replicate(runs).items():
        online = [r for r in reps if r.method == "online"]
        if not online:
            continue
        for r in reps:
            if r.method == "offline":
                out[(r.loss, r.size, r.config or r.stage)].append(statistic(r, online))
    return dict(sorted(out.items()))


def _config(config: str, gaps: dict) -> str:
    return f" (offline {config})" if len(gaps) > 1 else ""


def offline_classifies_better(data, claim) -> list[Finding]:
    gaps = _per_offline_config(load_runs(data, "classifier_accuracy", "classifier_correct"), lambda off, on: difference(
        plateau(off.run), mean_of([plateau(r.run) for r in on])))
    settings, out = settings_of((loss, size) for loss, size, _ in gaps), []
    for (loss, size, config), per_replicate in gaps.items():
        diff, how = across(per_replicate, "pairs of D_golden")
        out.append(Finding("Fig. 8", claim.claim + setting_label((loss, size), settings)[1] + _config(config, gaps),
                           verdict_positive(diff),
                           f"plateau accuracy on D_golden, offline ({config}) − online: {diff:+.3f} ({how})"))
    return out


def winners_fall_most_offline(data, claim) -> list[Finding]:
    change = lambda run: Summary(float(run.value[-1] - run.value[0]))  # noqa: E731
    gaps = _per_offline_config(load_runs(data, "logp_chosen"), lambda off, on: difference(
        mean_of([change(r.run) for r in on]), change(off.run)))
    settings, out = settings_of((loss, size) for loss, size, _ in gaps), []
    for (loss, size, config), per_replicate in gaps.items():
        diff, how = across(per_replicate)
        out.append(Finding("Fig. 8", claim.claim + setting_label((loss, size), settings)[1] + _config(config, gaps),
                           verdict_positive(diff),
                           f"change of the mean log π(y_w|x) on D_golden, first to last checkpoint, online − offline "
                           f"({config}): {diff:+.2f} ({how})"))
    return out


def tandem_reproduces_online(data, claim) -> list[Finding]:
    pairs = data.rows(f"""{WITH_RUNS},
        pairs AS (SELECT stage, job_id AS tandem_job, replays AS online_job FROM spec_runs
                  WHERE method = 'tandem' AND replays IS NOT NULL),
        loss AS (SELECT job_id, step, value FROM metrics WHERE name = 'train/loss'
                 AND job_id IN (SELECT tandem_job FROM pairs UNION SELECT online_job FROM pairs))
        SELECT p.stage, p.tandem_job, count(t.step), count(o.step), max(abs(t.value - o.value)), avg(abs(o.value))
        FROM pairs p JOIN loss t ON t.job_id = p.tandem_job
        LEFT JOIN loss o ON o.job_id = p.online_job AND o.step = t.step
        GROUP BY ALL HAVING count(o.step) > 0 ORDER BY p.stage, p.tandem_job""")
    if not pairs:
        return []
    worst_rel, parts, complete, exact = 0.0, [], True, True
    for stage, job, steps, matched, worst, scale in pairs:
        rel = worst / scale if scale else (0.0 if worst == 0 else float("inf"))
        worst_rel, complete, exact = max(worst_rel, rel), complete and matched == steps, exact and worst == 0
        parts.append((rel, f"{stage} {job[:8]}: {matched}/{steps} steps matched, "
                           + ("bit-identical" if worst == 0 else f"largest |Δ loss| {worst:.3g} ({rel:.3%} of the "
                                                                  f"mean loss)")))
    if len(parts) > 3:  # many replays: the worst one speaks for all
        steps = sum(p[3] for p in pairs)
        summary = (f"{len(pairs)} exact-order replays, {steps} steps compared: "
                   + ("every loss bit-identical" if exact else f"worst {max(parts)[1]}"))
    else:
        summary = "; ".join(text for _, text in parts)
    verdict = "observed" if complete and worst_rel <= TANDEM_TOLERANCE else "contradicted"
    return [Finding("App. F", claim.claim, verdict,
                    summary + f" (tolerance {TANDEM_TOLERANCE:.1%} of the mean loss, as in the paper)")]


def dataset_proximity(data, claim) -> list[Finding]:
    return []  # needs a per-dataset on-policy-ness measure the runtime does not record yet
