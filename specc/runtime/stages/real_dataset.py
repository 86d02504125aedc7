"""A dataset stage over real preference data (Anthropic HH, TL;DR, Chatbot Arena, generic files).

Records are read by `data.loaders` (local files, or a hub name when the
network allows), tokenized to fixed widths with masks by `data.tokenize`,
and written in the same artifact layout as the synthetic task, plus mask
columns. A deterministic tenth of the prompts is held out for evaluation.
"""

from __future__ import annotations

import numpy as np

from specc.contracts import local_path
from specc.runtime.artifacts import EXAMPLES_SHOWN, pairs_path, prompts_path, write_examples, write_task_info, write_tokens
from specc.runtime.context import JobContext

HELD_OUT = 0.1


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    path = local_path(name)
    tokenizer = AutoTokenizer.from_pretrained(str(path) if path else name, local_files_only=path is not None)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_real_dataset(ctx: JobContext) -> dict:
    from specc.runtime.data.loaders import load_preferences
    from specc.runtime.data.tokenize import encode_preferences

    config = ctx.config
    records = load_preferences(config["format"], path=config["path"], hub_name=config["hub_name"],
                               split=config["split"], subset=config["subset"], limit=config["limit"])
    if records.dropped_note():
        ctx.job.add_note(records.dropped_note())
    if len(records) < 2:
        raise ValueError(f"{config['path'] or config['hub_name']}: {len(records)} usable records; need at least 2")
    tokenizer = load_tokenizer(config["tokenizer"])
    enc = encode_preferences(records, tokenizer, max_prompt_tokens=config["max_prompt_tokens"],
                             max_response_tokens=config["max_response_tokens"])
    pairs = {"prompt": enc["prompt_ids"], "chosen": enc["chosen_ids"], "rejected": enc["rejected_ids"]}
    masks = {"prompt_mask": enc["prompt_mask"], "chosen_mask": enc["chosen_mask"], "rejected_mask": enc["rejected_mask"]}
    write_tokens(pairs_path(ctx.job), {**pairs, **masks})
    n_eval = max(1, int(len(records) * HELD_OUT))
    order = np.random.default_rng(0).permutation(len(records))
    for split, idx in (("train", np.sort(order[n_eval:])), ("eval", np.sort(order[:n_eval]))):
        write_tokens(prompts_path(ctx.job, split), {"prompt": pairs["prompt"][idx], "prompt_mask": masks["prompt_mask"][idx]})
    write_task_info(ctx.job, {"source": config["source"], "vocab": len(tokenizer), "prompt_len": config["max_prompt_tokens"],
                              "response_len": config["max_response_tokens"], "pad_id": tokenizer.pad_token_id,
                              "eos_id": tokenizer.eos_token_id, "tokenizer": config["tokenizer"]})
    write_examples(ctx.job, [{"prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected}
                             for r in records[:EXAMPLES_SHOWN]])
    return {"pairs": len(records), "dropped": records.dropped}
