"""Batches of pairs as dicts of tensors: prompt, chosen, rejected, and for real data their
masks (`prompt_mask`, ...). Synthetic data has no masks, and every function here then
takes the unmasked path unchanged."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specc.runtime.artifacts import MASK_SUFFIX, PAIR_COLUMNS, PAIR_MASKS
from specc.runtime.device import autocast
from specc.runtime.losses import sequence_logp
from specc.runtime.models import end_at_eos, sample, shared_prompt_logprobs


def mask(batch: dict, column: str) -> torch.Tensor | None:
    return batch.get(column + MASK_SUFFIX)


def masks_of(batch: dict) -> tuple:
    """(prompt_mask, chosen_mask, rejected_mask), each None where the data has no masks."""
    return tuple(batch.get(name) for name in PAIR_MASKS)


def take(batch: dict, rows) -> dict:
    return {name: values[rows] for name, values in batch.items()}


def to_device(batch: dict, device: torch.device) -> dict:
    return {name: values.to(device) for name, values in batch.items()}


def pair_batch(prompt, chosen, rejected, prompt_mask=None, chosen_mask=None, rejected_mask=None) -> dict:
    batch = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    for column, values in zip(PAIR_COLUMNS, (prompt_mask, chosen_mask, rejected_mask)):
        if values is not None:
            batch[column + MASK_SUFFIX] = values
    return batch


def order_pairs(prompt, first, second, first_wins, prompt_mask=None, first_mask=None, second_mask=None) -> dict:
    """A pair batch with `first` as chosen where `first_wins` (a column of booleans) and
    `second` elsewhere; each mask travels with its response."""
    def pick(a, b):
        return None if a is None else torch.where(first_wins, a, b)

    return pair_batch(prompt, pick(first, second), pick(second, first), prompt_mask,
                      pick(first_mask, second_mask), pick(second_mask, first_mask))


def both_responses(batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chosen rows then rejected rows, and their masks (None for unpadded data)."""
    chosen_mask = mask(batch, "chosen")
    return (torch.cat([batch["chosen"], batch["rejected"]]),
            None if chosen_mask is None else torch.cat([chosen_mask, mask(batch, "rejected")]))


def pair_logps(model, batch: dict, normalize: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence log-probs of a batch's (chosen, rejected): one forward over both sides, each
    prompt computed once for its two responses."""
    responses, response_mask = both_responses(batch)
    with autocast(device):
        logps = shared_prompt_logprobs(model, batch["prompt"], responses, response_mask, mask(batch, "prompt"))
    return sequence_logp(logps, response_mask, normalize).chunk(2)


@dataclass
class Sides:
    """Chosen rows then rejected rows, for one forward over both sides of a batch of pairs."""

    prompt: torch.Tensor
    response: torch.Tensor
    prompt_mask: torch.Tensor | None
    response_mask: torch.Tensor | None


def both_sides(batch: dict) -> Sides:
    prompt_mask = mask(batch, "prompt")
    responses, response_mask = both_responses(batch)
    return Sides(torch.cat([batch["prompt"], batch["prompt"]]), responses,
                 None if prompt_mask is None else torch.cat([prompt_mask, prompt_mask]), response_mask)


@dataclass(frozen=True)
class Responder:
    """Samples responses of a task's length. Real data (a tokenizer with EOS) cuts each
    response after its first EOS and returns its mask; synthetic responses have none."""

    length: int
    eos_id: int | None = None
    pad_id: int | None = None

    @classmethod
    def for_task(cls, info: dict) -> "Responder":
        eos = info.get("eos_id")
        return cls(info["response_len"], eos, info.get("pad_id", eos))

    def __call__(self, model, prompts, prompt_mask, generator, copies: int = 1,
                 draw_rows=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(responses, mask) of `copies` responses per prompt: all first ones, then all second
        ones, ... (`draw_rows`: a rank's share of a batch, see models.sample)."""
        return self._cut(sample(model, prompts, self.length, generator, prompt_mask=prompt_mask, copies=copies,
                                draw_rows=draw_rows))

    def keeping(self, keep: str, model, prompts, prompt_mask, generator) -> tuple[tuple, torch.Tensor]:
        """((responses, mask), what sampling kept: "logits" [B, length, V] or "logprobs" [B, length])."""
        responses, kept = sample(model, prompts, self.length, generator, prompt_mask=prompt_mask, keep=keep)
        return self._cut(responses), kept

    def _cut(self, responses) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.eos_id is None:
            return responses, None
        return end_at_eos(responses, self.eos_id, self.pad_id)
