"""Policy optimisation: a sampler feeds labelled pairs, a loss moves the policy from its init."""

from __future__ import annotations

from typing import Callable

import torch

from specc.runtime.context import JobContext
from specc.runtime.evaluation import Evaluator
from specc.runtime.losses import preference_loss, sequence_logp
from specc.runtime.loop import Learner, apply_update, batch_indices, make_optimizer, run_loop
from specc.runtime.models import response_logprobs, save_model
from specc.runtime.samplers import OfflineSampler, OnlineSampler, ReplaySampler

PRECOMPUTE_BATCH = 256  # pairs per reference forward when precomputing (512 sequences)


def run_align(ctx: JobContext) -> dict:
    learner = build_align(ctx)
    run_loop(ctx.job, learner, ctx.stop_after)
    save_model(learner.model, ctx.job.artifacts / "policy.safetensors")
    return {}


def build_align(ctx: JobContext) -> Learner:
    """The policy, its update step and its evaluation, ready for `run_loop` (benchmarks call
    `step_fn` and `eval_fn` directly)."""
    config, train = ctx.config, ctx.config["train"]
    policy = ctx.policy("init")
    reference = ctx.policy("init")  # pi_sft in the paper: the init, frozen
    reference.requires_grad_(False)
    optimizer, scheduler = make_optimizer(policy, train)
    sampler = _make_sampler(ctx, policy)
    loss_cfg = config["loss"]
    reference_logps = ReferenceLogps(reference, loss_cfg["normalize"], sampler, train)
    evaluator = Evaluator(ctx, policy, reference)

    def step_fn(step: int) -> dict:
        prompts, chosen, rejected, metrics = sampler(step)
        # one forward over both sides keeps the two log-prob sums in a single graph
        both_prompts, both_responses = torch.cat([prompts, prompts]), torch.cat([chosen, rejected])
        ref_chosen, ref_rejected = reference_logps(step, both_prompts, both_responses)
        logps = response_logprobs(policy, both_prompts, both_responses)
        pol_chosen, pol_rejected = sequence_logp(logps, None, loss_cfg["normalize"]).chunk(2)
        loss, h = preference_loss(loss_cfg["name"], loss_cfg["beta"], pol_chosen, pol_rejected, ref_chosen, ref_rejected)
        apply_update(policy, optimizer, scheduler, loss, train["grad_clip"])
        return {**metrics, "train/loss": loss.item(), "train/margin_mean": h.mean().item(),
                "train/margin_std": h.std().item() if len(h) > 1 else 0.0,
                "train/logp_chosen": pol_chosen.mean().item(), "train/logp_rejected": pol_rejected.mean().item()}

    return Learner(policy, train, step_fn, eval_fn=evaluator, optimizer=optimizer, scheduler=scheduler,
                   save_fn=lambda step: save_model(policy, ctx.job.artifacts / f"policy@{step}.safetensors"),
                   flush_fn=getattr(sampler, "flush", None))


class ReferenceLogps:
    """The frozen reference's sequence log-probs of a step's pairs, as (chosen, rejected).

    Offline and replay samplers draw rows of a fixed table of pairs. When a run visits at
    least as many pairs as the table holds, each pair's reference log-probs are computed
    once, up front, in large batches, and looked up by row: the reference forward (a
    quarter of an offline step) leaves the step. Rows do not interact in a forward, so a
    looked-up value is bit-identical to one computed inside the step's batch, and results
    do not depend on the path a run takes (the exact-replay test compares an online run,
    reference in the step, with its precomputed replay). Online pairs are new every step
    and always go through the forward."""

    def __init__(self, reference, normalize: str, sampler, train: dict):
        self.reference, self.normalize = reference, normalize
        self.table, self.rows = None, None
        source = _pair_table(sampler, train)
        if source is not None and train["steps"] * train["batch_size"] >= len(source[0]["prompt"]):
            self.pairs, self.rows = source
            self.table = self._precompute(self.pairs)

    def __call__(self, step: int, both_prompts: torch.Tensor, both_responses: torch.Tensor):
        """`both_*`: the step's chosen rows, then its rejected rows."""
        if self.table is not None:
            rows = self.rows(step)
            half = len(rows)
            # a guard, not a lookup key: if the sampler ever drew differently, compute instead
            if (torch.equal(self.pairs["prompt"][rows], both_prompts[:half])
                    and torch.equal(self.pairs["chosen"][rows], both_responses[:half])
                    and torch.equal(self.pairs["rejected"][rows], both_responses[half:])):
                return self.table[0][rows], self.table[1][rows]
        with torch.no_grad():
            return self._sequence_logps(both_prompts, both_responses).chunk(2)

    def _sequence_logps(self, prompts, responses) -> torch.Tensor:
        return sequence_logp(response_logprobs(self.reference, prompts, responses), None, self.normalize)

    @torch.no_grad()
    def _precompute(self, pairs) -> tuple[torch.Tensor, torch.Tensor]:
        chosen, rejected = [], []
        for i in range(0, len(pairs["prompt"]), PRECOMPUTE_BATCH):
            prompts = pairs["prompt"][i:i + PRECOMPUTE_BATCH]
            responses = torch.cat([pairs["chosen"][i:i + PRECOMPUTE_BATCH], pairs["rejected"][i:i + PRECOMPUTE_BATCH]])
            c, r = self._sequence_logps(torch.cat([prompts, prompts]), responses).chunk(2)
            chosen.append(c)
            rejected.append(r)
        return torch.cat(chosen), torch.cat(rejected)


def _pair_table(sampler, train: dict) -> tuple[dict, Callable[[int], torch.Tensor]] | None:
    """The table a sampler draws from and the rows it draws at a step, where it has one."""
    batch = train["batch_size"]
    if isinstance(sampler, OfflineSampler):
        n = len(sampler.pairs["prompt"])
        return sampler.pairs, lambda step: batch_indices(n, batch, train["seed"], step)
    if isinstance(sampler, ReplaySampler):
        return sampler.data, lambda step: torch.arange(step * batch, (step + 1) * batch)
    return None


def _make_sampler(ctx: JobContext, policy):
    sampler = ctx.config["sampler"]
    if sampler["online"] is not None:
        return OnlineSampler(ctx, policy)
    if sampler["replay"] is not None:
        return ReplaySampler(ctx)
    return OfflineSampler(ctx)
