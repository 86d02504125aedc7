"""Each job's peak memory, estimated from model shapes before anything runs (no torch here).

A training job keeps float32 master weights, gradients and two AdamW moments (16 bytes a
parameter, sharded over the stage's GPUs), a bf16 copy of its weights under autocast, its
frozen models in their saved dtype (an align job's reference, and an online one's judges,
sharded over its GPUs like the policy plus one gathered block; other judges, once each, whole), and
at its peak the largest of: one micro-batch's saved activations and logits, one chunk of
sampling (its KV cache), one chunk of judging (with the judges that wait on the host between
evaluations). Activations per token and layer are 10 d + 2 I elements (d the
width, I the MLP width: inputs of the norms, projections, attention and MLP, measured on
GPTNeoX), or d under activation checkpointing plus one layer recomputed; logits are kept only
at response positions. `tests/runtime/test_memory_estimate.py` checks the parameter and
activation terms and a training step's peak (CPU, float32) against models built from config;
the GPU figures (bf16 compute) are unmeasured.

`specc plan` shows the estimate; `specc validate` refuses a job that cannot fit its stage's
resources and names the settings that would make it fit.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from specc.compiler.schema import ExecutorSettings
from specc.errors import SpecError

GB = 1e9
HOST_BASE = 4 * GB  # python, torch, CUDA context, data tables
ROWS_PER_CHUNK = 64  # rows of a gradient-free forward (runtime.models.ROWS_PER_FORWARD)
ROWS_PER_SAMPLE = 16  # prompts sampled at once on padded data (runtime.models.ROWS_PER_SAMPLE)
TINY_SIZES = {"XS": (32, 1, 2), "S": (64, 2, 4), "M": (128, 2, 4), "L": (192, 3, 6)}  # = runtime.models.TINY_SIZES


@dataclass(frozen=True)
class Shape:
    """A transformer's dimensions: width, layers, MLP width, vocabulary, tied embeddings."""

    width: int
    layers: int
    mlp: int
    vocab: int
    tied: bool = False
    positions: int = 0  # learned position table (GPT-2), else 0 (rotary)

    @property
    def params(self) -> int:
        d, i = self.width, self.mlp
        per_layer = 4 * d * d + 2 * d * i + 9 * d + i
        return self.vocab * d * (1 if self.tied else 2) + self.positions * d + self.layers * per_layer + 2 * d


# Public configs of the models the paper's specs name (nothing is downloaded to plan).
HUB_SHAPES = {
    "EleutherAI/pythia-70m": Shape(512, 6, 2048, 50304), "EleutherAI/pythia-160m": Shape(768, 12, 3072, 50304),
    "EleutherAI/pythia-410m": Shape(1024, 24, 4096, 50304), "EleutherAI/pythia-1b": Shape(2048, 16, 8192, 50304),
    "EleutherAI/pythia-1.4b": Shape(2048, 24, 8192, 50304), "EleutherAI/pythia-2.8b": Shape(2560, 32, 10240, 50304),
    "EleutherAI/pythia-6.9b": Shape(4096, 32, 16384, 50432), "EleutherAI/pythia-12b": Shape(5120, 36, 20480, 50688),
    "openai-community/gpt2": Shape(768, 12, 3072, 50257, True, 1024), "gpt2": Shape(768, 12, 3072, 50257, True, 1024),
}


def shape_from_config(config: dict) -> Shape | None:
    """A transformers config.json (GPT-2, GPTNeoX, Llama-like) -> Shape."""
    width = config.get("hidden_size") or config.get("n_embd")
    layers = config.get("num_hidden_layers") or config.get("n_layer")
    if not (width and layers and config.get("vocab_size")):
        return None
    mlp = config.get("intermediate_size") or config.get("n_inner") or 4 * width
    gpt2 = config.get("model_type") == "gpt2"
    return Shape(width, layers, mlp, config["vocab_size"], bool(config.get("tie_word_embeddings", gpt2)),
                 config.get("n_positions", 0) if gpt2 else 0)


