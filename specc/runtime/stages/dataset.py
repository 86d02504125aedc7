"""The dataset stage: the embedded synthetic task, or real preference data (real_dataset)."""

from __future__ import annotations

import numpy as np

from specc.runtime.artifacts import (EXAMPLES_SHOWN, pairs_path, prompts_path, write_examples, write_task_info,
                                     write_tokens)
from specc.runtime.context import JobContext
from specc.runtime.tasks.synthetic import SyntheticTask


def run_dataset(ctx: JobContext) -> dict:
    config = ctx.config
    if config["source"] != "synthetic":
        from specc.runtime.stages.real_dataset import build_real_dataset
        return build_real_dataset(ctx)
    task = SyntheticTask.from_config(config["task"])
    pairs = task.initial_pairs()
    write_tokens(pairs_path(ctx.job), pairs)
    write_tokens(prompts_path(ctx.job, "train"), {"prompt": task.prompts("train")})
    write_tokens(prompts_path(ctx.job, "eval"), {"prompt": task.prompts("eval")})
    write_task_info(ctx.job, {"source": "synthetic", "vocab": task.vocab, "prompt_len": task.prompt_len,
                              "response_len": task.response_len, "task": config["task"]})
    write_examples(ctx.job, [{"prompt": _show(p), "chosen": _show(c), "rejected": _show(r)}
                             for p, c, r in zip(*(pairs[k][:EXAMPLES_SHOWN] for k in ("prompt", "chosen", "rejected")))])
    oracle_agreement = float(np.mean(task.reward(pairs["prompt"], pairs["chosen"])
                                     >= task.reward(pairs["prompt"], pairs["rejected"])))
    return {"pairs": len(pairs["prompt"]), "data/label_agreement_with_oracle": oracle_agreement}


def _show(tokens) -> str:
    return " ".join(f"t{int(t)}" for t in tokens)
