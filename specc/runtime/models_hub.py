"""Load any causal language model and its tokenizer, from the Hugging Face hub or a local folder.

A local folder (anything written by `save_pretrained`) is read with `local_files_only=True`,
so loading a checkpoint never touches the network.
"""

from __future__ import annotations

import importlib.util
import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from specc.contracts import local_path, looks_like_path

DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}


def resolve_dtype(dtype: str) -> torch.dtype:
    """Map a spec's dtype string to a torch dtype, explaining unknown names."""
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r} (expected one of {', '.join(DTYPES)})") from None


def _resolve_source(name_or_path: str, local_files_only: bool | None) -> tuple[str, bool]:
    """Return (what to pass to from_pretrained, local_files_only)."""
    path = local_path(name_or_path)
    if path is not None and path.is_dir():
        return str(path), True if local_files_only is None else local_files_only
    if looks_like_path(name_or_path):
        raise ValueError(f"{name_or_path}: no such model directory (expected a folder written by "
                         f"save_pretrained, or a hub id like 'openai-community/gpt2')")
    return name_or_path, bool(local_files_only)


def load_causal_lm(name_or_path: str, *, dtype: str = "float32", revision: str | None = None,
                   local_files_only: bool | None = None, device: torch.device | str = "cpu"):
    """Return `(model, tokenizer)` for a hub id or a local `save_pretrained` folder.

    - `dtype`: "float32" | "bfloat16" | "float16" (short forms fp32/bf16/fp16 accepted).
    - `revision`: a hub branch, tag or commit; ignored for local folders.
    - `local_files_only`: None infers True for an existing directory and False otherwise
      (HF_HUB_OFFLINE=1 still keeps hub ids offline, served from the cache).
    - `device`: where the weights end up. They are read in `dtype` directly (never a float32
      copy first); with `accelerate` installed they are placed on the device as they load.

    The model comes back in eval mode. A tokenizer without a pad token gets EOS as pad, so
    batched generation and padding work the same for every model.
    """
    torch_dtype = resolve_dtype(dtype)
    source, offline = _resolve_source(name_or_path, local_files_only)
    hub_revision = None if os.path.isdir(source) else revision
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=hub_revision, local_files_only=offline)
        model = AutoModelForCausalLM.from_pretrained(source, revision=hub_revision, local_files_only=offline,
                                                     dtype=torch_dtype, **placement(device))
    except OSError as err:  # transformers reports missing repos/files as OSError
        raise ValueError(f"{name_or_path}: could not load a causal LM and tokenizer: {err}") from err
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    return model, tokenizer


def placement(device: torch.device | str) -> dict:
    """`from_pretrained` arguments that load straight onto a GPU (they need `accelerate`);
    without it, or on the CPU, the weights load on the host and move once."""
    if torch.device(device).type == "cpu" or importlib.util.find_spec("accelerate") is None:
        return {}
    return {"device_map": str(device)}
