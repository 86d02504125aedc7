"""Train a preference model on labelled pairs (App. A): the proxy judge, or a golden one on D_initial."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from specc.runtime.artifacts import read_pairs, task_info
from specc.runtime.context import JobContext
from specc.runtime.loop import Learner, apply_update, batch_indices, make_optimizer, run_loop, step_generator
from specc.runtime.preference import PreferenceModel, save_preference_model

HELD_OUT = 0.1  # share of pairs kept for validation accuracy


def run_preference_model(ctx: JobContext) -> dict:
    config, train = ctx.config, ctx.config["train"]
    info = task_info(ctx.upstream("data"))
    pairs = {k: torch.from_numpy(v) for k, v in read_pairs(ctx.upstream("data")).items()}
    n_val = max(1, int(len(pairs["prompt"]) * HELD_OUT))
    val = {k: v[-n_val:] for k, v in pairs.items()}
    fit = {k: v[:-n_val] for k, v in pairs.items()}
    max_len = info["prompt_len"] + 2 * info["response_len"] + 1
    torch.manual_seed(train["seed"])
    model = PreferenceModel(config["form"], config["model"]["size"], info["vocab"], max_len)
    if ctx.has("init"):
        model.init_from_policy(ctx.policy("init"))
    optimizer, scheduler = make_optimizer(model, train)

    def step_fn(step: int) -> dict:
        idx = batch_indices(len(fit["prompt"]), train["batch_size"], train["seed"], step)
        prompts, chosen, rejected = fit["prompt"][idx], fit["chosen"][idx], fit["rejected"][idx]
        if config["form"] == "pointwise":
            loss = -F.logsigmoid(model.logit(prompts, chosen, rejected)).mean()
        else:  # Eq. 5: present the pair in a random order, predict which side won
            chosen_first = torch.rand(len(idx), generator=step_generator(train["seed"], "order", step)) < 0.5
            first = torch.where(chosen_first[:, None], chosen, rejected)
            second = torch.where(chosen_first[:, None], rejected, chosen)
            loss = F.binary_cross_entropy_with_logits(model.logit(prompts, first, second), chosen_first.float())
        apply_update(model, optimizer, scheduler, loss, train["grad_clip"])
        return {"train/loss": loss.item()}

    def eval_fn(step: int) -> dict:
        p = model.prob_first(val["prompt"], val["chosen"], val["rejected"])
        return {"eval/judge_accuracy": float(np.mean(np.where(p == 0.5, 0.5, p > 0.5)))}

    learner = Learner(model, train, step_fn, eval_fn=eval_fn, optimizer=optimizer, scheduler=scheduler)
    run_loop(ctx.job, learner, ctx.stop_after)
    save_preference_model(model, ctx.job, {"form": config["form"], "size": config["model"]["size"],
                                           "vocab": info["vocab"], "max_len": max_len})
    return {}
