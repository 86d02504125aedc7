"""SFT: maximum likelihood on every response (both sides) of the pair datasets (paper Sec. 3)."""

from __future__ import annotations

import torch

from specc.runtime import distributed
from specc.runtime.artifacts import read_pairs, task_info
from specc.runtime.batch import both_sides, take, to_device
from specc.runtime.context import JobContext, policy_file
from specc.runtime.device import autocast
from specc.runtime.loop import Learner, apply_update, batch_indices, make_optimizer, run_loop
from specc.runtime.models import build_policy, response_logprobs
from specc.runtime.models_hub import resolve_dtype


def run_sft(ctx: JobContext) -> dict:
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
    model = distributed.shard(model, device)
    saved_dtype = resolve_dtype(ctx.config["model"]["dtype"])  # float32 masters train, saved in the spec's dtype
    optimizer, scheduler = make_optimizer(model, train)

    def step_fn(step: int) -> dict:
        idx = distributed.share(batch_indices(len(data["prompt"]), train["batch_size"], train["seed"], step))
        rows = to_device(take(data, idx), device)
        with autocast(device):
            logps = response_logprobs(model, rows["prompt"], rows["response"], rows.get("response_mask"),
                                      rows.get("prompt_mask"))
        # mean over real response tokens (all of them, for fixed-length synthetic responses)
        nll = (-logps.mean() if "response_mask" not in rows
               else distributed.token_mean(-logps.sum(), rows["response_mask"].sum()))
        apply_update(model, optimizer, scheduler, nll, train["grad_clip"])
        return {"train/loss": distributed.mean(nll)}

    def save_fn(step: int | None) -> None:
        distributed.save_policy(model, policy_file(ctx.job, step), saved_dtype)

    learner = Learner(model, train, step_fn, optimizer=optimizer, scheduler=scheduler, save_fn=save_fn)
    run_loop(ctx.job, learner, ctx.stop_after)
    learner.save_fn(None)
    return {}
