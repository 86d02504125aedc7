"""Every verdict rule, simulated under its null: a claim that is false is called "observed" at
most 5% of the time (and a real effect of a size the embedded task shows is found).

Runs are simulated as the runtime records them: checkpoints with a KL and, per held-out
prompt, a win (1/0) against the baseline. Two kinds of null: within one replicate, the
methods' trained policies are equally good (per-prompt intervals speak about these runs);
over replicates, each run also has its own seed-to-seed quality, equal in expectation.
"""

from __future__ import annotations

import numpy as np
import pytest

from specc.reports.claim_data import RunData
from specc.reports.gap_claims import matched_kl_verdict, over_optimisation_verdict, plateau_gaps
from specc.reports.mechanism_claims import _over_runs, correlation_verdict
from specc.reports.paired import Run, Summary, across, difference, plateau
from specc.reports.stats import Estimate, mean_estimate, verdict_positive

SIMULATIONS = 300
LIMIT = 0.05
STEPS = np.array([0, 3, 6, 10, 15, 20, 25, 50, 75, 100, 125, 150, 175, 200])
PROMPTS = 256


def curve(kl: np.ndarray) -> np.ndarray:
    """True win probability against the baseline as a function of KL: rises, then falls a little."""
    return 0.3 + 0.25 * (1 - np.exp(-kl / 1.5)) - 0.01 * kl


def simulate_run(rng, name, kl_rate, shift=0.0, prompt_base=None, items=True, bend=curve) -> Run:
    kl = kl_rate * STEPS / (STEPS + 40) * 8 + rng.normal(0, 0.05, len(STEPS)) * (STEPS > 0)
    kl = np.maximum(kl, 0)
    p = np.clip(bend(kl)[:, None] + shift + (0 if prompt_base is None else prompt_base[None, :]), 0.01, 0.99)
    wins = (rng.random((len(STEPS), PROMPTS)) < np.broadcast_to(p, (len(STEPS), PROMPTS))).astype(float)
    if not items:
        return Run.of(name, STEPS, kl, wins.mean(axis=1))
    return Run.of(name, STEPS, kl, wins.mean(axis=1), wins)


def data(method: str, run: Run, replicate: str = "r0") -> RunData:
    return RunData(run.name, method, method, "ipo", "S", replicate, "", None, None, None, 0.0, run)


def replicate(rng, effect=0.0, seed_sd=0.0, offline_runs=3, items=True) -> dict:
    """One replicate: an online run (KL grows fast) and offline runs (slower, varied), the online
    run better by `effect` in win probability at every KL; each run off by N(0, seed_sd)."""
    base = rng.normal(0, 0.1, PROMPTS)
    online = simulate_run(rng, "online", 1.0, effect + rng.normal(0, seed_sd), base, items)
    offline = [simulate_run(rng, f"offline {i}", rng.uniform(0.4, 1.2), rng.normal(0, seed_sd), base, items)
               for i in range(offline_runs)]
    return {"online": [data("online", online)], "offline": [data("offline", r) for r in offline]}


def observed_rate(decide, simulations=SIMULATIONS, seed=0) -> float:
    rng = np.random.default_rng(seed)
    rate = float(np.mean([decide(rng) == "observed" for _ in range(simulations)]))
    print(f"observed in {rate:.1%} of {simulations} simulations")
    return rate


# --- the claims ----------------------------------------------------------------------------------

@pytest.mark.parametrize("offline_runs", [1, 3])
def test_matched_kl_within_one_replicate(offline_runs):
    def decide(effect):
        return lambda rng: matched_kl_verdict({"r0": replicate(rng, effect, offline_runs=offline_runs)})[0]
    assert observed_rate(decide(0.0)) <= LIMIT
    assert observed_rate(decide(0.08), simulations=40) >= 0.8


def test_matched_kl_over_replicates():
    def decide(effect):
        return lambda rng: matched_kl_verdict({f"r{i}": replicate(rng, effect, seed_sd=0.02, offline_runs=1,
                                                                   items=False) for i in range(5)})[0]
    assert observed_rate(decide(0.0)) <= LIMIT
    assert observed_rate(decide(0.1), simulations=40) >= 0.8


