"""Where a job computes: the GPU when it has one, else the CPU.

The device is the hardware's choice, not the spec's: a job planned on a laptop and run on
a SLURM GPU node is the same job. `SPECC_DEVICE=cpu|cuda` overrides the choice. On a GPU,
forwards run under bf16 autocast (log-softmaxes stay in float32); on the CPU everything
is float32, which is what makes a run bit-reproducible there. The device and precision a
job used are recorded in its status.
"""

from __future__ import annotations

import contextlib
import os

import torch


def job_device() -> torch.device:
    name = os.environ.get("SPECC_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"SPECC_DEVICE={name!r}: expected 'cpu' or 'cuda'")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("SPECC_DEVICE=cuda, but torch sees no GPU")
    return torch.device(name)


def precision(device: torch.device) -> str:
    return "bf16-autocast" if device.type == "cuda" else "float32"


def autocast(device: torch.device):
    """bf16 autocast on a GPU; nothing on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
