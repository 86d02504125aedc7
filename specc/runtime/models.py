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
from transformers import GPT2Config, GPT2LMHeadModel

# name -> (width, layers, heads)
TINY_SIZES = {"XS": (32, 1, 2), "S": (64, 2, 4), "M": (128, 2, 4), "L": (192, 3, 6)}


def tiny_config(size: str, vocab: int, max_len: int) -> GPT2Config:
    width, layers, heads = TINY_SIZES[size]
    return GPT2Config(vocab_size=vocab, n_positions=max_len, n_embd=width, n_layer=layers, n_head=heads,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,  # no dropout: determinism, and RL practice
                      bos_token_id=None, eos_token_id=None, pad_token_id=None, tie_word_embeddings=True)


def build_policy(model_cfg: dict, vocab: int, max_len: int, seed: int) -> GPT2LMHeadModel:
    if model_cfg["family"] != "tiny":
        from specc.runtime.models_hub import load_causal_lm
        return load_causal_lm(model_cfg["name"], dtype=model_cfg["dtype"])[0]
    torch.manual_seed(seed)  # transformers initialises from the global generator
    model = GPT2LMHeadModel(tiny_config(model_cfg["size"], vocab, max_len))
    return model


def save_model(model, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(tmp), metadata={"config": model.config.to_json_string()})
    tmp.replace(path)


def load_model(path: Path) -> GPT2LMHeadModel:
    from safetensors import safe_open
    with safe_open(str(path), "pt") as fh:
        config = GPT2Config.from_dict(__import__("json").loads(fh.metadata()["config"]))
    model = GPT2LMHeadModel(config)
    model.load_state_dict(load_file(str(path)), strict=False)
    model.tie_weights()
    return model


def response_logits(model, prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    """Next-token logits at each response position: [B, R, V]."""
    tokens = torch.cat([prompts, responses], dim=1)
    logits = model(input_ids=tokens).logits
    return logits[:, prompts.shape[1] - 1: -1]


def response_logprobs(model, prompts: torch.Tensor, responses: torch.Tensor,
                      response_mask: torch.Tensor | None = None) -> torch.Tensor:
    """log pi(y_t | x, y_<t) per response token: [B, R] (0 where masked)."""
    logits = response_logits(model, prompts, responses)
    token_logps = torch.gather(F.log_softmax(logits.float(), dim=-1), 2, responses.unsqueeze(-1)).squeeze(-1)
    return token_logps if response_mask is None else token_logps * response_mask


@torch.no_grad()
def sample(model, prompts: torch.Tensor, length: int, generator: torch.Generator,
           temperature: float = 1.0) -> torch.Tensor:
    """Ancestral sampling with a KV cache; every draw comes from `generator`."""
    out = model(input_ids=prompts, use_cache=True)
    past, logits = out.past_key_values, out.logits[:, -1]
    tokens = []
    for t in range(length):
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        nxt = torch.multinomial(probs, 1, generator=generator)
        tokens.append(nxt)
        if t + 1 < length:
            out = model(input_ids=nxt, past_key_values=past, use_cache=True)
            past, logits = out.past_key_values, out.logits[:, -1]
    return torch.cat(tokens, dim=1)
