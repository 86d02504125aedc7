"""Verdicts on the paper's claims (Tang et al. 2024; one Claim each in CLAIMS below), computed
from a spec's results.

Each claim's check (gap_claims.py, mechanism_claims.py) reads the spec's runs from SQL and
reduces each replicate to one summary (paired.py): a gap over a shared KL range, a plateau
difference, a cross-fitted rise and fall. A verdict is "observed" (the 95% interval excludes
zero in the claimed direction), "contradicted" (it excludes zero the other way) or
"inconclusive", with the numbers and intervals that decided it; each rule's false "observed"
rate under the null is at most 5% (tests/reports/test_calibration.py). A claim the spec's data
cannot speak to comes back as not measured, with what it would need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from specc.reports import gap_claims as gap
from specc.reports import mechanism_claims as mechanism
from specc.reports.claim_data import Finding
from specc.reports.queries import SpecData

__all__ = ["CLAIMS", "Claim", "Finding", "findings"]


@dataclass(frozen=True)
class Claim:
    figure: str
    claim: str
    needs: str
    check: Callable[..., list[Finding]]


def findings(data: SpecData) -> tuple[list[Finding], list["Claim"]]:
    """(verdicts, claims not measured by this spec)."""
    measured, not_measured = [], []
    for claim in CLAIMS:
        try:
            found = claim.check(data, claim)
        except Exception as exc:  # data no check foresaw must not cost the run its report
            message = (str(exc).splitlines() or [""])[0]
            found = [Finding(claim.figure, claim.claim, "inconclusive",
                             f"could not be checked: {type(exc).__name__}: {message}")]
        measured.extend(found) if found else not_measured.append(claim)
    return measured, not_measured


CLAIMS = [
    Claim("Fig. 1", "Online reaches a higher plateau win rate than the best offline run",
          "online and offline align stages evaluated with `evaluate.judge`", gap.online_beats_offline_plateau),
    Claim("Fig. 1", "Online is ahead of offline at matched KL", "online and offline align stages evaluated with "
          "`evaluate.judge`, with overlapping KL ranges", gap.online_ahead_at_matched_kl),
    Claim("Fig. 1", "Over-optimisation: win rate rises, then falls as KL grows",
          "align runs with three or more evaluations", gap.over_optimisation),
    Claim("Fig. 4", "Offline on the online run's own data, shuffled, stays below online (coverage does not "
          "explain the gap)", "a replay stage with `shuffle` > 0, and the online run it replays evaluated",
          mechanism.shuffled_below_online),
    Claim("Fig. 5", "Better offline data (from a stronger policy) does not close the gap to online",
          "online, and offline on a dataset other than `evaluate.pairs` (e.g. a `pairs` stage)", gap.better_data),
    Claim("Fig. 6", "The proxy judge classifies the online policy's samples better than the policy does",
          "online stages with `evaluate.judge` (eval/proxy_accuracy_on_policy)",
          mechanism.proxy_beats_policy),
    Claim("Fig. 6", "The proxy judge's accuracy decays as the online policy drifts out of distribution",
          "online stages with `evaluate.judge` (eval/proxy_accuracy_on_policy at three or more checkpoints)",
          mechanism.proxy_decays),
    Claim("Fig. 7", "Classification accuracy on D_golden does not predict win rate",
          "align stages with `evaluate.pairs` and `evaluate.judge` (four or more checkpoints)",
          mechanism.accuracy_not_predictive),
    Claim("Fig. 8", "Offline policies classify D_golden better than online ones",
          "online and offline stages with `evaluate.pairs`", mechanism.offline_classifies_better),
    Claim("Fig. 8", "Log-probabilities of winning responses fall, most for offline",
          "online and offline stages with `evaluate.pairs`", mechanism.winners_fall_most_offline),
    Claim("Fig. 10, 11, 14", "Scaling the policy narrows but does not close the gap",
          "online and offline stages at two or more `model.size`s", gap.scaling_narrows),
    Claim("Fig. 12", "On-policy-ness of offline data (proximity to π_sft) matters most",
          "a measure of each offline dataset's distance from π_sft, which runs do not record yet "
          "(see the dataset-ablation figure for the win rates)", mechanism.dataset_proximity),
    Claim("Fig. 13", "Small shuffling of the online stream is harmless, large shuffling hurts",
          "replay stages at two or more `shuffle` levels above 0", mechanism.shuffle_levels),
    Claim("App. F", "Offline on D_online in its exact order reproduces the online run",
          "a replay stage with `shuffle: 0` and the train/loss of the online run it replays",
          mechanism.tandem_reproduces_online),
]