@pytest.mark.parametrize("replicates,seed_sd", [(1, 0.0), (5, 0.03)])
def test_plateau_gap(replicates, seed_sd):
    def decide(effect):
        def one(rng):
            reps = {f"r{i}": replicate(rng, effect, seed_sd=seed_sd, offline_runs=1, items=replicates == 1)
                    for i in range(replicates)}
            return verdict_positive(across(plateau_gaps(reps))[0])
        return one
    assert observed_rate(decide(0.0)) <= LIMIT
    assert observed_rate(decide(0.1), simulations=40) >= 0.8


def test_over_optimisation_needs_a_real_fall():
    flat_after_rise = lambda kl: 0.2 + 0.4 * (1 - np.exp(-kl / 1.5))  # noqa: E731
    rise_then_fall = lambda kl: 0.2 + 0.4 * (1 - np.exp(-kl / 1.5)) - 0.06 * kl  # noqa: E731

    def decide(bend):
        return lambda rng: over_optimisation_verdict([[simulate_run(rng, "online", 1.0, bend=bend)]])[0]
    assert observed_rate(decide(flat_after_rise)) <= LIMIT
    assert observed_rate(decide(rise_then_fall), simulations=40) >= 0.8


def test_paired_accuracy_difference_per_pair():
    """F8 within one replicate: per-pair verdicts of two policies on the same pairs of D_golden."""
    def decide(effect):
        def one(rng):
            easy = rng.uniform(0.4, 0.9, PROMPTS)  # pairs differ in difficulty; both policies see the same
            runs = [Run.of(m, STEPS, STEPS / 10, np.zeros(len(STEPS)),
                           (rng.random((len(STEPS), PROMPTS)) < np.clip(easy + e, 0, 1)).astype(float))
                    for m, e in (("offline", effect), ("online", 0.0))]
            runs = [Run.of(r.name, r.steps, r.kl, r.items.mean(axis=1), r.items) for r in runs]
            return verdict_positive(across([difference(plateau(runs[0]), plateau(runs[1]))], "pairs")[0])
        return one
    assert observed_rate(decide(0.0)) <= LIMIT
    assert observed_rate(decide(0.06), simulations=40) >= 0.8


def test_proxy_against_policy_from_checkpoint_accuracies():
    """Accuracies of one run's checkpoints share their draws: their mean is not more evidence."""
    def decide(effect):
        def one(rng):
            shared = rng.normal(0, 0.03)  # the draws every checkpoint shares
            values = [effect + shared + rng.normal(0, 0.005) for _ in range(15)]
            return verdict_positive(_over_runs({("r0", "job"): (values, 0.03)})[0])
        return one
    assert observed_rate(decide(0.0)) <= LIMIT
    assert observed_rate(decide(0.12), simulations=40) >= 0.8


def test_correlation_of_accuracy_and_win_rate():
    def decide(rho):
        def one(rng):
            points = {}
            for r in range(5):
                x = rng.normal(size=4)
                y = rho * x + np.sqrt(1 - rho ** 2) * rng.normal(size=4) + rng.normal() * 3  # replicate offsets
                points[f"r{r}"] = list(zip(x + rng.normal() * 3, y))
            return correlation_verdict(points)[0]
        return one
    assert observed_rate(decide(0.0)) <= LIMIT
    assert observed_rate(decide(-0.8), simulations=40) >= 0.8


def test_intervals_are_never_narrower_than_the_t_interval():
    # units agreeing more closely than their measurement error: the error widens the interval, t(n-1) stays
    tight = mean_estimate([0.60, 0.61], [0.05, 0.05])
    assert tight.df == 1 and tight.half >= 12.7 * 0.05 / np.sqrt(2) - 1e-9
    assert verdict_positive(Estimate(-0.01, 0.1)) == "inconclusive"  # a negative estimate alone decides nothing
    assert verdict_positive(Estimate(-0.5, 0.1)) == "contradicted"
    assert across([Summary(0.1)])[0].has_interval is False
