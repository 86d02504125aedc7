"""Policy optimisation: a sampler feeds labelled pairs, a loss moves the policy from its init."""

from __future__ import annotations

import torch

from specc.runtime.context import JobContext
from specc.runtime.evaluation import Evaluator
from specc.runtime.losses import preference_loss, sequence_logp
from specc.runtime.loop import Learner, make_optimizer, run_loop
from specc.runtime.models import response_logprobs, save_model
from specc.runtime.samplers import OfflineSampler, OnlineSampler, ReplaySampler


def run_align(ctx: JobContext) -> dict:
    config, train = ctx.config, ctx.config["train"]
    policy = ctx.policy("init")
    reference = ctx.policy("init")  # pi_sft in the paper: the init, frozen
    reference.requires_grad_(False)
    optimizer, scheduler = make_optimizer(policy, train)
    sampler = _make_sampler(ctx, policy)
    loss_cfg = config["loss"]
    evaluator = Evaluator(ctx, policy, reference)

    def step_fn(step: int) -> dict:
        prompts, chosen, rejected, metrics = sampler(step)
        with torch.no_grad():
            ref_chosen = sequence_logp(response_logprobs(reference, prompts, chosen), None, loss_cfg["normalize"])
            ref_rejected = sequence_logp(response_logprobs(reference, prompts, rejected), None, loss_cfg["normalize"])
        # one forward over both sides keeps the two log-prob sums in a single graph
        logps = response_logprobs(policy, torch.cat([prompts, prompts]), torch.cat([chosen, rejected]))
        seq = sequence_logp(logps, None, loss_cfg["normalize"])
        pol_chosen, pol_rejected = seq.chunk(2)
        loss, h = preference_loss(loss_cfg["name"], loss_cfg["beta"], pol_chosen, pol_rejected, ref_chosen, ref_rejected)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if train["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(policy.parameters(), train["grad_clip"])
        optimizer.step()
        scheduler.step()
        return {**metrics, "train/loss": loss.item(), "train/margin_mean": h.mean().item(),
                "train/margin_std": h.std().item() if len(h) > 1 else 0.0,
                "train/logp_chosen": pol_chosen.mean().item(), "train/logp_rejected": pol_rejected.mean().item()}

    learner = Learner(policy, train, step_fn, eval_fn=evaluator, optimizer=optimizer, scheduler=scheduler,
                      save_fn=lambda step: save_model(policy, ctx.job.artifacts / f"policy@{step}.safetensors"),
                      flush_fn=getattr(sampler, "flush", None))
    run_loop(ctx.job, learner, ctx.stop_after)
    save_model(policy, ctx.job.artifacts / "policy.safetensors")
    return {}


def _make_sampler(ctx: JobContext, policy):
    sampler = ctx.config["sampler"]
    if sampler["online"] is not None:
        return OnlineSampler(ctx, policy)
    if sampler["replay"] is not None:
        return ReplaySampler(ctx)
    return OfflineSampler(ctx)
