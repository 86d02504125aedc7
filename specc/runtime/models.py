"""Policies: tiny GPT-2 models built from config, log-probs and KV-cache sampling.

Sequences are `prompt ++ response`. Masks are optional: the synthetic task
has fixed lengths, real data is left-padded prompts and right-padded
responses (see runtime.data.tokenize).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

from specc.runtime import gpt2

# Without gradients, large batches run in chunks of rows, whose activations stay close to a
# core's cache: a 512-row forward of the S model is ~1.8x faster in chunks of 64 on a 2-core
# EPYC (1 MB L2 per core). Rows never interact in a forward, so the results are the same bits.
ROWS_PER_FORWARD = 64
ROWS_PER_DECODE = 256  # sampling: a step's activations are small, but the KV cache grows
ROWS_PER_SAMPLE = 16  # padded (real) prompts sampled at once, each chunk to the end: its KV cache bounds memory

TINY_ACTIVATION = "gelu_pytorch_tanh"
# name -> (width, layers, heads)
TINY_SIZES = {"XS": (32, 1, 2), "S": (64, 2, 4), "M": (128, 2, 4), "L": (192, 3, 6)}


def tiny_config(size: str, vocab: int, max_len: int) -> GPT2Config:
    width, layers, heads = TINY_SIZES[size]
    return GPT2Config(vocab_size=vocab, n_positions=max_len, n_embd=width, n_layer=layers, n_head=heads,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,  # no dropout: determinism, and RL practice
                      # GPT-2's tanh GELU as one fused kernel (gelu_new computes the same function in five ops)
                      activation_function=TINY_ACTIVATION,
                      bos_token_id=None, eos_token_id=None, pad_token_id=None, tie_word_embeddings=True)


def build_policy(model_cfg: dict, vocab: int, max_len: int, seed: int, device: torch.device | str = "cpu"):
    """A policy to train: float32 master weights on `device` whatever the spec's dtype (the
    dtype it computes in on a GPU and is saved in, see `save_model`)."""
    if model_cfg["family"] != "tiny":
        from specc.runtime.models_hub import load_causal_lm
        model = load_causal_lm(model_cfg["name"], dtype="float32", device=device)[0]
        if model.get_input_embeddings().num_embeddings < vocab:
            raise ValueError(f"{model_cfg['name']}: {model.get_input_embeddings().num_embeddings} token embeddings, "
                             f"but the dataset's tokenizer has {vocab} ids: use the model's own tokenizer")
        check_positions(model, max_len, model_cfg["name"])
        return model.train()
    torch.manual_seed(seed)  # transformers initialises from the global generator
    model = GPT2LMHeadModel(tiny_config(model_cfg["size"], vocab, max_len))
    return model.to(device)


def master_weights(model):
    """`model` with float32 parameters: what an optimiser may update. AdamW on bfloat16 weights
    rounds most small updates away (at lr 1e-5 a bf16 weight near 1 moves by 0 in ~85% of
    steps), so a bf16 model is trained through float32 masters and computes in bf16 autocast."""
    if any(p.dtype != torch.float32 for p in model.parameters()):
        model.float()
    return model


def weights_dtype(model) -> torch.dtype:
    return next(model.parameters()).dtype


def check_positions(model, max_len: int, name: str) -> None:
    """A prompt plus response longer than the model's position table would fail deep inside the
    forward pass (IndexError): say which settings to shorten instead."""
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if limit is not None and max_len > limit:
        raise ValueError(f"{name}: prompt + response is {max_len} tokens, but the model has {limit} positions: "
                         "lower the dataset's max_prompt_tokens / max_response_tokens")


def save_model(model, path: Path, dtype: torch.dtype | None = None, state: dict | None = None) -> None:
    """Weights (in `dtype`, default their own) and config in one safetensors file; a tied
    output layer is stored once. The temporary file is unique per process. `state`: the
    model's whole state dict where the model itself holds shards of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    output = model.get_output_embeddings()
    tied = output is not None and output.weight is model.get_input_embeddings().weight
    state = model.state_dict() if state is None else state
    state = {k: v.to(dtype or v.dtype).contiguous() for k, v in state.items() if not (tied and k == "lm_head.weight")}
    save_file(state, str(tmp), metadata={"config": model.config.to_json_string()})
    tmp.replace(path)


