"""The vllm engine: a vLLM engine colocated with the learner, in its process and on its device.

The engine runs in-process (vLLM's uniprocess executor, no engine subprocess), so weights
reach it as a plain in-memory copy (`reload_weights`) and a job needs no `__main__` guard.
One engine serves every policy of one shape in a process: it holds the weights of the
module it was last given, and `sample` swaps another module's weights in on demand; the
module it holds is refreshed only by `sync`, so a caller can sample from weights a few
steps old on purpose (sampler.sync_every) and record by how much.

On a GPU the engine sleeps (weights offloaded, KV cache freed) between sampling rounds, so
the learner trains with the memory back. vLLM's CPU backend has no sleep mode, and its
attention supports head sizes of 32 and up only (specc's tiny S and XS models have 16).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import weakref

import numpy as np
import torch

from specc.runtime.batch import Responder
from specc.runtime.engines.hf import cut

DEFAULT_MEMORY = 0.1  # share of the device's memory (on the CPU: of host memory) for weights and KV cache
MAX_ROWS = 256  # sequences decoded at once; a round of more queues in the engine
BLOCK = 32  # tokens per KV-cache block (vLLM's CPU attention needs a multiple of 32)
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)  # vLLM's CPU attention kernels


class VllmEngine:
    name = "vllm"
    _instances: dict[tuple, "_Shared"] = {}

    def __init__(self, respond: Responder, device: torch.device, max_len: int, memory: float):
        self.respond, self.device, self.max_len, self.memory = respond, device, max_len, memory

    @classmethod
    def shared(cls, respond: Responder, device: torch.device, prompt_len: int, memory: float = DEFAULT_MEMORY):
        return cls(respond, device, prompt_len + respond.length, memory)

    def _engine(self, model) -> "_Shared":
        """The process's engine for `model`'s shape (one per shape: weights of another shape
        cannot be swapped in)."""
        config = model.config
        shape = (config.model_type, getattr(config, "activation_function", None) or getattr(config, "hidden_act", None),
                 tuple((name, tuple(p.shape)) for name, p in model.state_dict().items()))
        key = (self.device.type, self.max_len, self.memory, shape)
        if key not in self._instances:
            self._instances[key] = _Shared(self.device, self.max_len, self.memory)
        return self._instances[key]

    def sync(self, model, step: int | None = None) -> None:
        """Push `model`'s current weights (once per `step` when one is given)."""
        self._engine(model).push(model, step)

    def sample(self, model, prompts, prompt_mask, draw, copies: int = 1, draw_rows=None):
        """(responses, mask): `copies` responses per prompt, copy-major rows, request r seeded
        by `draw.request_seed(r)`; on one rank of several, r is the row one process would
        sample (`draw_rows`, see runtime.distributed.draw_rows)."""
        rows = _unpadded(prompts, prompt_mask)
        requests = [rows[r % len(rows)] for r in range(copies * len(rows))]
        global_rows = range(len(requests)) if draw_rows is None else draw_rows[1].tolist()
        params = [self._params(draw.request_seed(r)) for r in global_rows]
        tokens = self._engine(model).generate(model, requests, params)
        responses = torch.tensor([self._padded(t) for t in tokens], dtype=prompts.dtype, device=prompts.device)
        return cut(self.respond, responses)

    def sample_keeping(self, keep: str, model, prompts, prompt_mask, draw):
        """What the hf engine keeps while sampling, recomputed by a forward of the learner's
        module: the engine's own log-probs are never used."""
        from specc.runtime.models import response_logits, token_logprobs

        responses, mask = self.sample(model, prompts, prompt_mask, draw)
        with torch.no_grad():
            logits = response_logits(model, prompts, responses, prompt_mask)
        kept = logits if keep == "logits" else token_logprobs(logits, responses)
        return (responses, mask), kept

    def greedy(self, model, prompts, prompt_mask=None):
        from vllm import SamplingParams

        rows = _unpadded(prompts, prompt_mask)
        params = [SamplingParams(temperature=0.0, max_tokens=self.respond.length, min_tokens=self.respond.length,
                                 ignore_eos=True, detokenize=False)] * len(rows)
        tokens = self._engine(model).generate(model, rows, params)
        return cut(self.respond, torch.tensor(tokens, dtype=prompts.dtype, device=prompts.device))

    def sleep(self) -> None:
        for engine in self._instances.values():
            engine.sleep()

    def _params(self, seed: int):
        from vllm import SamplingParams

        eos, length = self.respond.eos_id, self.respond.length
        # plain ancestral sampling at temperature 1: no top-k/p, no penalties, the model's
        # own generation defaults ignored (generation_config="vllm" below)
        return SamplingParams(n=1, temperature=1.0, top_p=1.0, top_k=0, seed=seed, max_tokens=length,
                              min_tokens=length if eos is None else 0, ignore_eos=True,
                              stop_token_ids=None if eos is None else [eos], detokenize=False)

    def _padded(self, tokens: list[int]) -> list[int]:
        """A response stopped at EOS, padded to the task's length (EOS kept as a real token)."""
        eos, pad, length = self.respond.eos_id, self.respond.pad_id, self.respond.length
        if len(tokens) < length and (not tokens or tokens[-1] != eos):
            tokens = tokens + [eos]
        return tokens + [pad] * (length - len(tokens))


