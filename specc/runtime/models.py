"""Policies: tiny GPT-2 models built from config, log-probs and KV-cache sampling.

Sequences are `prompt ++ response`. Masks are optional: the synthetic task
has fixed lengths, real data is left-padded prompts and right-padded
responses (see runtime.data.tokenize).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

# Without gradients, large batches run in chunks of rows, whose activations stay close to a
# core's cache: a 512-row forward of the S model is ~1.8x faster in chunks of 64 on a 2-core
# EPYC (1 MB L2 per core). Rows never interact in a forward, so the results are the same bits.
ROWS_PER_FORWARD = 64
ROWS_PER_DECODE = 256  # sampling: a step's activations are small, but the KV cache grows

# name -> (width, layers, heads)
TINY_SIZES = {"XS": (32, 1, 2), "S": (64, 2, 4), "M": (128, 2, 4), "L": (192, 3, 6)}


def tiny_config(size: str, vocab: int, max_len: int) -> GPT2Config:
    width, layers, heads = TINY_SIZES[size]
    return GPT2Config(vocab_size=vocab, n_positions=max_len, n_embd=width, n_layer=layers, n_head=heads,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,  # no dropout: determinism, and RL practice
                      bos_token_id=None, eos_token_id=None, pad_token_id=None, tie_word_embeddings=True)


def build_policy(model_cfg: dict, vocab: int, max_len: int, seed: int):
    if model_cfg["family"] != "tiny":
        from specc.runtime.models_hub import load_causal_lm
        model = load_causal_lm(model_cfg["name"], dtype=model_cfg["dtype"])[0]
        if model.get_input_embeddings().num_embeddings < vocab:
            raise ValueError(f"{model_cfg['name']}: {model.get_input_embeddings().num_embeddings} token embeddings, "
                             f"but the dataset's tokenizer has {vocab} ids: use the model's own tokenizer")
        return model.train()
    torch.manual_seed(seed)  # transformers initialises from the global generator
    model = GPT2LMHeadModel(tiny_config(model_cfg["size"], vocab, max_len))
    return model


def save_model(model, path: Path) -> None:
    """Weights and config in one safetensors file; a tied output layer is stored once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    output = model.get_output_embeddings()
    tied = output is not None and output.weight is model.get_input_embeddings().weight
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
    save_file(state, str(tmp), metadata={"config": model.config.to_json_string()})
    tmp.replace(path)


def load_model(path: Path):
    """A policy saved by `save_model`: tiny GPT-2s and any hub causal LM, rebuilt from the
    stored config (nothing is downloaded)."""
    import json

    from safetensors import safe_open
    with safe_open(str(path), "pt") as fh:
        config = json.loads(fh.metadata()["config"])
    if config.get("model_type", "gpt2") == "gpt2":
        model = GPT2LMHeadModel(GPT2Config.from_dict(config))
    else:
        from transformers import AutoConfig, AutoModelForCausalLM
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))
    state = load_file(str(path))
    model.load_state_dict(state, strict=False)
    model.tie_weights()
    if state:  # the saved dtype (a bf16 hub model stays bf16)
        model.to(next(iter(state.values())).dtype)
    return model


