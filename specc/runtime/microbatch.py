"""Activation memory of a training step: micro-batches whose gradients add up to the batch's,
activation checkpointing, and batches trimmed to their longest real prompt and response.

A step's activations grow with rows x sequence width x layers; at the paper's widths (prompts
up to 1,024 tokens) a whole batch of 32 pairs does not fit a GPU. `train.micro_batch_size`
bounds the rows, `train.grad_checkpointing` keeps one tensor per layer instead of a dozen,
and trimming drops the columns that are padding in every row of a (micro-)batch.

With neither knob set, a step is the unsplit computation it always was (bit for bit).
"""

from __future__ import annotations

from typing import Callable

import torch

from specc.runtime.artifacts import MASK_SUFFIX


def micro_slices(rows: int, micro: int | None) -> list[slice]:
    """The row ranges of one batch's micro-batches; the whole batch when `micro` is unset."""
    if not micro or micro >= rows:
        return [slice(None)]
    return [slice(start, min(start + micro, rows)) for start in range(0, rows, micro)]


def share(part: slice, rows: int) -> float:
    """A micro-batch's share of the batch's rows: the weight of its mean loss (1.0 when whole)."""
    start, stop, _ = part.indices(rows)
    return (stop - start) / rows


def accumulated_update(model, optimizer, scheduler, train: dict, rows: int,
                       loss_of: Callable[[slice], tuple[torch.Tensor, object]]) -> list[tuple[torch.Tensor, object]]:
    """One optimiser step on a batch of `rows` examples, in micro-batches of
    `train.micro_batch_size` rows. `loss_of(part)` returns the part's share of the batch's loss
    (its mean times `share`, or its sum over the whole batch's count) and what to keep for
    metrics; the parts' gradients add up to the whole batch's. Returns [(loss share, kept)]."""
    optimizer.zero_grad(set_to_none=True)
    kept = []
    for part in micro_slices(rows, train.get("micro_batch_size")):
        loss, extra = loss_of(part)
        loss.backward()
        kept.append((loss.detach(), extra))
    if train["grad_clip"]:
        torch.nn.utils.clip_grad_norm_(model.parameters(), train["grad_clip"])
    optimizer.step()
    scheduler.step()
    return kept


def total_loss(kept: list) -> torch.Tensor:
    return kept[0][0] if len(kept) == 1 else torch.stack([loss for loss, _ in kept]).sum()


def enable_checkpointing(model: torch.nn.Module) -> None:
    """Recompute each transformer block in the backward instead of keeping its activations.
    transformers' own switch; specc's GPT-2 forward honours it too (runtime.gpt2)."""
    target = getattr(model, "backbone", model)  # a preference model checkpoints its transformer
    target.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def trimmed(batch: dict) -> dict:
    """`batch` without the columns that are padding in every row: left padding of the prompts,
    right padding of the responses (all response columns share one width). Padding is masked
    everywhere, so results equal the untrimmed batch's up to float rounding. Unpadded data
    (no masks) comes back unchanged."""
    prompt_mask = batch.get("prompt" + MASK_SUFFIX)
    if prompt_mask is None:
        return batch
    first = _first_real_column(prompt_mask)
    responses = [name for name in batch if not name.endswith(MASK_SUFFIX) and name != "prompt"]
    width = max(_last_real_column(batch[name + MASK_SUFFIX]) for name in responses if name + MASK_SUFFIX in batch)
    out = {}
    for name, values in batch.items():
        column = name.removesuffix(MASK_SUFFIX)
        out[name] = values[:, first:] if column == "prompt" else values[:, :width] if column in responses else values
    return out


def _first_real_column(mask: torch.Tensor) -> int:
    real = mask.bool().any(0).nonzero()
    return int(real[0]) if len(real) else mask.shape[1] - 1


def _last_real_column(mask: torch.Tensor) -> int:
    """One past the last column with a real token in any row (at least 1)."""
    real = mask.bool().any(0).nonzero()
    return max(1, int(real[-1]) + 1) if len(real) else 1
