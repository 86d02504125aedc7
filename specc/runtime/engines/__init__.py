"""Sampling engines: what draws a policy's responses wherever a policy samples (the online
sampler, the pairs stage, evaluation).

`hf` is specc's own KV-cache loop (runtime.models.sample), the default: exact and
bit-reproducible on the CPU, fast for tiny models. `vllm` runs the same policy in a vLLM
engine colocated with the learner, in the learner's own process and on its device: the
engine holds a copy of the weights, which the learner pushes before a sampling round
(`sync`), and on a GPU it sleeps (memory released) while the learner trains.

Whatever the engine, the learner recomputes every log-prob a loss or a metric uses: the
engine only chooses tokens. Draws are named by `Draw(seed, purpose, step)`: the hf engine
turns it into one generator for the batch (runtime.loop.step_generator), vllm into one
seed per request, (seed, purpose, step, row), so a resumed job samples what the
uninterrupted one did.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from specc.runtime.batch import Responder

ENGINES = ("hf", "vllm")


@dataclass(frozen=True)
class Draw:
    """Names one sampling round's randomness."""

    seed: int
    purpose: str
    step: int

    def generator(self, device: torch.device | str = "cpu") -> torch.Generator:
        from specc.runtime.loop import step_generator

        return step_generator(self.seed, self.purpose, self.step, device)

    def request_seed(self, row: int) -> int:
        """The seed of one request (one response) of the round: rows are copy-major, as the
        hf engine lays them out (all first responses, then all second ones, ...)."""
        digest = hashlib.sha256(f"{self.seed}/{self.purpose}/{self.step}/{row}".encode()).digest()
        return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def open_engine(name: str, respond: Responder, device: torch.device, prompt_len: int, **options):
    """The engine `name` for responses of `respond`'s task after prompts of `prompt_len` tokens.
    vllm engines are shared within a process (one per model shape): every policy of a job
    samples through the same engine, its weights swapped in on demand."""
    if name == "hf":
        from specc.runtime.engines.hf import HfEngine

        return HfEngine(respond, device)
    if name == "vllm":
        from specc.runtime.engines.vllm import VllmEngine

        return VllmEngine.shared(respond, device, prompt_len, **options)
    raise ValueError(f"engine {name!r}: expected one of {', '.join(ENGINES)}")


__all__ = ["Draw", "ENGINES", "open_engine"]
