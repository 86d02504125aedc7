"""D_{a vs b} (Sec. 6): one response from each of two policies per prompt, judged by the golden judge."""

from __future__ import annotations

import numpy as np
import torch

from specc.runtime.artifacts import pairs_path, read_prompt_set, task_info, write_task_info, write_tokens
from specc.runtime.batch import Responder, mask, order_pairs, take, to_device
from specc.runtime.context import JobContext
from specc.runtime.device import autocast
from specc.runtime.engines import Draw, open_engine
from specc.runtime.loop import step_generator

BATCH = 256


def run_pairs(ctx: JobContext) -> dict:
    info = task_info(ctx.upstream("prompts"))
    prompts, prompt_mask = read_prompt_set(ctx.upstream("prompts"), "train")
    order = torch.randperm(len(prompts), generator=step_generator(ctx.config["seed"], "prompts", 0))
    rows = order[: ctx.config["count"]].numpy()
    table = {"prompt": torch.from_numpy(prompts[rows])}
    if prompt_mask is not None:
        table["prompt_mask"] = torch.from_numpy(prompt_mask[rows])
    engine = open_engine(ctx.config.get("engine", "hf"), Responder.for_task(info), ctx.device, prompts.shape[1])
    first = _sample_all(ctx.policy("a"), table, engine, ctx.config["seed"], "a", ctx.device)
    second = _sample_all(ctx.policy("b"), table, engine, ctx.config["seed"], "b", ctx.device)
    engine.sleep()
    a_wins = ctx.judge("judge").prob_first(table["prompt"], first[0], second[0],
                                                           prompt_mask=mask(table, "prompt"),
                                                           first_mask=first[1], second_mask=second[1]) >= 0.5
    pairs = order_pairs(table["prompt"], first[0], second[0], torch.from_numpy(np.asarray(a_wins))[:, None],
                        mask(table, "prompt"), first[1], second[1])
    write_tokens(pairs_path(ctx.job), {name: values.numpy() for name, values in pairs.items()})
    write_task_info(ctx.job, info)
    return {"data/a_win_rate": float(np.mean(a_wins))}


def _sample_all(policy, table, engine, seed, purpose, device):
    """(responses, mask) on the CPU, sampled in batches of BATCH prompts."""
    responses, masks = [], []
    for i in range(0, len(table["prompt"]), BATCH):
        rows = to_device(take(table, slice(i, i + BATCH)), device)
        with autocast(device):
            out, out_mask = engine.sample(policy, rows["prompt"], mask(rows, "prompt"), Draw(seed, purpose, i))
        responses.append(out.cpu())
        masks.append(None if out_mask is None else out_mask.cpu())
    return torch.cat(responses), None if masks[0] is None else torch.cat(masks)