def load_model(path: Path, device: torch.device | str = "cpu"):
    """A policy saved by `save_model`, in its saved dtype, built on `device` and filled tensor
    by tensor from the file (no full copy of the weights on the host): tiny GPT-2s and any
    hub causal LM, rebuilt from the stored config (nothing is downloaded)."""
    import json

    from safetensors import safe_open
    with safe_open(str(path), "pt", device=str(device)) as fh:
        config = json.loads(fh.metadata()["config"])
        names = list(fh.keys())
        dtype = fh.get_slice(names[0]).get_dtype() if names else "F32"
        with torch.device(device):
            model = _from_config(config, _SAFETENSORS_DTYPES.get(dtype, torch.float32))
        own = model.state_dict()
        with torch.no_grad():
            for name in names:
                if name in own:
                    own[name].copy_(fh.get_tensor(name))
    model.tie_weights()
    return model


_SAFETENSORS_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def _from_config(config: dict, dtype: torch.dtype):
    if config.get("model_type", "gpt2") == "gpt2":
        return GPT2LMHeadModel(GPT2Config.from_dict(config)).to(dtype)
    from transformers import AutoConfig, AutoModelForCausalLM
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=dtype)


def response_logits(model, prompts: torch.Tensor, responses: torch.Tensor,
                    prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token logits at each response position: [B, R, V].

    `prompt_mask` (1 = real token) marks left padding of real-data prompts; responses are
    right-padded, which causal attention never lets reach the positions before it."""
    tokens = torch.cat([prompts, responses], dim=1)
    if prompt_mask is None and gpt2.is_plain_lm(model):
        return _gpt2_logits(model, tokens)[:, prompts.shape[1] - 1: -1]
    if not torch.is_grad_enabled() and len(tokens) > ROWS_PER_FORWARD:
        return in_row_chunks(lambda *rows: response_logits(model, *rows), prompts, responses, prompt_mask)
    extra = {}
    if prompt_mask is not None:
        attention = torch.cat([prompt_mask, torch.ones_like(responses)], dim=1)
        extra = {"attention_mask": attention, "position_ids": positions(attention)}
    # no KV cache, and logits only at the positions read (a 1,024-token prompt's would be 8x the rest)
    logits = model(input_ids=tokens, use_cache=False, logits_to_keep=responses.shape[1] + 1, **extra).logits
    return logits[:, :-1]


def in_row_chunks(fn, *tensors) -> torch.Tensor:
    """`fn` over ROWS_PER_FORWARD rows of `tensors` at a time (None passes through as None),
    the results concatenated: a gradient-free forward over many rows holds one chunk's
    activations at a time."""
    n = ROWS_PER_FORWARD
    return torch.cat([fn(*(None if t is None else t[i:i + n] for t in tensors))
                      for i in range(0, len(tensors[0]), n)])


def shared_prompt_logprobs(model, prompts: torch.Tensor, responses: torch.Tensor,
                           response_mask: torch.Tensor | None = None,
                           prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
    """log pi(y_t | x, y_<t) per token [kB, R] of k responses per prompt: `prompts` [B, P],
    `responses` [kB, R] (all first responses, then all second ones, ...). Each prompt is
    computed once and its keys and values serve its k responses: a pair costs P + 2(R - 1)
    positions instead of 2(P + R). Equal to `response_logprobs` on the prompt repeated k
    times up to float rounding (another attention shape, gradients summed over copies)."""
    logits = _shared_prompt_logits(model, prompts, responses, prompt_mask)
    token_logps = token_logprobs(logits, responses)
    return token_logps if response_mask is None else token_logps * response_mask


def _shared_prompt_logits(model, prompts, responses, prompt_mask):
    copies = len(responses) // len(prompts)
    if not torch.is_grad_enabled() and len(responses) > ROWS_PER_FORWARD:
        return _in_prompt_chunks(_shared_prompt_logits, model, prompts, responses, prompt_mask)
    if prompt_mask is None and gpt2.is_plain_lm(model):
        hidden, cache = gpt2.forward(model.transformer, prompts)
        last = hidden[:, -1:].repeat(copies, 1, 1)  # predicts each response's first token
        if responses.shape[1] > 1:
            rest, _ = gpt2.forward(model.transformer, responses[:, :-1], _repeat_cache(cache, copies))
            last = torch.cat([last, rest], dim=1)
        return F.linear(last, model.lm_head.weight)
    return _shared_prompt_logits_hf(model, prompts, responses, prompt_mask, copies)


def shared_prompt_hidden(body, prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor | None:
    """Final hidden states [kB, R, d] at the response positions of `prompts` [B, P] followed by
    each of their k responses [kB, R], the prompts computed once; None where the body is not
    one specc runs itself (a plain GPT-2)."""
    if not gpt2.is_plain_body(body):
        return None
    if not torch.is_grad_enabled() and len(responses) > ROWS_PER_FORWARD:
        return _in_prompt_chunks(lambda b, p, r, _: shared_prompt_hidden(b, p, r), body, prompts, responses, None)
    _, cache = gpt2.forward(body, prompts)
    return gpt2.forward(body, responses, _repeat_cache(cache, len(responses) // len(prompts)))[0]


def _in_prompt_chunks(fn, model, prompts, responses, prompt_mask):
    """`fn` over chunks of prompts with their k responses each, as large as the other
    gradient-free forwards; rows stay copy-major."""
    copies = len(responses) // len(prompts)
    per_chunk = max(1, ROWS_PER_FORWARD // copies)
    by_copy = responses.view(copies, len(prompts), -1)
    chunks = [fn(model, prompts[i:i + per_chunk], by_copy[:, i:i + per_chunk].reshape(-1, responses.shape[1]),
                 None if prompt_mask is None else prompt_mask[i:i + per_chunk])
              for i in range(0, len(prompts), per_chunk)]
    return torch.cat([c.view(copies, -1, *c.shape[1:]) for c in chunks], dim=1).flatten(0, 1)


def _shared_prompt_logits_hf(model, prompts, responses, prompt_mask, copies):
    """Any transformers causal LM: the prompt's KV cache, repeated per copy, continued by the
    responses (all but their last token, whose next-token logits nobody needs). Under
    transformers' gradient checkpointing a training forward keeps no cache: the prompt is then
    computed with each response."""
    if model.training and getattr(model, "is_gradient_checkpointing", False):  # with or without gradients
        return response_logits(model, prompts.repeat(copies, 1), responses,
                               None if prompt_mask is None else prompt_mask.repeat(copies, 1))
    prompt_mask = torch.ones_like(prompts) if prompt_mask is None else prompt_mask.long()
    out = model(input_ids=prompts, attention_mask=prompt_mask, position_ids=positions(prompt_mask),
                use_cache=True, logits_to_keep=1)
    first = out.logits[:, -1:].repeat(copies, 1, 1)
    if responses.shape[1] == 1:
        return first
    past = _repeat_cache(out.past_key_values, copies)
    rest_len = responses.shape[1] - 1
    attention = torch.cat([prompt_mask.repeat(copies, 1), prompt_mask.new_ones(len(responses), rest_len)], dim=1)
    next_position = prompt_mask.sum(-1, keepdim=True).repeat(copies, 1)
    rest = model(input_ids=responses[:, :-1], attention_mask=attention, past_key_values=past,
                 position_ids=next_position + torch.arange(rest_len, device=prompts.device)).logits
    return torch.cat([first, rest], dim=1)


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token (left padding)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def response_logprobs(model, prompts: torch.Tensor, responses: torch.Tensor,
                      response_mask: torch.Tensor | None = None,
                      prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
    """log pi(y_t | x, y_<t) per response token: [B, R] (0 where masked)."""
    token_logps = token_logprobs(response_logits(model, prompts, responses, prompt_mask), responses)
    return token_logps if response_mask is None else token_logps * response_mask


def token_logprobs(logits: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    """The responses' log-probs under `response_logits` output [B, R, V]: [B, R]."""
    return torch.gather(F.log_softmax(logits.float(), dim=-1), 2, responses.unsqueeze(-1)).squeeze(-1)


def sample(model, prompts: torch.Tensor, length: int, generator: torch.Generator,
           temperature: float = 1.0, prompt_mask: torch.Tensor | None = None, copies: int = 1,
           keep: str | None = None, draw_rows: tuple[int, torch.Tensor] | None = None):
    """Ancestral sampling with a KV cache; every draw comes from `generator`. `copies`
    responses per prompt share the prompt's forward: rows are all first responses, then all
    second ones, .... `keep="logits"` also returns the logits each token was drawn from
    (before the temperature) [rows, length, V]; `keep="logprobs"` the policy's log-prob of
    each drawn token [rows, length]: what a forward over the samples would give, for free.
    `draw_rows` = (rows, these rows' indices among them): draws are made for that many rows
    and these rows' taken, so one rank's share of a batch samples what the whole batch
    would (runtime.distributed)."""
    if keep not in (None, "logits", "logprobs"):
        raise ValueError(f"keep={keep!r}: expected 'logits' or 'logprobs'")
    # no autograd bookkeeping at all, per token; a sharded model's parameters are gathered by
    # in-place copies, which inference mode forbids, so it samples under no_grad
    sharded = torch.distributed.is_available() and torch.distributed.is_initialized()
    training = model.training  # eval mode: checkpointed transformers layers drop the KV cache in training
    with torch.no_grad() if sharded else torch.inference_mode():
        try:
            model.eval()
            if prompt_mask is None:
                draw = functools.partial(_draw, temperature=temperature, generator=generator, rows=draw_rows)
                tokens, kept = _sample(model, prompts, length, draw, copies, keep)
            else:
                uniforms = _uniforms(length, copies * len(prompts), generator, draw_rows, prompts.device)
                tokens, kept = _sample_padded(model, prompts, prompt_mask, uniforms, temperature, copies, keep)
        finally:
            model.train(training)
    # normal tensors: inference tensors cannot be saved for a later backward
    if keep is None:
        return tokens.clone()
    return tokens.clone(), (torch.stack(kept, dim=1) if keep == "logits" else torch.cat(kept, dim=1)).clone()


def _keep(kept: list, keep: str | None, logits: torch.Tensor, drawn: torch.Tensor) -> None:
    if keep == "logits":
        kept.append(logits)
    elif keep == "logprobs":
        kept.append(token_logprobs(logits[:, None], drawn))


def end_at_eos(responses: torch.Tensor, eos_id: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut sampled responses after their first EOS: (responses padded with `pad_id`, mask).
    The EOS itself is a real token: the policy chose to stop there."""
    is_eos = (responses == eos_id).long()
    after_eos = (is_eos.cumsum(-1) - is_eos) > 0
    return responses.masked_fill(after_eos, pad_id), (~after_eos).long()


def _sample(model, prompts, length, draw, copies, keep):
    body = gpt2.Body.of(model.transformer) if gpt2.is_plain_lm(model) else None
    logits, past = _next_logits(model, prompts, None, body)  # the prompts, once each
    if copies > 1:
        logits, past = logits.repeat(copies, 1), _repeat_cache(past, copies)
    # large batches decode in chunks of rows (each with its own cache), but every token is
    # drawn for the whole batch at once, so the generator is consumed exactly as unchunked
    rows = ROWS_PER_DECODE if body is not None else len(logits)
    states = list(zip(logits.split(rows), _split_cache(past, rows))) if len(logits) > rows else [(logits, past)]
    tokens, kept = [], []
    for t in range(length):
        logits = states[0][0] if len(states) == 1 else torch.cat([logits for logits, _ in states])
        nxt = draw(logits)
        tokens.append(nxt)
        _keep(kept, keep, logits, nxt)
        if t + 1 < length:
            states = [_next_logits(model, chunk, past, body) for chunk, (_, past) in zip(nxt.split(rows), states)]
    return torch.cat(tokens, dim=1), kept


def _uniforms(length: int, rows: int, generator, draw_rows, device) -> torch.Tensor:
    """The uniforms of `length` tokens for `rows` rows [length, rows], in (0, 1], drawn up front
    in the order per-token draws would take them; `draw_rows` as in `sample`."""
    uniforms = 1.0 - torch.rand(length, rows if draw_rows is None else draw_rows[0], generator=generator, device=device)
    return uniforms if draw_rows is None else uniforms[:, draw_rows[1].to(device)]


def _sample_padded(model, prompts, prompt_mask, uniforms, temperature, copies, keep):
    """Left-padded prompts (real data), ROWS_PER_SAMPLE prompts (with their copies) at a time,
    each chunk decoded to its end before the next: one chunk's KV cache is alive at once (a
    1B model's cache for 2,048 prompts of 1,024 tokens would be ~300 GB). `uniforms` [length,
    rows] are drawn up front, so the samples do not depend on the chunking."""
    length = len(uniforms)
    by_copy = uniforms.view(length, copies, len(prompts))
    n = ROWS_PER_SAMPLE
    parts = [_decode_padded(model, prompts[i:i + n], prompt_mask[i:i + n], by_copy[:, :, i:i + n].reshape(length, -1),
                            temperature, copies, keep) for i in range(0, len(prompts), n)]
    if len(parts) == 1:
        return parts[0]
    # rows copy-major, as unchunked: every chunk's first copies, then its second copies, ...
    merge = lambda ts: torch.cat([t.view(copies, -1, *t.shape[1:]) for t in ts], dim=1).flatten(0, 1)  # noqa: E731
    return merge([t for t, _ in parts]), [merge([k[step] for _, k in parts]) for step in range(len(parts[0][1]))]


def _decode_padded(model, prompts, prompt_mask, uniforms, temperature, copies, keep):
    """One chunk of `_sample_padded`: the attention mask grows by one real position per token."""
    attention = prompt_mask.long()
    # the prompt's logits at its last position only: a full prefill's are [rows, prompt, vocab]
    out = model(input_ids=prompts, attention_mask=attention, position_ids=positions(attention), use_cache=True,
                logits_to_keep=1)
    logits, past = out.logits[:, -1], out.past_key_values
    if copies > 1:
        logits, past, attention = (logits.repeat(copies, 1), _repeat_cache(past, copies),
                                   attention.repeat(copies, 1))
    next_position = attention.sum(-1, keepdim=True)
    tokens, kept = [], []
    for t in range(len(uniforms)):
        nxt = _draw(logits, temperature, uniforms=uniforms[t])
        tokens.append(nxt)
        _keep(kept, keep, logits, nxt)
        if t + 1 < len(uniforms):
            attention = torch.cat([attention, torch.ones_like(nxt)], dim=1)
            out = model(input_ids=nxt, attention_mask=attention, position_ids=next_position + t,
                        past_key_values=past, use_cache=True)
            logits, past = out.logits[:, -1], out.past_key_values
    return torch.cat(tokens, dim=1), kept


def _draw(logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None,
          rows: tuple[int, torch.Tensor] | None = None, uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row [B, 1] from softmax(logits / temperature), by inverting the CDF at
    one uniform draw per row (3-6x faster than torch.multinomial's exponential draw per
    vocabulary entry), from `generator` or given (`uniforms` [B]). A token of probability 0 is
    never drawn: u is in (0, 1]."""
    cdf = torch.softmax(logits.float() / temperature, dim=-1).cumsum(dim=-1)
    if uniforms is not None:
        u = uniforms[:, None]
    else:
        u = 1.0 - torch.rand(len(cdf) if rows is None else rows[0], 1, generator=generator, dtype=cdf.dtype,
                             device=cdf.device)
        if rows is not None:
            u = u[rows[1].to(u.device)]
    return (cdf < u * cdf[:, -1:]).sum(dim=-1, keepdim=True)


def _repeat_cache(past, copies: int):
    """A KV cache of one row per prompt, for `copies` continuations each (copy-major rows)."""
    if isinstance(past, list):  # specc's own GPT-2 cache: (keys, values) per layer
        return [(keys.repeat(copies, 1, 1, 1), values.repeat(copies, 1, 1, 1)) for keys, values in past]
    keys = past.layers[0].keys  # a transformers Cache
    past.reorder_cache(torch.arange(len(keys), device=keys.device).repeat(copies))
    return past


def _split_cache(past: list, rows: int) -> list:
    return [[(keys[i:i + rows], values[i:i + rows]) for keys, values in past]
            for i in range(0, len(past[0][0]), rows)]


def _next_logits(model, tokens: torch.Tensor, past, body: "gpt2.Body | None" = None):
    """Logits at the last position [B, V] and the KV cache, continuing `past` (None: from
    scratch). `body`: the plain GPT-2's tensors, read once per sampling run."""
    if body is not None:
        hidden, past = gpt2.forward(body, tokens, past)
        return F.linear(hidden[:, -1], model.lm_head.weight), past
    out = model(input_ids=tokens, past_key_values=past, use_cache=True)
    return out.logits[:, -1], out.past_key_values


def last_hidden(body, tokens: torch.Tensor) -> torch.Tensor:
    """A base model's final hidden states [B, T, d] of unpadded sequences (the judges' backbone)."""
    if not gpt2.is_plain_body(body):
        return body(input_ids=tokens, use_cache=False).last_hidden_state
    if not torch.is_grad_enabled() and len(tokens) > ROWS_PER_FORWARD:
        return torch.cat([last_hidden(body, rows) for rows in tokens.split(ROWS_PER_FORWARD)])
    return gpt2.forward(body, tokens)[0]


def _gpt2_logits(model, tokens: torch.Tensor) -> torch.Tensor:
    if not torch.is_grad_enabled() and len(tokens) > ROWS_PER_FORWARD:
        return torch.cat([_gpt2_logits(model, rows) for rows in tokens.split(ROWS_PER_FORWARD)])
    hidden, _ = gpt2.forward(model.transformer, tokens)
    return F.linear(hidden, model.lm_head.weight)
