"""Diverged training fails its job: a non-finite loss or parameter is never trained on, saved or scored.

Checks are cheap: the step's metrics are Python floats already (one `math.isfinite` each), and
parameters are checked once per checkpoint, in one fused reduction, before anything is saved.
A NaN loss poisons the gradients and so the next step's parameters and loss, so a divergence
is caught at the step it shows, or at the latest at the checkpoint that would have saved it.
"""

from __future__ import annotations

import math

import torch

from specc.runtime import distributed

HINT = "the run diverged: lower train.lr, set train.grad_clip, or check the data"


class NonFiniteError(ValueError):
    """Training produced NaN or infinity; the message names the step and the metric or parameter."""


def check_step_metrics(step: int, metrics: dict) -> None:
    """Raise if a train/* metric of `step` (e.g. train/loss) is NaN or infinite."""
    for name, value in metrics.items():
        if name.startswith("train/") and not math.isfinite(float(value)):
            raise NonFiniteError(f"{name} is {float(value)} at step {step}: {HINT}")


def check_parameters(step: int, model: torch.nn.Module) -> None:
    """Raise if any parameter holds NaN or infinity (naming the first such tensor)."""
    params = [p for p in model.parameters()]
    if not params:
        return
    # a sharded parameter (a DTensor) is checked by each rank on its own shard
    local = [p.to_local() if hasattr(p, "to_local") else p for p in params]
    finite = torch.stack([torch.isfinite(p.detach()).all() for p in local])
    if distributed.all_finite(finite.all()):  # one device sync per checkpoint
        return
    if bool(finite.all()):  # another rank's shard
        raise NonFiniteError(f"a parameter shard of another rank is not finite at step {step}: {HINT}")
    names = [name for name, _ in model.named_parameters()]
    first = names[int((~finite).nonzero()[0])]
    raise NonFiniteError(f"parameter {first} is not finite at step {step}: {HINT}")
