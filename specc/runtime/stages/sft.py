"""SFT: maximum likelihood on every response (both sides) of the pair datasets (paper Sec. 3)."""

from __future__ import annotations

import torch

from specc.runtime import distributed
from specc.runtime.artifacts import read_pairs, task_info
from specc.runtime.batch import both_sides, take, to_device
from specc.runtime.context import JobContext, policy_file
from specc.runtime.device import autocast
from specc.runtime.loop import Learner, batch_indices, make_optimizer, run_loop
from specc.runtime.microbatch import accumulated_update, enable_checkpointing, share, total_loss, trimmed
from specc.runtime.models import build_policy, response_logprobs
from specc.runtime.models_hub import resolve_dtype


def run_sft(ctx: JobContext) -> dict:
    learner = build_sft(ctx)
    run_loop(ctx.job, learner, ctx.stop_after)
    learner.save_fn(None)
    return {}


def build_sft(ctx: JobContext) -> Learner:
    """The policy and its update step, ready for `run_loop`."""
    train, device = ctx.config["train"], ctx.device
    roles = ctx.upstream_roles("data")
    info = task_info(ctx.upstream(roles[0]))
    tables = [both_sides({k: torch.from_numpy(v) for k, v in read_pairs(ctx.upstream(role)).items()}) for role in roles]
    data = {"prompt": torch.cat([t.prompt for t in tables]), "response": torch.cat([t.response for t in tables])}
    if tables[0].prompt_mask is not None:  # real data: padded prompts and responses
        data["prompt_mask"] = torch.cat([t.prompt_mask for t in tables])
        data["response_mask"] = torch.cat([t.response_mask for t in tables])

    model = build_policy(ctx.config["model"], info["vocab"], info["prompt_len"] + info["response_len"],
                         train["seed"], device)
    if train.get("grad_checkpointing"):
        enable_checkpointing(model)
    model = distributed.shard(model, device)
    saved_dtype = resolve_dtype(ctx.config["model"]["dtype"])  # float32 masters train, saved in the spec's dtype
    optimizer, scheduler = make_optimizer(model, train)

    def step_fn(step: int) -> dict:
        idx = distributed.share(batch_indices(len(data["prompt"]), train["batch_size"], train["seed"], step))
        batch = to_device(take(data, idx), device)
        # mean over the batch's real response tokens (all of them, for fixed-length synthetic responses)
        real_tokens = batch["response_mask"].sum() if "response_mask" in batch else None

        def loss_of(part: slice):
            rows = trimmed(take(batch, part))
            with autocast(device):
                logps = response_logprobs(model, rows["prompt"], rows["response"], rows.get("response_mask"),
                                          rows.get("prompt_mask"))
            if real_tokens is None:
                return -logps.mean() * share(part, len(idx)), None
            return distributed.token_mean(-logps.sum(), real_tokens), None

        kept = accumulated_update(model, optimizer, scheduler, train, len(idx), loss_of)
        return {"train/loss": distributed.mean(total_loss(kept))}

    def save_fn(step: int | None) -> None:
        distributed.save_policy(model, policy_file(ctx.job, step), saved_dtype)

    return Learner(model, train, step_fn, optimizer=optimizer, scheduler=scheduler, save_fn=save_fn)
