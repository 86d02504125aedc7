"""Judging stages: oracle (the synthetic task's hidden reward as a judge) and label (relabel pairs)."""

from __future__ import annotations

import numpy as np

from specc.runtime.artifacts import pairs_path, read_pairs, task_info, write_task_info, write_tokens
from specc.runtime.context import JobContext
from specc.runtime.judges import write_oracle


def run_oracle(ctx: JobContext) -> dict:
    info = task_info(ctx.upstream("data"))
    if info["source"] != "synthetic":
        raise ValueError("an oracle stage needs a synthetic task; for real data train a preference_model on D_initial")
    write_oracle(ctx.job, info["task"])
    return {}


def run_label(ctx: JobContext) -> dict:
    """Relabel pairs with the judge. argmax: the judge's preferred side (ties keep the
    original order); sample: a side drawn with the judge's probability."""
    import torch  # torch (and transformers, through batch) only for the stages that need them

    from specc.runtime.batch import masks_of, order_pairs

    data = ctx.upstream("data")
    pairs = {k: torch.from_numpy(v) for k, v in read_pairs(data).items()}
    judge = ctx.judge("judge")
    prompt_mask, chosen_mask, rejected_mask = masks_of(pairs)  # real data: padding masks ride along
    p_first = judge.prob_first(pairs["prompt"], pairs["chosen"], pairs["rejected"],
                               prompt_mask, chosen_mask, rejected_mask)
    if ctx.config["mode"] == "argmax":
        keep = p_first >= 0.5
    else:
        keep = np.random.default_rng(0).random(len(p_first)) < p_first
    relabelled = order_pairs(pairs["prompt"], pairs["chosen"], pairs["rejected"], torch.from_numpy(keep)[:, None],
                             prompt_mask, chosen_mask, rejected_mask)
    write_tokens(pairs_path(ctx.job), {name: values.numpy() for name, values in relabelled.items()})
    write_task_info(ctx.job, task_info(data))
    return {"data/agreement_with_input_labels": float(keep.mean())}
