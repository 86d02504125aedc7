"""Evaluation metrics as pure functions (Tang et al. 2024, Sec. 3, App. D, Sec. 5)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def exact_token_kl(policy_logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """KL(pi || pi_ref) per sequence (App. D): at each position the exact KL between the
    full next-token distributions, summed over response tokens. Logits [B, T, V] -> [B]."""
    logp = F.log_softmax(policy_logits.float(), dim=-1)
    logq = F.log_softmax(ref_logits.float(), dim=-1)
    per_token = (logp.exp() * (logp - logq)).sum(-1)
    if mask is not None:
        per_token = per_token * mask
    return per_token.sum(-1)


def win_outcomes(prob_first_wins) -> torch.Tensor:
    """Symmetrised verdicts -> outcomes: 1 win, 0 loss, 0.5 exact tie."""
    p = torch.as_tensor(prob_first_wins, dtype=torch.float64)
    return torch.where(p > 0.5, 1.0, torch.where(p < 0.5, 0.0, 0.5))


def win_rate_interval(outcomes, z: float = 1.96) -> tuple[float, float, float]:
    """Win rate and its Wilson score 95% interval (ties count half).

    Unlike the normal approximation, the interval is honest at small n and at rates near 0 or 1:
    one win out of one prompt gives 1.0 [0.21, 1.0], not a zero-width [1.0, 1.0]."""
    x = torch.as_tensor(outcomes, dtype=torch.float64)
    n = x.numel()
    if n == 0:
        return float("nan"), 0.0, 1.0
    p = x.mean().item()
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return p, max(0.0, centre - half), min(1.0, centre + half)


def classifier_scores(policy_first, policy_second, ref_first, ref_second) -> torch.Tensor:
    """Policy as a classifier (Sec. 5.1): f = log pi(y1)/pi(y2) - log pi_ref(y1)/pi_ref(y2)."""
    return (policy_first - policy_second) - (ref_first - ref_second)


def classifier_correct(scores: torch.Tensor, first_is_better: torch.Tensor) -> torch.Tensor:
    """Per pair: 1 where sign(f) agrees with the golden label, 0 where not, 0.5 where f == 0."""
    scores = scores.double()
    correct = torch.where(first_is_better.bool(), scores > 0, scores < 0).double()
    return torch.where(scores == 0, 0.5, correct)


def classifier_accuracy(scores: torch.Tensor, first_is_better: torch.Tensor) -> float:
    """Share of pairs where sign(f) agrees with the golden label; f == 0 counts half."""
    return classifier_correct(scores, first_is_better).mean().item()