def model_shape(model: dict, vocab: int) -> Shape | None:
    """The shape of a stage's `model` block; None when it cannot be known without downloading."""
    if model.get("family", "tiny") == "tiny":
        width, layers, _ = TINY_SIZES[model.get("size", "S")]
        return Shape(width, layers, 4 * width, vocab, True, 0)
    name = model["name"]
    path = os.path.join(os.path.expanduser(name), "config.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            return shape_from_config(json.load(fh))
    return HUB_SHAPES.get(name)


@dataclass
class Estimate:
    """Bytes at a job's peak, per GPU (or in host memory for a CPU job), by what holds them."""

    weights: float = 0.0  # trained: float32 masters (+ bf16 autocast copy on a GPU)
    gradients: float = 0.0
    optimizer: float = 0.0
    frozen: float = 0.0  # reference and judges, in their saved dtype
    activations: float = 0.0  # one micro-batch's saved activations and logits
    sampling: float = 0.0  # one sampling chunk's KV cache and kept logits
    judging: float = 0.0  # one chunk of a judge's forward
    host: float = HOST_BASE

    @property
    def device(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.frozen + max(self.activations, self.sampling,
                                                                                    self.judging)

    def to_json(self) -> dict:
        return {**{k: round(v / GB, 2) for k, v in asdict(self).items()}, "device": round(self.device / GB, 2)}


@dataclass(frozen=True)
class Widths:
    prompt: int
    response: int
    vocab: int | None  # None: the model's own (real data, tokenized with its tokenizer)


def _dataset(job, by_id):
    while job.kind != "dataset":
        role = next(r for r in ("prompts", "data", "data.0", "sampler.offline", "init", "a") if r in job.upstream)
        job = by_id[job.upstream[role]]
    return job.config


def _widths(job, by_id) -> Widths:
    data = _dataset(job, by_id)
    if data.get("source", "synthetic") == "synthetic":
        task = data["task"]
        return Widths(task["prompt_len"], task["response_len"], task["vocab"])
    return Widths(data["max_prompt_tokens"], data["max_response_tokens"], None)


def _model_of(job, by_id) -> tuple[dict | None, str]:
    """(model block, saved dtype) of a policy or judge job; an align job's comes from its init."""
    while "model" not in job.config:
        if job.kind == "oracle" or "init" not in job.upstream:
            return None, "float32"
        job = by_id[job.upstream["init"]]
    return job.config["model"], job.config["model"].get("dtype", "float32")


def _shape(job, by_id, widths: Widths) -> tuple[Shape | None, int]:
    """(shape, bytes per saved weight) of the model a job trains or serves."""
    model, dtype = _model_of(job, by_id)
    if model is None:
        return None, 4
    vocab = widths.vocab if widths.vocab is not None else 50304
    extra = 1 if job.kind == "preference_model" or (job.kind == "oracle") else 0
    return model_shape(model, vocab + extra), 2 if dtype == "bfloat16" else 4


def saved_activation_bytes(shape: Shape, rows: int, tokens: int, logit_positions: int, checkpointing: bool,
                           gpu: bool) -> float:
    """What a micro-batch's forward keeps for the backward: per token and layer 10 d + 2 I
    elements (d with checkpointing, plus the final norm's input), and the logits at the
    response positions with their float32 log-softmax."""
    element = 2.4 if gpu else 4.0  # bf16 under autocast, with float32 norms and residuals; float32 on a CPU
    per_token = (shape.layers + 1) * shape.width if checkpointing else shape.layers * (10 * shape.width + 2 * shape.mlp)
    return rows * tokens * per_token * element + logit_positions * shape.vocab * (10 if gpu else 8)


def _activation_bytes(shape: Shape, rows: int, tokens: int, logit_positions: int, train: dict, gpu: bool) -> float:
    """Saved activations at the backward's start, the layer being recomputed (checkpointing)
    and the logits' gradient."""
    checkpointing = bool(train.get("grad_checkpointing"))
    element = 2.4 if gpu else 4.0
    recomputed = rows * tokens * (10 * shape.width + 2 * shape.mlp) * element if checkpointing else 0.0
    return (saved_activation_bytes(shape, rows, tokens, logit_positions, checkpointing, gpu) + recomputed
            + logit_positions * shape.vocab * 4)


VLLM_SHARE = 0.1  # of a GPU's memory a colocated vLLM engine takes while it samples (runtime.engines.vllm)


def estimate(job, by_id, gpus: int = 1, gpu_gb: int = 80) -> Estimate | None:
    """A job's peak memory per GPU (gpus >= 1) or in host memory (gpus = 0); None when a model's
    shape is unknown (a hub name not in HUB_SHAPES and not a local folder). A vLLM engine takes
    its share of a `gpu_gb` GPU while sampling (weights and KV cache; it sleeps in training)."""
    if job.kind in ("dataset", "oracle"):
        return Estimate()
    widths, gpu = _widths(job, by_id), gpus > 0
    shards = max(1, gpus)  # the trained model, the reference and an online job's judges are sharded (FSDP)
    out = Estimate()
    # on a GPU, an align job's judges that only evaluations read wait on the host between them
    parked = gpu and job.kind == "align" and not job.config["sampler"]["online"]
    judges = {job.upstream[r] for r in ("judge", "sampler.online", "evaluate.judge") if r in job.upstream}
    for judge_id in judges:
        shape, nbytes = _shape(by_id[judge_id], by_id, widths)
        if shape is None and by_id[judge_id].kind != "oracle":
            return None
        if shape is not None:
            seq = widths.prompt + 2 * widths.response + 1
            chunk = ROWS_PER_CHUNK * 2 * seq * (2 * shape.width + shape.mlp) * 2
            if parked:
                out.judging += shape.params * nbytes + chunk
            else:
                out.frozen += frozen_bytes(shape, nbytes, shards if _shards_judges(job) else 1)
                out.judging = max(out.judging, chunk)
    if job.kind == "label":
        return out
    shape, nbytes = _shape(job, by_id, widths)
    if shape is None:
        return None
    n, P, R = shape.params, widths.prompt, widths.response
    if job.kind == "pairs":
        out.frozen += n * nbytes
        out.sampling = _sampling_bytes(shape, ROWS_PER_SAMPLE, P + R)
        return out
    train = job.config["train"]
    rows = min(train.get("micro_batch_size") or train["batch_size"], train["batch_size"])
    out.weights = (n * 4 + (n * 2 if gpu else 0)) / shards  # sharded: bf16 copies are made a layer at a time
    out.gradients, out.optimizer = n * 4 / shards, n * 8 / shards
    if job.kind == "sft":
        out.activations = _activation_bytes(shape, rows, P + R, rows * R, train, gpu)
        if job.config["model"].get("family") == "hub":
            out.host += n * 4  # read on the host, then moved (accelerate places it directly)
    elif job.kind == "preference_model":
        pairwise = job.config.get("form", "pairwise") == "pairwise"
        tokens = P + 2 * R + 1 if pairwise else 2 * (P + R)
        out.activations = _activation_bytes(shape, rows, tokens, 0, train, gpu)
        if job.config["model"].get("family") == "hub" and "init" not in job.upstream:
            out.host += n * 4
    else:  # align: the policy, its frozen reference, sampling and evaluation
        out.frozen += frozen_bytes(shape, nbytes, shards)
        family = (_model_of(job, by_id)[0] or {}).get("family", "tiny")
        shared = not (train.get("grad_checkpointing") and family != "tiny")
        tokens = P + 2 * (R - 1) if shared else 2 * (P + R)
        out.activations = _activation_bytes(shape, rows, tokens, 2 * rows * R, train, gpu)
        online_rows = 2 * min(train["batch_size"], ROWS_PER_SAMPLE) if job.config["sampler"]["online"] else 0
        kl = job.config["evaluate"]["kl_prompts"]
        kept_logits = kl * R * shape.vocab * 2 + ROWS_PER_CHUNK * R * shape.vocab * 4
        out.sampling = max(_sampling_bytes(shape, online_rows, P + R),
                           _sampling_bytes(shape, ROWS_PER_SAMPLE, P + R) + kept_logits)
        engines = {job.config["sampler"].get("engine", "hf"), job.config["evaluate"].get("engine", "hf")}
        if "vllm" in engines and gpu:
            out.sampling = max(out.sampling, VLLM_SHARE * gpu_gb * GB + kept_logits)
    return out


def _shards_judges(job) -> bool:
    """Whether a job's judges are sharded over its ranks, as runtime.context loads them: an
    online align job's (an offline one's wait whole on the host between evaluations)."""
    return job.kind == "align" and bool(job.config["sampler"]["online"])


def frozen_bytes(shape: Shape, nbytes: int, shards: int) -> float:
    """A frozen model per GPU: whole on one GPU; over several, its shard and one transformer
    block gathered for the forward under way (runtime.distributed.shard_frozen)."""
    if shards == 1:
        return shape.params * nbytes
    block = 4 * shape.width ** 2 + 2 * shape.width * shape.mlp
    return shape.params * nbytes / shards + block * nbytes


def _sampling_bytes(shape: Shape, rows: int, length: int) -> float:
    """A chunk's KV cache in bf16 (keys and values of every layer), and its decoding step."""
    return rows * length * shape.layers * 2 * shape.width * 2 + rows * shape.vocab * 4


def resources(executor: ExecutorSettings, stage: str) -> tuple[int, int, int]:
    """(gpus, GPU memory in GB, host memory in GB) a stage's jobs get."""
    settings = executor.for_stage(stage)
    return settings.gpus, settings.gpu_mem_gb, settings.mem_gb


def plan_memory(plan) -> dict[str, dict | None]:
    """Job id -> its estimate (GB, per GPU) and the resources it is checked against."""
    by_id = plan.by_id()
    out = {}
    for job in plan.jobs:
        gpus, gpu_gb, host_gb = resources(plan.executor, job.stage)
        found = estimate(job, by_id, gpus, gpu_gb)
        sharded = [] if gpus < 2 or job.kind != "align" else ["reference", *(["judges"] if _shards_judges(job) else [])]
        out[job.id] = None if found is None else {**found.to_json(), "gpus": gpus, "gpu_mem_gb": gpu_gb,
                                                   "frozen_sharded": sharded,
                                                   "mem_gb": host_gb, "fits": _fits(found, gpus, gpu_gb, host_gb)}
    return out


def _fits(found: Estimate, gpus: int, gpu_gb: int, host_gb: int) -> bool:
    """Per GPU against `gpu_gb`; on the host, every rank (one per GPU) against the job's `mem_gb`."""
    if gpus == 0:
        return found.host + found.device <= host_gb * GB
    return found.device <= gpu_gb * GB and found.host * gpus <= host_gb * GB


def memory_errors(plan, source) -> list[SpecError]:
    """A located error for each stage with a job that cannot fit its resources (checked where
    the executor promises them: SLURM), naming the settings that would make it fit."""
    if plan.executor.kind != "slurm":
        return []
    by_id, errors, seen = plan.by_id(), [], set()
    for job in plan.jobs:
        gpus, gpu_gb, host_gb = resources(plan.executor, job.stage)
        found = estimate(job, by_id, gpus, gpu_gb)
        if found is None or job.stage in seen or _fits(found, gpus, gpu_gb, host_gb):
            continue
        seen.add(job.stage)
        where = ("stages", job.stage)
        swept = ", ".join(f"{k}={v}" for k, v in job.sweep.items()) or "unswept"
        need = found.device if gpus else found.host + found.device
        have = f"{gpu_gb} GB per GPU" if gpus else f"{host_gb} GB"
        errors.append(SpecError(source.locate(where), ".".join(where),
                                f"job {job.id} ({swept}) needs ~{need / GB:.0f} GB "
                                f"({_breakdown(found)}) but has {have}: {_remedy(job, by_id, gpus, gpu_gb, host_gb)}"))
    return errors


def _breakdown(found: Estimate) -> str:
    parts = {k: v for k, v in asdict(found).items() if k != "host" and v >= 0.5 * GB}
    return ", ".join(f"{k} {v / GB:.0f}" for k, v in parts.items()) or "small"


def _remedy(job, by_id, gpus: int, gpu_gb: int, host_gb: int) -> str:
    """The first settings that fit: checkpointing, then smaller micro-batches, then more GPUs."""
    from dataclasses import replace

    train = job.config.get("train")
    tries = []
    if train is not None:
        tries.append({"grad_checkpointing": True})
        micro = train["batch_size"]
        while micro > 1:
            micro //= 2
            tries.append({"grad_checkpointing": True, "micro_batch_size": micro})
    for more in (2, 4, 8):
        for knobs in tries[-1:] or [{}]:
            tries.append({**knobs, "gpus": max(gpus, 1) * more})
    for knobs in tries:
        config = dict(job.config)
        if train is not None:
            config["train"] = {**train, **{k: v for k, v in knobs.items() if k != "gpus"}}
        found = estimate(replace(job, config=config), by_id, knobs.get("gpus", gpus), gpu_gb)
        if found is not None and _fits(found, knobs.get("gpus", gpus), gpu_gb, host_gb):
            return "it fits with " + ", ".join(
                f"executor.stages.{job.stage}.gpus: {v}" if k == "gpus" else f"train.{k}: {str(v).lower()}"
                for k, v in knobs.items())
    return "it does not fit even on 8 GPUs with checkpointing and micro-batches of 1: use a smaller model"
