"""The hf engine: specc's own KV-cache sampling loop over the learner's own module.

It samples from the module as it is at the call, so it is never stale and `sync` has
nothing to do; it draws from one generator per round, exactly as the loop always has.
"""

from __future__ import annotations

import torch

from specc.runtime.batch import Responder
from specc.runtime.models import end_at_eos, response_logits


class HfEngine:
    name = "hf"

    def __init__(self, respond: Responder, device: torch.device):
        self.respond, self.device = respond, device

    def sync(self, model, step: int | None = None) -> None:
        """Nothing to push: the loop reads the module's current weights."""

    def sample(self, model, prompts, prompt_mask, draw, copies: int = 1, draw_rows=None):
        """(responses, mask): `copies` responses per prompt, copy-major rows (`draw_rows`: a
        rank's share of a batch, see runtime.distributed.draw_rows)."""
        return self.respond(model, prompts, prompt_mask, draw.generator(self.device), copies=copies,
                            draw_rows=draw_rows)

    def sample_keeping(self, keep: str, model, prompts, prompt_mask, draw):
        """((responses, mask), kept): the loop's own logits or log-probs of what it drew."""
        return self.respond.keeping(keep, model, prompts, prompt_mask, draw.generator(self.device))

    @torch.no_grad()
    def greedy(self, model, prompts, prompt_mask=None):
        """(responses, mask): the most likely token at each position, by full forwards (a
        reference for other engines, not a fast path); EOS ends a response as in sampling."""
        responses = prompts.new_zeros(len(prompts), 0)
        for _ in range(self.respond.length):
            logits = response_logits(model, prompts, torch.cat([responses, responses.new_zeros(len(prompts), 1)], 1),
                                     prompt_mask)
            responses = torch.cat([responses, logits[:, -1].float().argmax(-1, keepdim=True)], dim=1)
        return cut(self.respond, responses)

    def sleep(self) -> None:
        """Nothing is held apart from the learner's module."""


def cut(respond: Responder, responses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(responses, mask) as `respond` returns them: cut after the first EOS where the task has one."""
    if respond.eos_id is None:
        return responses, None
    return end_at_eos(responses, respond.eos_id, respond.pad_id)
