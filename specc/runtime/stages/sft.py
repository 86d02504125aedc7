"""SFT: maximum likelihood on every response (both sides) of the pair datasets (paper Sec. 3)."""

from __future__ import annotations

import numpy as np
import torch

from specc.runtime.artifacts import read_pairs, task_info
from specc.runtime.context import JobContext
from specc.runtime.loop import Learner, apply_update, batch_indices, make_optimizer, run_loop
from specc.runtime.models import build_policy, response_logprobs, save_model


def run_sft(ctx: JobContext) -> dict:
    train = ctx.config["train"]
    roles = ctx.upstream_roles("data")
    info = task_info(ctx.upstream(roles[0]))
    prompts, responses = [], []
    for role in roles:
        pairs = read_pairs(ctx.upstream(role))
        prompts += [pairs["prompt"], pairs["prompt"]]
        responses += [pairs["chosen"], pairs["rejected"]]
    prompts = torch.from_numpy(np.concatenate(prompts))
    responses = torch.from_numpy(np.concatenate(responses))

    model = build_policy(ctx.config["model"], info["vocab"], info["prompt_len"] + info["response_len"], train["seed"])
    optimizer, scheduler = make_optimizer(model, train)

    def step_fn(step: int) -> dict:
        idx = batch_indices(len(prompts), train["batch_size"], train["seed"], step)
        nll = -response_logprobs(model, prompts[idx], responses[idx]).mean()
        apply_update(model, optimizer, scheduler, nll, train["grad_clip"])
        return {"train/loss": nll.item()}

    learner = Learner(model, train, step_fn, optimizer=optimizer, scheduler=scheduler,
                      save_fn=lambda step: save_model(model, ctx.job.artifacts / f"policy@{step}.safetensors"))
    run_loop(ctx.job, learner, ctx.stop_after)
    save_model(model, ctx.job.artifacts / "policy.safetensors")
    return {}