def _unpadded(prompts: torch.Tensor, prompt_mask: torch.Tensor | None) -> list[list[int]]:
    if prompt_mask is None:
        return prompts.tolist()
    return [row[m.bool()].tolist() for row, m in zip(prompts.cpu(), prompt_mask.cpu())]


class _Shared:
    """One vLLM engine of a process, built from the first module it is given."""

    def __init__(self, device: torch.device, max_len: int, memory: float):
        self.device, self.max_len, self.memory = device, max_len, memory
        self.llm, self.folder, self.asleep = None, None, False
        self.holding, self.pushed_at = None, None  # weakref to the module whose weights it holds; its step

    def push(self, model, step: int | None = None) -> None:
        if self.llm is None:
            self._start(model)
        elif self.holding is not None and self.holding() is model and step is not None and step == self.pushed_at:
            return
        else:
            self._wake()
            state = [(name, value.detach()) for name, value in model.state_dict().items()]
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(state),
                                                               "is_checkpoint_format": True})
        self.holding, self.pushed_at = weakref.ref(model), step

    def generate(self, model, prompts: list[list[int]], params: list) -> list[list[int]]:
        from vllm.inputs import TokensPrompt

        if self.llm is None or self.holding is None or self.holding() is not model:
            self.push(model)
        self._wake()
        threads = torch.get_num_threads()
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        torch.set_num_threads(threads)
        return [list(o.outputs[0].token_ids) for o in outputs]

    def sleep(self) -> None:
        if self.llm is not None and self.device.type == "cuda" and not self.asleep:
            self.llm.sleep(level=1)  # weights to host memory, KV cache freed
            self.asleep = True

    def _wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    def _start(self, model) -> None:
        check_supported(model, self.device)
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # in this process: colocated, no spawn
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # its CPU-backend warnings fill job logs
        from vllm import LLM

        self.folder = tempfile.mkdtemp(prefix="specc-vllm-")
        model.save_pretrained(self.folder)
        # vLLM's CPU worker seeds the global generators and replaces torch.set_num_threads
        # with a no-op: the learner's thread count and randomness are its own, so both are
        # put back
        set_threads, threads = torch.set_num_threads, torch.get_num_threads()
        states = random.getstate(), np.random.get_state()
        launcher = {key: os.environ.get(key) for key in _LAUNCHER_VARIABLES}
        with torch.random.fork_rng(devices=[]):
            self.llm = LLM(model=self.folder, skip_tokenizer_init=True, generation_config="vllm",
                           dtype="float32" if self.device.type == "cpu" else "bfloat16",
                           enforce_eager=self.device.type == "cpu", gpu_memory_utilization=self.memory,
                           max_model_len=self.max_len, max_num_seqs=MAX_ROWS,
                           kv_cache_memory_bytes=kv_cache_bytes(model.config, MAX_ROWS, self.max_len,
                                                                4 if self.device.type == "cpu" else 2),
                           distributed_executor_backend="uni", seed=0,
                           enable_sleep_mode=self.device.type == "cuda")
        torch.set_num_threads = set_threads
        torch.set_num_threads(threads)
        _restore(launcher, _LAUNCHER_VARIABLES)
        random.setstate(states[0])
        np.random.set_state(states[1])
        weakref.finalize(self, shutil.rmtree, self.folder, True)


# vLLM's CPU platform sets torch.distributed's launcher variables (LOCAL_WORLD_SIZE, ...) in
# this process's environment; left there, a job launched later from it (a SLURM job of several
# ranks submitted by the same process) would inherit them and refuse to start
_LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _restore(saved: dict, keys) -> None:
    for key in keys:
        if saved[key] is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved[key]


def kv_cache_bytes(config, rows: int, max_len: int, dtype_bytes: int) -> int:
    """The KV cache the engine reserves: `rows` sequences of `max_len` tokens (in whole blocks),
    keys and values of every layer. Sized to the job, not to a share of the device, so a
    colocated engine takes what sampling needs and the learner keeps the rest."""
    layers = getattr(config, "num_hidden_layers", None) or config.n_layer
    heads = getattr(config, "num_attention_heads", None) or config.n_head
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    width = getattr(config, "hidden_size", None) or config.n_embd
    head_size = getattr(config, "head_dim", None) or width // heads
    blocks = rows * -(-max_len // BLOCK) + 1
    return blocks * BLOCK * 2 * layers * kv_heads * head_size * dtype_bytes


def check_supported(model, device: torch.device) -> None:
    """A model vLLM's CPU attention has no kernel for fails here, saying why, not mid-run."""
    config = model.config
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None)
    width = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    head_size = getattr(config, "head_dim", None) or (width // heads if width and heads else None)
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        # vLLM would join the job's process group as its own world of one; untested, refused
        raise ValueError("engine vllm: a job of several ranks samples with engine hf for now")
    if device.type == "cpu" and head_size is not None and head_size not in CPU_HEAD_SIZES:
        raise ValueError(f"engine vllm: the policy's attention heads have {head_size} dimensions, but vLLM's CPU "
                         f"attention supports {', '.join(map(str, CPU_HEAD_SIZES))}: use engine hf, or a wider "
                         "model (tiny sizes M and L have 32)")


__all__ = ["VllmEngine", "check_supported", "kv_cache_bytes", "DEFAULT_MEMORY"]
