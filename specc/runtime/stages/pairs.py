"""D_{a vs b} (Sec. 6): one response from each of two policies per prompt, judged by the golden judge."""

from __future__ import annotations

import numpy as np
import torch

from specc.runtime.artifacts import pairs_path, read_prompts, task_info, write_task_info, write_tokens
from specc.runtime.context import JobContext
from specc.runtime.judges import load_judge
from specc.runtime.loop import step_generator
from specc.runtime.models import sample

BATCH = 256


def run_pairs(ctx: JobContext) -> dict:
    info = task_info(ctx.upstream("prompts"))
    prompts = torch.from_numpy(read_prompts(ctx.upstream("prompts"), "train"))
    order = torch.randperm(len(prompts), generator=step_generator(ctx.config["seed"], "prompts", 0))
    prompts = prompts[order[: ctx.config["count"]]]
    a, b = ctx.policy("a"), ctx.policy("b")
    first = _sample_all(a, prompts, info["response_len"], ctx.config["seed"], "a")
    second = _sample_all(b, prompts, info["response_len"], ctx.config["seed"], "b")
    a_wins = load_judge(ctx.upstream("judge")).prob_first(prompts, first, second) >= 0.5
    keep = torch.from_numpy(np.asarray(a_wins))[:, None]
    write_tokens(pairs_path(ctx.job), {"prompt": prompts.numpy(),
                                       "chosen": torch.where(keep, first, second).numpy(),
                                       "rejected": torch.where(keep, second, first).numpy()})
    write_task_info(ctx.job, info)
    return {"data/a_win_rate": float(np.mean(a_wins))}


def _sample_all(policy, prompts, length, seed, purpose):
    return torch.cat([sample(policy, prompts[i:i + BATCH], length, step_generator(seed, purpose, i))
                      for i in range(0, len(prompts), BATCH)])
