"""Turn text preference records into fixed-width token-id arrays.

Input: records with `.prompt`, `.chosen`, `.rejected` strings (see `loaders.PreferenceRecord`).
Output: int64 numpy arrays ready to be stacked into batches:

    prompt_ids,  prompt_mask     [N, P]  LEFT-padded  (P = max_prompt_tokens)
    chosen_ids,  chosen_mask     [N, R]  RIGHT-padded (R = max_response_tokens)
    rejected_ids, rejected_mask  [N, R]  RIGHT-padded

so that `concat(prompt_ids[i], chosen_ids[i])` is a contiguous prompt -> reply sequence
with padding only on the outside.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def pad_token_id(tokenizer) -> int:
    """The tokenizer's pad id, falling back to EOS (GPT-2 style tokenizers have no pad)."""
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    if tokenizer.eos_token_id is not None:
        return int(tokenizer.eos_token_id)
    raise ValueError("tokenizer has neither a pad token nor an EOS token to pad with")


def keep_prompt_tail(ids: list[int], limit: int, bos_id: int | None) -> list[int]:
    """Keep the last `limit` ids: the end of a prompt (the latest turn) matters most.

    A leading BOS added by the tokenizer survives truncation, since models expect it first.
    """
    if len(ids) <= limit:
        return ids
    if bos_id is not None and ids and ids[0] == bos_id and limit > 1:
        return [bos_id] + ids[len(ids) - (limit - 1):]
    return ids[len(ids) - limit:] if limit > 0 else []


def terminate_response(ids: list[int], limit: int, eos_id: int | None) -> list[int]:
    """Append EOS, then keep the first `limit` ids.

    A reply longer than `limit - 1` tokens therefore ends WITHOUT EOS: it was cut, so the
    model must not learn to stop there.
    """
    ids = ids + [eos_id] if eos_id is not None else ids
    return ids[:limit]


def _pack(rows: Sequence[list[int]], width: int, pad_id: int, left: bool) -> tuple[np.ndarray, np.ndarray]:
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span] = row
        mask[i, span] = 1
    return ids, mask


def _encode(tokenizer, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
    if not texts:
        return []
    # verbose=False: over-long texts are expected here, we truncate them ourselves.
    return tokenizer(texts, add_special_tokens=add_special_tokens, verbose=False)["input_ids"]


def encode_preferences(records: Iterable, tokenizer, *, max_prompt_tokens: int,
                       max_response_tokens: int) -> dict[str, np.ndarray]:
    """Tokenize preference records into padded int64 arrays (see module docstring for layout).

    Truncation semantics:
    - prompts are encoded with the tokenizer's special tokens (e.g. BOS) and, when longer than
      `max_prompt_tokens`, cut from the LEFT: the end of the prompt is kept, plus a leading BOS;
    - responses are encoded without special tokens, EOS is appended when the tokenizer has one,
      and the result is cut from the RIGHT to `max_response_tokens`; a cut response has no EOS;
    - padding uses the pad id, or EOS when the tokenizer has no pad; masks are 1 on real
      tokens (an EOS that ends a response is real, even when EOS is also the pad id).
    """
    if max_prompt_tokens < 1 or max_response_tokens < 1:
        raise ValueError(f"max_prompt_tokens and max_response_tokens must be >= 1, "
                         f"got {max_prompt_tokens} and {max_response_tokens}")
    records = list(records)
    pad_id = pad_token_id(tokenizer)
    bos_id, eos_id = tokenizer.bos_token_id, tokenizer.eos_token_id

    prompts = [keep_prompt_tail(ids, max_prompt_tokens, bos_id)
               for ids in _encode(tokenizer, [r.prompt for r in records], add_special_tokens=True)]
    out = dict(zip(("prompt_ids", "prompt_mask"), _pack(prompts, max_prompt_tokens, pad_id, left=True)))
    for side in ("chosen", "rejected"):
        texts = [getattr(r, side) for r in records]
        replies = [terminate_response(ids, max_response_tokens, eos_id)
                   for ids in _encode(tokenizer, texts, add_special_tokens=False)]
        ids, mask = _pack(replies, max_response_tokens, pad_id, left=False)
        out[f"{side}_ids"], out[f"{side}_mask"] = ids, mask
    return out
