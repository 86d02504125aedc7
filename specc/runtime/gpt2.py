"""GPT-2 without the transformers call stack.

A tiny model spends much of a forward in `GPT2LMHeadModel.__call__`'s Python (output
classes, cache objects, mask construction) rather than in arithmetic: sampling 16 tokens
for 32 prompts takes ~20 ms through transformers and ~11 ms here. These functions issue
the same float operations in the same order on the same tensors, so logits, gradients
and samples are bit-identical to the transformers path (benchmarks/bench_train.py checks
it before timing); what they do not cover (hub models with dropout while training, other
attention kernels, cross-attention) takes that path instead. Gradient checkpointing
(transformers' switch on the model) is honoured: each block is recomputed in the backward.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from transformers import GPT2LMHeadModel, GPT2Model


def is_plain_lm(model) -> bool:
    return type(model) is GPT2LMHeadModel and is_plain_body(model.transformer)


def is_plain_body(body) -> bool:
    config = body.config
    dropout = body.training and (config.resid_pdrop or config.embd_pdrop or config.attn_pdrop)
    return (type(body) is GPT2Model and config._attn_implementation == "sdpa" and not config.add_cross_attention
            and not dropout)


class _Norm(NamedTuple):
    shape: tuple
    weight: torch.Tensor
    bias: torch.Tensor
    eps: float


class _Linear(NamedTuple):  # transformers' Conv1D: a linear layer with transposed weights
    bias: torch.Tensor
    weight: torch.Tensor
    out: int


class _Block(NamedTuple):
    ln_1: _Norm
    c_attn: _Linear
    heads: int
    head_dim: int
    scale: float
    attn_proj: _Linear
    ln_2: _Norm
    c_fc: _Linear
    act: object
    mlp_proj: _Linear


class Body(NamedTuple):
    """A GPT2Model's tensors, read off its modules once: a decoding step then spends no time in
    `nn.Module.__getattr__` (~13% of a tiny model's decoding step). The tensors are the parameters
    themselves, so an optimiser step or a loaded state dict shows through."""

    wte: torch.Tensor
    wpe: torch.Tensor
    blocks: list
    ln_f: _Norm
    checkpointing: bool = False  # recompute each block in the backward (train.grad_checkpointing)

    @classmethod
    def of(cls, body: GPT2Model) -> "Body":
        norm = lambda n: _Norm(n.normalized_shape, n.weight, n.bias, n.eps)  # noqa: E731
        linear = lambda c: _Linear(c.bias, c.weight, c.nf)  # noqa: E731
        blocks = [_Block(norm(b.ln_1), linear(b.attn.c_attn), b.attn.num_heads, b.attn.head_dim, b.attn.scaling,
                         linear(b.attn.c_proj), norm(b.ln_2), linear(b.mlp.c_fc), b.mlp.act, linear(b.mlp.c_proj))
                  for b in body.h]
        return cls(body.wte.weight, body.wpe.weight, blocks, norm(body.ln_f), bool(body.gradient_checkpointing))


def forward(body, tokens: torch.Tensor, past: list | None = None):
    """Final hidden states [B, T, d] and each layer's (keys, values), continuing `past` (None:
    from the first position). `body`: a GPT2Model or its `Body`."""
    body = body if isinstance(body, Body) else Body.of(body)
    start = 0 if past is None else past[0][0].shape[2]
    hidden = F.embedding(tokens, body.wte) + body.wpe[start:start + tokens.shape[1]]
    cache = []
    recompute = body.checkpointing and torch.is_grad_enabled()
    for i, block in enumerate(body.blocks):
        layer_past = None if past is None else past[i]
        if recompute:  # a pure function of its inputs: the backward's recomputation is exact
            hidden, keys_values = checkpoint(_block, block, hidden, layer_past, use_reentrant=False)
        else:
            hidden, keys_values = _block(block, hidden, layer_past)
        cache.append(keys_values)
    return _layer_norm(body.ln_f, hidden), cache


def _block(block: _Block, hidden: torch.Tensor, past: tuple | None):
    batch, length, width = hidden.shape
    qkv = _conv1d(block.c_attn, _layer_norm(block.ln_1, hidden))  # [B, T, 3 * heads * head_dim]
    query, key, value = qkv.view(batch, length, 3, block.heads, block.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    causal = None
    if past is None:  # transformers' cache concatenates: sdpa sees contiguous keys and values either way
        key, value = key.contiguous(), value.contiguous()
    else:
        key, value = torch.cat([past[0], key], dim=-2), torch.cat([past[1], value], dim=-2)
        if length > 1:  # several new positions after a cache: each sees the cache and the new ones up to itself
            causal = torch.ones(length, key.shape[-2], dtype=torch.bool, device=key.device).tril(key.shape[-2] - length)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=causal, is_causal=past is None and length > 1,
                                         scale=block.scale)
    hidden = _conv1d(block.attn_proj, out.transpose(1, 2).reshape(batch, length, width)) + hidden
    return hidden + _conv1d(block.mlp_proj, block.act(_conv1d(block.c_fc, _layer_norm(block.ln_2, hidden)))), (key, value)


def _layer_norm(norm: _Norm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, norm.shape, norm.weight, norm.bias, norm.eps)


def _conv1d(layer: _Linear, x: torch.Tensor) -> torch.Tensor:
    """transformers' Conv1D, as it computes it."""
    return torch.addmm(layer.bias, x.reshape(-1, x.shape[-1]), layer.weight).view(*x.shape[:-1], layer.out)
