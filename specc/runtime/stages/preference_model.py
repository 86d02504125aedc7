"""Train a preference model on labelled pairs (App. A): the proxy judge, or a golden one on D_initial.

Real data carries masks (`prompt_mask`, `chosen_mask`, `rejected_mask`); they go to the
model with the tokens, and travel with their responses when a pair is shown swapped.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from specc.runtime import distributed
from specc.runtime.artifacts import read_pairs, task_info
from specc.runtime.batch import masks_of, take
from specc.runtime.context import JobContext
from specc.runtime.device import autocast
from specc.runtime.loop import Learner, batch_indices, make_optimizer, run_loop, step_generator
from specc.runtime.microbatch import accumulated_update, enable_checkpointing, share, total_loss, trimmed
from specc.runtime.preference_models import build_preference_model, load_preference_model, save_preference_model

HELD_OUT = 0.1  # share of pairs kept for validation accuracy


def run_preference_model(ctx: JobContext) -> dict:
    learner = build_preference_model_learner(ctx)
    run_loop(ctx.job, learner, ctx.stop_after)
    model = learner.model
    if distributed.world() == 1:
        save_preference_model(model.cpu(), ctx.job)
        return {}
    state = distributed.full_state(model)
    if distributed.is_main():
        save_preference_model(model, ctx.job, state=state)
    distributed.barrier()
    return {}


def build_preference_model_learner(ctx: JobContext) -> Learner:
    """The judge, its update step and its validation accuracy, ready for `run_loop`."""
    config, train = ctx.config, ctx.config["train"]
    info = task_info(ctx.upstream("data"))
    pairs = {k: torch.from_numpy(v) for k, v in read_pairs(ctx.upstream("data")).items()}
    n_val = max(1, int(len(pairs["prompt"]) * HELD_OUT))
    val = {k: v[-n_val:] for k, v in pairs.items()}
    fit = {k: v[:-n_val] for k, v in pairs.items()}
    torch.manual_seed(train["seed"])
    model = build_preference_model(config["form"], config["model"], info)
    if ctx.has("init"):
        _initialise(model, ctx)
    if train.get("grad_checkpointing"):
        enable_checkpointing(model)
    model = distributed.shard(model.to(ctx.device), ctx.device)
    optimizer, scheduler = make_optimizer(model, train)

    def step_fn(step: int) -> dict:
        every = batch_indices(len(fit["prompt"]), train["batch_size"], train["seed"], step)
        idx = distributed.share(every)  # this rank's rows (all of them on one process)
        batch = {k: v[idx] for k, v in fit.items()}
        # Eq. 5 (pairwise): present the pair in a random order, predict which side won
        chosen_first = distributed.share(torch.rand(len(every), generator=step_generator(train["seed"], "order", step))
                                         < 0.5)

        def loss_of(part: slice):
            rows = trimmed(take(batch, part))
            with autocast(ctx.device):
                if config["form"] == "pointwise":
                    loss = -F.logsigmoid(model.logit(rows["prompt"], rows["chosen"], rows["rejected"],
                                                     *masks_of(rows)).float()).mean()
                else:
                    logit = model.logit(*shown_in_order(rows, chosen_first[part])).float()
                    loss = F.binary_cross_entropy_with_logits(logit, chosen_first[part].float().to(logit.device))
            return loss * share(part, len(idx)), None

        return {"train/loss": distributed.mean(total_loss(accumulated_update(model, optimizer, scheduler, train,
                                                                             len(idx), loss_of)))}

    def eval_fn(step: int) -> dict:
        p = model.prob_first(val["prompt"], val["chosen"], val["rejected"], *masks_of(val))
        return {"eval/judge_accuracy": float(np.mean(np.where(p == 0.5, 0.5, p > 0.5)))}

    return Learner(model, train, step_fn, eval_fn=eval_fn, optimizer=optimizer, scheduler=scheduler)


def _initialise(model, ctx: JobContext) -> None:
    """Start from a policy (its transformer), or continue another judge of the same shape."""
    init = ctx.upstream("init")
    if not (init.artifacts / "judge.json").exists():
        model.init_from_policy(ctx.policy("init"))
        return
    previous = load_preference_model(init)
    if previous.form != model.form or previous.max_len != model.max_len:
        raise ValueError(f"init: judge {ctx.job_json['upstream']['init']} is {previous.form} over {previous.max_len} "
                         f"positions; this one is {model.form} over {model.max_len}: they must match")
    try:
        model.load_state_dict(previous.state_dict())
    except RuntimeError as err:
        raise ValueError(f"init: the judge being continued has another architecture ({err})") from None


def shown_in_order(batch: dict, chosen_first: torch.Tensor) -> tuple:
    """`logit` arguments for the pair shown as (chosen, rejected) where `chosen_first`, else
    swapped: (prompts, first, second, prompt_mask, first_mask, second_mask)."""
    def pick(a, b):
        return None if a is None else torch.where(chosen_first[:, None], a, b)

    prompt_mask, chosen_mask, rejected_mask = masks_of(batch)
    return (batch["prompt"], pick(batch["chosen"], batch["rejected"]), pick(batch["rejected"], batch["chosen"]),
            prompt_mask, pick(chosen_mask, rejected_mask), pick(rejected_mask, chosen_mask))
