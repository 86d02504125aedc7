"""Preference losses as short pure functions (Tang et al. 2024, Sec. 2 and App. B).

All contrastive losses take the log-ratio margin

    h = [log pi(yw|x) - log pi_ref(yw|x)] - [log pi(yl|x) - log pi_ref(yl|x)]

per example (sequence log-probs, summed or averaged over tokens by the
caller) and return the batch mean.

A new loss is a function here and a row of LOSSES (plus its name in the schema's
`loss.name`); one that needs more than (h, beta) reads it from the LossInputs its row gets,
e.g. the policy's log-probs or a field added to the spec's `loss` block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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


@dataclass(frozen=True)
class LossInputs:
    """What a loss may use: the step's sequence log-probs, their margin h, and the `loss` block."""

    policy_chosen: torch.Tensor
    policy_rejected: torch.Tensor
    ref_chosen: torch.Tensor
    ref_rejected: torch.Tensor
    h: torch.Tensor
    beta: float
    config: dict


# `loss.name` -> the loss of a step's LossInputs
LOSSES: dict[str, Callable[[LossInputs], torch.Tensor]] = {
    "ipo": lambda x: ipo_loss(x.h, x.beta),
    "dpo": lambda x: dpo_loss(x.h, x.beta),
    "slic": lambda x: slic_loss(x.h, x.beta),
    "bo2": lambda x: bo2_loss(x.policy_chosen),
}


def sequence_logp(token_logps: torch.Tensor, mask: torch.Tensor | None, normalize: str) -> torch.Tensor:
    """Sum (the paper's IPO) or per-token mean (TRL's offline IPO) of response log-probs."""
    if mask is None:
        total = token_logps.sum(-1)
        return total if normalize == "sum" else total / token_logps.shape[-1]
    total = (token_logps * mask).sum(-1)
    return total if normalize == "sum" else total / mask.sum(-1).clamp(min=1)


def preference_loss(name: str, beta: float, policy_chosen, policy_rejected, ref_chosen, ref_rejected,
                    config: dict | None = None):
    """The loss named in the spec, and the margins (for logging); `config` is the spec's `loss` block."""
    h = margin(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    inputs = LossInputs(policy_chosen, policy_rejected, ref_chosen, ref_rejected, h, beta, config or {})
    return LOSSES[name](inputs), h
