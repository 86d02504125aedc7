"""Verdicts on the paper's claims, on stores whose numbers are chosen by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from specc.reports.findings import findings
from specc.reports.paired import Run, matched_kl_gap
from specc.reports.queries import SpecData
from specc.reports.stats import Estimate, group_difference, mean_estimate, t975, verdict_positive
from specc.store.db import connect


def verdicts(workspace, spec="hand"):
    with connect(workspace, read_only=True) as con:
        measured, not_measured = findings(SpecData(con, spec).share())
    return measured, [c.figure for c in not_measured]


def by_claim(measured, text):
    found = [f for f in measured if text in f.claim]
    assert found, f"no finding about {text!r} in {[f.claim for f in measured]}"
    return found


def rise_and_fall(peak: float, steps=(0, 10, 20, 30, 40), kl_scale=1.0):
    """Win rate 0.5 -> peak (at step 20) -> back towards 0.5; KL grows with steps."""
    shape = {0: 0.0, 10: 0.6, 20: 1.0, 30: 0.6, 40: 0.2}
    return [{"step": s, "kl": s * kl_scale, "win_rate": 0.5 + (peak - 0.5) * shape[s]} for s in steps]


# --- statistics, by hand ------------------------------------------------------------------------

def test_mean_estimate_t_interval_by_hand():
    est = mean_estimate([0.6, 0.7, 0.8])  # sd 0.1, se 0.1/sqrt(3), t(2) = 4.303
    assert est.value == pytest.approx(0.7)
    assert est.hi - est.value == pytest.approx(4.303 * 0.1 / math.sqrt(3))


def test_agreeing_units_are_widened_by_their_measurement_error():
    est = mean_estimate([0.6, 0.6], [0.01, 0.01])  # no spread: the known error, still t(1)
    assert est.se == pytest.approx(0.01 / math.sqrt(2)) and est.df == 1


def test_single_unit_carries_its_measurement_interval_or_none():
    assert mean_estimate([0.6], [0.01]).hi == pytest.approx(0.6 + 1.96 * 0.01, abs=1e-4)
    assert not mean_estimate([0.6]).has_interval


def test_group_difference_welch_and_single_units():
    diff = group_difference([0.8, 0.9, 1.0], [0.5, 0.6, 0.7])  # equal sd 0.1: df = 4
    assert diff.value == pytest.approx(0.3)
    assert diff.se == pytest.approx(math.sqrt(2 * 0.01 / 3)) and diff.df == pytest.approx(4)
    one = group_difference([0.9], [0.5, 0.6, 0.7])  # the group's sd (0.1) stands for the single run too
    assert one.se == pytest.approx(0.1 * math.sqrt(1 / 3 + 1)) and one.df == 2
    assert not group_difference([0.9], [0.5]).has_interval


def test_t_quantiles_and_verdicts():
    assert t975(1) == 12.706 and t975(math.inf) == pytest.approx(1.96, abs=1e-3)
    assert t975(1000) == pytest.approx(1.962, abs=1e-3)
    assert verdict_positive(Estimate(0.1, 0.01)) == "observed"
    assert verdict_positive(Estimate(0.01, 0.01)) == "inconclusive"
    assert verdict_positive(Estimate(-0.01, 0.01)) == "inconclusive"
    assert verdict_positive(Estimate(-0.1, 0.01)) == "contradicted"
    assert verdict_positive(Estimate(0.1, None)) == "inconclusive"


def test_matched_kl_gap_by_hand():
    line = lambda name, ks, f: Run.of(name, range(len(ks)), ks, [f(k) for k in ks])  # noqa: E731
    online = [line("on", [0.0, 1.0, 3.0], lambda k: 0.5 + 0.1 * k)]
    offline = [line("a", [0.0, 2.0, 4.0], lambda k: 0.5 + 0.05 * k), line("b", [0.0, 1.0, 1.5], lambda k: 0.6)]
    gap = matched_kl_gap(online, offline, points=3)
    # step 0 left out: online covers KL 1-3, offline 1-4; grid 1, 2, 3; envelope max(a, b) where covered
    assert (gap.lo, gap.hi) == (1.0, 3.0)
    expected = [0.6 - 0.6, 0.7 - 0.6, 0.8 - 0.65]
    assert gap.summary.value == pytest.approx(np.mean(expected)) and gap.ahead == pytest.approx(2 / 3)
    assert matched_kl_gap([line("far", [0.0, 5.0, 6.0], lambda k: 0.7)], offline) is None


# --- claims, on hand-made stores ----------------------------------------------------------------

def test_online_beats_offline_paired_over_seeds(store):
    for seed, (on_peak, off_peaks) in enumerate([(0.80, (0.60, 0.55)), (0.78, (0.62, 0.50)), (0.79, (0.61, 0.52))]):
        online = store.align("online", {"online": "proxy"}, seed=seed)
        store.evals(online, rise_and_fall(on_peak))
        store.outcomes(online, rise_and_fall(on_peak), seed=seed)
        for beta, peak in zip((0.1, 0.5), off_peaks):
            store.evals(store.align("offline", {"offline": "golden_data"}, seed=seed, beta=beta),
                        rise_and_fall(peak, kl_scale=2))
    measured, not_measured = verdicts(store.write())
    (plateau,) = by_claim(measured, "higher plateau win rate")
    # plateau = steps 20-40, 0.6 of the way from 0.5 to the peak: per seed online - best offline
    # = 0.6 x (0.20, 0.16, 0.18) -> mean 0.108, sd 0.012, t(2) = 4.303
    assert plateau.verdict == "observed"
    assert "online − offline +0.108 [+0.078, +0.138] (paired over 3 replicates, t(2))" in plateau.evidence
    (matched,) = by_claim(measured, "matched KL")
    assert matched.verdict == "observed" and "paired over 3 replicates" in matched.evidence
    over = {f.claim.rsplit("(", 1)[1].rstrip(")"): f for f in by_claim(measured, "Over-optimisation")}
    # online: per-prompt outcomes, peak chosen on half the prompts; offline: none, so no verdict
    assert over["online"].verdict == "observed" and "paired over 3 replicates" in over["online"].evidence
    assert over["offline"].verdict == "inconclusive" and "needs per-prompt outcomes" in over["offline"].evidence
    assert "Fig. 12" in not_measured and "App. F" in not_measured


def test_one_replicate_is_paired_over_its_prompts(store):
    points = rise_and_fall(0.8)
    online = store.align("online", {"online": "proxy"})
    store.evals(online, points)
    store.outcomes(online, points)
    offline = store.align("offline", {"offline": "golden_data"})
    store.evals(offline, rise_and_fall(0.6))
    store.outcomes(offline, rise_and_fall(0.6), seed=1)
    measured, _ = verdicts(store.write())
    (plateau,) = by_claim(measured, "higher plateau win rate")
    assert plateau.verdict == "observed" and "one replicate: paired over its 512 held-out prompts" in plateau.evidence
    (matched,) = by_claim(measured, "matched KL")
    assert matched.verdict == "observed" and "512 held-out prompts" in matched.evidence


def test_still_rising_runs_do_not_over_optimise(store):
    job = store.align("online", {"online": "proxy"})
    points = [{"step": s, "kl": s, "win_rate": 0.5 + s / 100} for s in (0, 10, 20, 30)]
    store.evals(job, points)
    store.outcomes(job, points)
    measured, _ = verdicts(store.write())
    (over,) = by_claim(measured, "Over-optimisation")
    assert over.verdict == "contradicted" and "1/1 runs end at their best checkpoint" in over.evidence


def test_exact_tandem_reproduces_online_and_a_drift_is_caught(store):
    losses = [1.0 / (1 + 0.1 * s) for s in range(50)]
    online = store.align("online", {"online": "proxy"})
    store.curve(online, "train/loss", losses)
    exact = store.align("tandem", {"replay": online})
    store.curve(exact, "train/loss", losses)
    measured, _ = verdicts(store.write())
    (tandem,) = by_claim(measured, "exact order")
    assert tandem.verdict == "observed" and "50/50 steps matched, bit-identical" in tandem.evidence


def test_tandem_drift_beyond_tolerance_is_contradicted(store):
    losses = [1.0 / (1 + 0.1 * s) for s in range(50)]
    online = store.align("online", {"online": "proxy"})
    store.curve(online, "train/loss", losses)
    drifted = store.align("tandem", {"replay": online})
    store.curve(drifted, "train/loss", [v * (1.01 if s > 40 else 1.0) for s, v in enumerate(losses)])
    measured, _ = verdicts(store.write())
    (tandem,) = by_claim(measured, "exact order")
    assert tandem.verdict == "contradicted" and "largest |Δ loss|" in tandem.evidence


def test_shuffled_replays_below_online_and_shuffle_levels(store):
    for seed in range(3):
        online = store.align("online", {"online": "proxy"}, seed=seed)
        store.evals(online, rise_and_fall(0.80 + seed / 100))
        for shuffle, drop in ((0.0, 0.0), (0.1, 0.002), (1.0, 0.15)):
            replay = store.align(f"tandem_{shuffle}", {"replay": online}, seed=seed, shuffle=shuffle)
            store.evals(replay, rise_and_fall(0.80 + seed / 100 - drop - (seed % 2) * 0.01))
    measured, _ = verdicts(store.write())
    (coverage,) = by_claim(measured, "shuffled, stays below online")
    assert coverage.verdict == "observed" and "level 1" in coverage.evidence
    (levels,) = by_claim(measured, "Small shuffling")
    assert levels.verdict == "observed"


def test_offline_classifies_better_and_winners_fall_most(store):
    for seed in range(2):
        online = store.align("online", {"online": "proxy"}, seed=seed)
        store.evals(online, [{"step": s, "classifier_accuracy": 0.5 + 0.001 * seed, "logp_chosen": -20 - s / 10,
                              "logp_rejected": -21 - s / 10} for s in (0, 10, 20)])
        offline = store.align("offline", {"offline": "golden_data"}, seed=seed)
        store.evals(offline, [{"step": s, "classifier_accuracy": 0.5 + s / 100 + 0.01 * seed,
                               "logp_chosen": -20 - s / 2 - s * seed / 20, "logp_rejected": -21 - s}
                              for s in (0, 10, 20)])
    measured, _ = verdicts(store.write())
    (accuracy,) = by_claim(measured, "classify D_golden better")
    # plateau (steps 10-20): offline 0.65 + 0.01 seed, online 0.5 + 0.001 seed -> 0.150, 0.159 over 2 seeds
    assert accuracy.verdict == "observed" and "offline (offline) − online: +0.154" in accuracy.evidence
    (logp,) = by_claim(measured, "winning responses fall")
    # change first -> last: online -2, offline -10 and -11: online - offline 8 and 9
    assert logp.verdict == "observed" and "+8.50 [" in logp.evidence


def test_every_claim_is_checked_cleanly_on_the_full_design(full_design_workspace):
    workspace, spec = full_design_workspace
    measured, not_measured = verdicts(workspace, spec)
    assert not_measured == ["Fig. 12"]  # needs a measure the runtime does not record
    assert not [f for f in measured if f.evidence.startswith("could not be checked")]
    # the synthetic design: online 0.15 above offline at every size, exact tandem replays online
    assert {f.verdict for f in by_claim(measured, "higher plateau win rate")} == {"observed"}
    assert by_claim(measured, "exact order")[0].verdict == "observed"


def test_every_claim_is_checked_cleanly_on_the_quickstart(quickstart_workspace):
    measured, _ = verdicts(quickstart_workspace, "quickstart")
    assert measured and not [f for f in measured if f.evidence.startswith("could not be checked")]


def test_no_claims_without_align_runs(store):
    measured, not_measured = verdicts(store.write())
    assert measured == [] and "Fig. 1" in not_measured and "App. F" in not_measured