def response_logits(model, prompts: torch.Tensor, responses: torch.Tensor,
                    prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token logits at each response position: [B, R, V].

    `prompt_mask` (1 = real token) marks left padding of real-data prompts; responses are
    right-padded, which causal attention never lets reach the positions before it."""
    tokens = torch.cat([prompts, responses], dim=1)
    if prompt_mask is not None:
        attention = torch.cat([prompt_mask, torch.ones_like(responses)], dim=1)
        logits = model(input_ids=tokens, attention_mask=attention, position_ids=positions(attention)).logits
    elif _plain_gpt2(model):
        logits = _gpt2_logits(model, tokens)
    else:
        logits = model(input_ids=tokens).logits
    return logits[:, prompts.shape[1] - 1: -1]


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
           temperature: float = 1.0, prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Ancestral sampling with a KV cache; every draw comes from `generator`."""
    with torch.inference_mode():  # no autograd bookkeeping at all, per token
        if prompt_mask is None:
            tokens = _sample(model, prompts, length, generator, temperature)
        else:
            tokens = _sample_padded(model, prompts, prompt_mask, length, generator, temperature)
    return tokens.clone()  # a normal tensor: inference tensors cannot be saved for a later backward


def end_at_eos(responses: torch.Tensor, eos_id: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut sampled responses after their first EOS: (responses padded with `pad_id`, mask).
    The EOS itself is a real token: the policy chose to stop there."""
    is_eos = (responses == eos_id).long()
    after_eos = (is_eos.cumsum(-1) - is_eos) > 0
    return responses.masked_fill(after_eos, pad_id), (~after_eos).long()


def _sample(model, prompts, length, generator, temperature):
    # large batches decode in chunks of rows (each with its own cache), but every token is
    # drawn for the whole batch at once, so the generator is consumed exactly as unchunked
    chunks = prompts.split(ROWS_PER_DECODE) if _plain_gpt2(model) else [prompts]
    states = [_next_logits(model, rows, None) for rows in chunks]
    tokens = []
    for t in range(length):
        logits = states[0][0] if len(states) == 1 else torch.cat([logits for logits, _ in states])
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        nxt = torch.multinomial(probs, 1, generator=generator)
        tokens.append(nxt)
        if t + 1 < length:
            states = [_next_logits(model, rows, past) for rows, (_, past) in zip(nxt.split(len(chunks[0])), states)]
    return torch.cat(tokens, dim=1)


def _sample_padded(model, prompts, prompt_mask, length, generator, temperature):
    """Left-padded prompts (real data): the attention mask grows by one real position per token."""
    attention = prompt_mask.long()
    out = model(input_ids=prompts, attention_mask=attention, position_ids=positions(attention), use_cache=True)
    logits, past = out.logits[:, -1], out.past_key_values
    next_position = attention.sum(-1, keepdim=True)
    tokens = []
    for t in range(length):
        nxt = torch.multinomial(torch.softmax(logits.float() / temperature, dim=-1), 1, generator=generator)
        tokens.append(nxt)
        if t + 1 < length:
            attention = torch.cat([attention, torch.ones_like(nxt)], dim=1)
            out = model(input_ids=nxt, attention_mask=attention, position_ids=next_position + t,
                        past_key_values=past, use_cache=True)
            logits, past = out.logits[:, -1], out.past_key_values
    return torch.cat(tokens, dim=1)


def _next_logits(model, tokens: torch.Tensor, past):
    """Logits at the last position [B, V] and the KV cache, continuing `past` (None: from scratch)."""
    if _plain_gpt2(model):
        hidden, past = _gpt2_forward(model.transformer, tokens, past)
        return F.linear(hidden, model.lm_head.weight)[:, -1], past
    out = model(input_ids=tokens, past_key_values=past, use_cache=True)
    return out.logits[:, -1], out.past_key_values


# -- GPT-2 without the transformers call stack ------------------------------------------
#
# A tiny model spends much of a forward in `GPT2LMHeadModel.__call__`'s Python (output
# classes, cache objects, mask construction) rather than in arithmetic: sampling 16 tokens
# for 32 prompts takes ~20 ms through transformers and ~11 ms here. These functions issue
# the same float operations in the same order on the same tensors, so logits, gradients
# and samples are bit-identical to the transformers path (benchmarks/bench_train.py checks
# it before timing); what they do not cover (hub models, dropout while training, other
# attention kernels) takes that path instead.


def _gpt2_logits(model, tokens: torch.Tensor) -> torch.Tensor:
    if not torch.is_grad_enabled() and len(tokens) > ROWS_PER_FORWARD:
        return torch.cat([_gpt2_logits(model, rows) for rows in tokens.split(ROWS_PER_FORWARD)])
    hidden, _ = _gpt2_forward(model.transformer, tokens)
    return F.linear(hidden, model.lm_head.weight)


def _plain_gpt2(model) -> bool:
    return type(model) is GPT2LMHeadModel and _plain_body(model.transformer)


def _plain_body(body) -> bool:
    config = body.config
    dropout = body.training and (config.resid_pdrop or config.embd_pdrop or config.attn_pdrop)
    return (type(body) is GPT2Model and config._attn_implementation == "sdpa" and not config.add_cross_attention
            and not dropout and not body.gradient_checkpointing)


def _gpt2_forward(body: GPT2Model, tokens: torch.Tensor, past: list | None = None):
    """Final hidden states [B, T, d] and each layer's (keys, values). With `past`, `tokens` is
    one new position per row (decoding); without, a whole causal sequence."""
    start = 0 if past is None else past[0][0].shape[2]
    hidden = F.embedding(tokens, body.wte.weight) + body.wpe.weight[start:start + tokens.shape[1]]
    cache = []
    for i, block in enumerate(body.h):
        hidden, keys_values = _gpt2_block(block, hidden, None if past is None else past[i])
        cache.append(keys_values)
    return _layer_norm(body.ln_f, hidden), cache


def _gpt2_block(block, hidden: torch.Tensor, past: tuple | None):
    attn, mlp = block.attn, block.mlp
    batch, length, width = hidden.shape
    qkv = _conv1d(attn.c_attn, _layer_norm(block.ln_1, hidden))  # [B, T, 3 * heads * head_dim]
    query, key, value = qkv.view(batch, length, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    if past is None:  # transformers' cache concatenates: sdpa sees contiguous keys and values either way
        key, value = key.contiguous(), value.contiguous()
    else:
        key, value = torch.cat([past[0], key], dim=-2), torch.cat([past[1], value], dim=-2)
    out = F.scaled_dot_product_attention(query, key, value, is_causal=past is None and length > 1,
                                         scale=attn.scaling)
    hidden = _conv1d(attn.c_proj, out.transpose(1, 2).reshape(batch, length, width)) + hidden
    return hidden + _conv1d(mlp.c_proj, mlp.act(_conv1d(mlp.c_fc, _layer_norm(block.ln_2, hidden)))), (key, value)


def _layer_norm(norm: torch.nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _conv1d(layer, x: torch.Tensor) -> torch.Tensor:
    """transformers' Conv1D (a linear layer with transposed weights), as it computes it."""
    return torch.addmm(layer.bias, x.reshape(-1, x.shape[-1]), layer.weight).view(*x.shape[:-1], layer.nf)
