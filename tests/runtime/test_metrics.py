"""KL, win-rate and classifier metrics against values computed by hand."""

import math

import pytest
import torch

from specc.runtime.metrics import (classifier_accuracy, classifier_scores, exact_token_kl, win_outcomes,
                                   win_rate_interval)


def test_exact_kl_sums_full_distribution_kl_over_tokens():
    p = torch.tensor([0.5, 0.5])
    q = torch.tensor([0.9, 0.1])
    per_token = (p * (p / q).log()).sum().item()  # 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1) = 0.5108...
    assert per_token == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(5.0))
    logits_p = p.log().expand(1, 3, 2)  # three response tokens, same distributions
    logits_q = q.log().expand(1, 3, 2)
    assert exact_token_kl(logits_p, logits_q).item() == pytest.approx(3 * per_token, rel=1e-6)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert exact_token_kl(logits_p, logits_q, mask).item() == pytest.approx(2 * per_token, rel=1e-6)
    assert exact_token_kl(logits_p, logits_p).item() == pytest.approx(0.0, abs=1e-7)


def test_win_outcomes_count_ties_half():
    assert win_outcomes([0.9, 0.1, 0.5, 0.51]).tolist() == [1.0, 0.0, 0.5, 1.0]


def test_win_rate_interval_is_wilson():
    # Wilson score interval, z = 1.96, by hand: centre (p + z^2/2n) / (1 + z^2/n),
    # half-width z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/4n^2)
    rate, lo, hi = win_rate_interval([1.0, 0.0] * 4)
    assert rate == 0.5
    assert lo == pytest.approx(0.2152, abs=1e-4) and hi == pytest.approx(0.7848, abs=1e-4)
    rate, lo, hi = win_rate_interval([1.0])  # one prompt: honest, not [1.0, 1.0]
    assert (rate, hi) == (1.0, 1.0) and lo == pytest.approx(0.2065, abs=1e-4)
    rate, lo, hi = win_rate_interval([0.0] * 3)
    assert (rate, lo) == (0.0, 0.0) and hi == pytest.approx(0.5615, abs=1e-4)


def test_policy_as_classifier():
    # f = (log pi(y1) - log pi(y2)) - (log ref(y1) - log ref(y2))
    scores = classifier_scores(torch.tensor([-1.0, -2.0, -1.0]), torch.tensor([-2.0, -1.0, -1.0]),
                               torch.tensor([-1.5, -1.5, -1.0]), torch.tensor([-1.5, -1.5, -1.0]))
    assert scores.tolist() == [1.0, -1.0, 0.0]
    # first pair right, second wrong, third undecided (half)
    assert classifier_accuracy(scores, torch.tensor([True, True, True])) == pytest.approx(0.5)
    assert classifier_accuracy(scores, torch.tensor([True, False, False])) == pytest.approx(2.5 / 3)
