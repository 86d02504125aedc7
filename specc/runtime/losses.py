"""Preference losses as short pure functions (Tang et al. 2024, Sec. 2 and App. B).

All contrastive losses take the log-ratio margin

    h = [log pi(yw|x) - log pi_ref(yw|x)] - [log pi(yl|x) - log pi_ref(yl|x)]

per example (sequence log-probs, summed or averaged over tokens by the
caller) and return the batch mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def margin(policy_chosen, policy_rejected, ref_chosen, ref_rejected) -> torch.Tensor:
    """h(x, yw, yl): the policy-vs-reference log-ratio margin."""
    return (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)


def ipo_loss(h: torch.Tensor, beta: float) -> torch.Tensor:
    """IPO: (h - 1/(2 beta))^2 (App. B: f(beta h) with f(z) = (z - 1/2)^2, divided by beta^2).

    The main text's Eq. 1 prints the target as beta/2; that contradicts
    "larger beta = stronger regularisation" and App. B, which we follow."""
    return ((h - 1.0 / (2.0 * beta)) ** 2).mean()


def dpo_loss(h: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO: -log sigmoid(beta h) = log(1 + exp(-beta h))."""
    return -F.logsigmoid(beta * h).mean()


def slic_loss(h: torch.Tensor, beta: float) -> torch.Tensor:
    """SLiC-style calibration hinge: max(0, 1 - beta h)."""
    return torch.relu(1.0 - beta * h).mean()


def bo2_loss(policy_chosen: torch.Tensor) -> torch.Tensor:
    """Best-of-2 (non-contrastive, Sec. 5.3): -log pi(yw|x), SFT on each pair's winner."""
    return -policy_chosen.mean()


CONTRASTIVE = {"ipo": ipo_loss, "dpo": dpo_loss, "slic": slic_loss}


def sequence_logp(token_logps: torch.Tensor, mask: torch.Tensor | None, normalize: str) -> torch.Tensor:
    """Sum (the paper's IPO) or per-token mean (TRL's offline IPO) of response log-probs."""
    if mask is None:
        total = token_logps.sum(-1)
        return total if normalize == "sum" else total / token_logps.shape[-1]
    total = (token_logps * mask).sum(-1)
    return total if normalize == "sum" else total / mask.sum(-1).clamp(min=1)


def preference_loss(name: str, beta: float, policy_chosen, policy_rejected, ref_chosen, ref_rejected):
    """The loss named in the spec, and the margins (for logging)."""
    h = margin(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    if name == "bo2":
        return bo2_loss(policy_chosen), h
    return CONTRASTIVE[name](h, beta), h
