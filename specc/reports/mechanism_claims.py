"""Checks of what might explain the gap: coverage and shuffling of the online data (Fig. 4, 13),
the policy and the proxy judge as classifiers (Fig. 6, 7, 8), log-probabilities of winners
(Fig. 8) and exact tandem replay (App. F)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from specc.reports.claim_data import Finding, runs_label, setting_label, settings_of
from specc.reports.queries import WITH_EVALS, WITH_RUNS
from specc.reports.stats import (Estimate, binomial_se, correlation_interval, group_difference, mean_estimate,
                                 se_from_interval, verdict_positive)

TANDEM_TOLERANCE = 1e-3  # App. F: the paper's tandem losses agree within 0.1%


def replay_pairs(data, where: str) -> list[tuple]:
    """(replay job, its shuffle level, peak, lo, hi, online peak, lo, hi) per replay run."""
    return data.rows(f"""{WITH_EVALS},
        peak AS (SELECT job_id, max(win_rate) AS p, arg_max(win_rate_lo, win_rate) AS lo,
                        arg_max(win_rate_hi, win_rate) AS hi
                 FROM spec_evals WHERE win_rate IS NOT NULL GROUP BY job_id)
        SELECT r.job_id, r.shuffle_level, t.p, t.lo, t.hi, o.p, o.lo, o.hi
        FROM spec_runs r JOIN peak t ON t.job_id = r.job_id JOIN peak o ON o.job_id = r.replays
        WHERE r.replays IS NOT NULL AND {where} ORDER BY r.shuffle_level, r.job_id""")


def paired_replay_gap(pairs) -> Estimate:
    """online peak - replay peak, over replay runs (each paired with the online run it replays)."""
    gaps, floors = [], []
    for _, _, tp, tlo, thi, op, olo, ohi in pairs:
        gaps.append(op - tp)
        ses = (se_from_interval(tlo, thi), se_from_interval(olo, ohi))
        floors.append(None if None in ses else float(np.hypot(*ses)))
    return mean_estimate(gaps, floors)


def shuffled_below_online(data, claim) -> list[Finding]:
    pairs = replay_pairs(data, "r.shuffle_level > 0")
    if not pairs:
        return []
    level = max(p[1] for p in pairs)
    pairs = [p for p in pairs if p[1] == level]
    gap = paired_replay_gap(pairs)
    exact = replay_pairs(data, "r.shuffle_level = 0")
    also = f"; exact-order replay: online − tandem {paired_replay_gap(exact):+.3f}" if exact else ""
    return [Finding("Fig. 4", claim.claim, verdict_positive(gap),
                    f"peak win rate, online − offline on its stream shuffled (level {level:g}), over {len(pairs)} "
                    f"replay run(s): {gap:+.3f}{also}")]


def shuffle_levels(data, claim) -> list[Finding]:
    pairs = replay_pairs(data, "TRUE")
    levels = sorted({p[1] for p in pairs if p[1] > 0})
    if len(levels) < 2:
        return []
    small, large = (paired_replay_gap([p for p in pairs if p[1] == lv]) for lv in (levels[0], levels[-1]))
    if large.has_interval and large.lo > 0 and small.has_interval and not small.lo > 0:
        verdict = "observed"
    elif large.value <= 0 or (small.has_interval and small.lo > 0):
        verdict = "not observed"
    else:
        verdict = "inconclusive"
    return [Finding("Fig. 13", claim.claim, verdict,
                    f"peak win rate below the online run it replays: shuffle {levels[0]:g}: {small:+.3f}; "
                    f"shuffle {levels[-1]:g}: {large:+.3f}")]


def proxy_beats_policy(data, claim) -> list[Finding]:
    checkpoints = data.rows(f"""{WITH_EVALS},
        ck AS (SELECT job_id, step, lag(step, 1, -1) OVER (PARTITION BY job_id ORDER BY step) AS prev,
                      coalesce(online_classifier_accuracy, self_classifier_accuracy) AS policy,
                      proxy_accuracy_on_policy AS proxy, least(kl_prompts, win_prompts) AS pairs
               FROM spec_evals WHERE method = 'online'),
        stream AS (SELECT m.job_id, m.step, m.value FROM metrics m
                   WHERE m.name = 'online/judge_accuracy_golden' AND m.job_id IN (SELECT job_id FROM ck))
        SELECT ck.job_id, ck.step, any_value(ck.policy), coalesce(any_value(ck.proxy), avg(s.value)),
               any_value(ck.pairs)
        FROM ck LEFT JOIN stream s ON s.job_id = ck.job_id AND s.step > ck.prev AND s.step <= ck.step
        WHERE ck.step > 0 GROUP BY ck.job_id, ck.step ORDER BY ck.job_id, ck.step""")
    per_run = defaultdict(list)  # job -> [(proxy - policy, its binomial se, proxy, policy)]
    for job, _, policy, proxy, pairs in checkpoints:
        if policy is not None and proxy is not None:
            se = np.hypot(binomial_se(proxy, pairs), binomial_se(policy, pairs))
            per_run[job].append((proxy - policy, se, proxy, policy))
    if not per_run:
        return []
    if len(per_run) >= 2:
        means = [(np.mean([c[0] for c in cks]), np.sqrt(np.mean([c[1] ** 2 for c in cks]) / len(cks)))
                 for cks in per_run.values()]
        gap = mean_estimate([m for m, _ in means], [se for _, se in means])
        unit = f"over {len(per_run)} online runs"
    else:
        (cks,) = per_run.values()
        gap = mean_estimate([c[0] for c in cks], [c[1] for c in cks])
        unit = f"over the {len(cks)} checkpoint(s) of one online run"
    every = [c for cks in per_run.values() for c in cks]
    proxy, policy = np.mean([c[2] for c in every]), np.mean([c[3] for c in every])
    return [Finding("Fig. 6", claim.claim, verdict_positive(gap),
                    f"agreement with the golden judge on the online policy's samples: proxy judge {proxy:.3f}, "
                    f"policy as classifier {policy:.3f}; proxy − policy {gap:+.3f} ({unit})")]


def proxy_decays(data, claim) -> list[Finding]:
    per_run = data.rows(f"""{WITH_RUNS},
        s AS (SELECT m.job_id, m.step, m.value, max(m.step) OVER (PARTITION BY m.job_id) AS last
              FROM metrics m JOIN spec_runs r USING (job_id)
              WHERE r.method = 'online' AND m.name = 'online/judge_accuracy_golden')
        SELECT job_id, avg(value) FILTER (WHERE step <= 0.2 * last), avg(value) FILTER (WHERE step > 0.8 * last),
               var_samp(value) FILTER (WHERE step <= 0.2 * last), var_samp(value) FILTER (WHERE step > 0.8 * last),
               count(*) FILTER (WHERE step <= 0.2 * last), count(*) FILTER (WHERE step > 0.8 * last)
        FROM s GROUP BY job_id HAVING count(*) >= 10 ORDER BY job_id""")
    if not per_run:
        return []
    early, late = np.mean([r[1] for r in per_run]), np.mean([r[2] for r in per_run])
    if len(per_run) >= 2:
        drop, unit = mean_estimate([r[1] - r[2] for r in per_run]), f"over {len(per_run)} online runs"
    else:
        _, first, last, var_first, var_last, n_first, n_last = per_run[0]
        se = (float(np.sqrt((var_first or 0) / n_first + (var_last or 0) / n_last))
              if n_first > 1 and n_last > 1 else None)
        drop, unit = mean_estimate([first - last], [se]), "one run: from the per-step spread"
    return [Finding("Fig. 6", claim.claim, verdict_positive(drop),
                    f"proxy judge's agreement with the golden judge on the online stream: first 20% of steps "
                    f"{early:.3f}, last 20% {late:.3f}; drop {drop:+.3f} ({unit})")]


def accuracy_not_predictive(data, claim) -> list[Finding]:
    (r, n), = data.rows(f"""{WITH_EVALS}
        SELECT corr(classifier_accuracy, win_rate), count(*) FROM spec_evals
        WHERE classifier_accuracy IS NOT NULL AND win_rate IS NOT NULL AND step > 0""")
    interval = correlation_interval(r, n) if r is not None else None
    if interval is None:
        return []
    lo, hi = interval
    verdict = "observed" if lo <= 0 <= hi else ("not observed" if abs(r) >= 0.5 else "inconclusive")
    return [Finding("Fig. 7", claim.claim, verdict,
                    f"Pearson correlation of accuracy on D_golden with win rate over {n} checkpoints: "
                    f"r = {r:+.2f} [{lo:+.2f}, {hi:+.2f}]")]


def final_by_method(data, expression: str, column: str) -> dict:
    """{(loss, size): {method: [(value, classifier_pairs)]}} of `expression` per online/offline run."""
    out = defaultdict(lambda: defaultdict(list))
    for loss, size, method, value, pairs in data.rows(f"""{WITH_EVALS}
            SELECT loss, policy_size, method, {expression}, any_value(classifier_pairs) FROM spec_evals
            WHERE method IN ('online', 'offline') AND {column} IS NOT NULL
            GROUP BY loss, policy_size, method, job_id"""):
        if value is not None:
            out[(loss, size)][method].append((value, pairs))
    return {k: v for k, v in out.items() if "online" in v and "offline" in v}


def offline_classifies_better(data, claim) -> list[Finding]:
    by_setting = final_by_method(data, "arg_max(classifier_accuracy, step)", "classifier_accuracy")
    settings, out = settings_of(by_setting), []
    for setting in settings:
        final = by_setting[setting]
        (off, off_se), (on, on_se) = ([[v for v, _ in final[m]], [binomial_se(v, n) for v, n in final[m]]]
                                      for m in ("offline", "online"))
        diff = group_difference(off, on, off_se, on_se)
        off, on = mean_estimate(off, off_se), mean_estimate(on, on_se)
        out.append(Finding("Fig. 8", claim.claim + setting_label(setting, settings)[1], verdict_positive(diff),
                           f"final accuracy on D_golden: offline {off} ({runs_label(len(final['offline']))}), "
                           f"online {on} "
                           f"({runs_label(len(final['online']))}); offline − online {diff:+.3f}"))
    return out


def winners_fall_most_offline(data, claim) -> list[Finding]:
    by_setting = final_by_method(data, "arg_max(logp_chosen, step) - arg_min(logp_chosen, step)", "logp_chosen")
    settings, out = settings_of(by_setting), []
    for setting in settings:
        change = by_setting[setting]
        off, on = ([v for v, _ in change[m]] for m in ("offline", "online"))
        diff = group_difference(on, off)
        off, on = mean_estimate(off), mean_estimate(on)
        note = "" if diff.has_interval else " (no interval: one run per method; decided on the estimates)"
        verdict = verdict_positive(diff) if diff.has_interval else (
            "observed" if diff.value > 0 and off.value < 0 else "not observed")
        out.append(Finding("Fig. 8", claim.claim + setting_label(setting, settings)[1], verdict,
                           f"change of the mean log π(y_w|x) on D_golden, first to last checkpoint: offline "
                           f"{off:+.2f} ({runs_label(len(change['offline']))}), online {on:+.2f} "
                           f"({runs_label(len(change['online']))}); online − offline {diff:+.2f}{note}"))
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
    verdict = "observed" if complete and worst_rel <= TANDEM_TOLERANCE else "not observed"
    return [Finding("App. F", claim.claim, verdict,
                    summary + f" (tolerance {TANDEM_TOLERANCE:.1%} of the mean loss, as in the paper)")]


def dataset_proximity(data, claim) -> list[Finding]:
    return []  # needs a per-dataset on-policy-ness measure the runtime does not record yet
