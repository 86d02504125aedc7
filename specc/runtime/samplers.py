"""Where an align step's labelled pairs come from: offline, online, or replay of an online stream.

A sampler is called with the step number and returns (prompt, chosen,
rejected) token tensors plus metrics. All randomness is drawn from
generators seeded by (seed, purpose, step).
"""

from __future__ import annotations

import numpy as np
import torch

from specc.runtime.artifacts import read_pairs, read_prompts, read_tokens, task_info, write_tokens
from specc.runtime.context import JobContext
from specc.runtime.judges import load_judge
from specc.runtime.jobdir import JobDir
from specc.runtime.loop import batch_indices, step_generator
from specc.runtime.models import sample

STREAM_DIR = "stream"


class OfflineSampler:
    def __init__(self, ctx: JobContext):
        pairs = read_pairs(ctx.upstream("sampler.offline"))
        self.pairs = {k: torch.from_numpy(v) for k, v in pairs.items()}
        self.train = ctx.config["train"]

    def __call__(self, step: int):
        idx = batch_indices(len(self.pairs["prompt"]), self.train["batch_size"], self.train["seed"], step)
        return self.pairs["prompt"][idx], self.pairs["chosen"][idx], self.pairs["rejected"][idx], {}


class OnlineSampler:
    """Sample two responses per prompt from the current policy; the judge labels them.

    Every labelled batch is recorded, as token ids with its step, in
    artifacts/stream/ (flushed with each checkpoint) for tandem replay."""

    def __init__(self, ctx: JobContext, policy):
        self.ctx, self.policy = ctx, policy
        self.train = ctx.config["train"]
        self.label_mode = ctx.config["sampler"]["label"]
        self.prompts = torch.from_numpy(read_prompts(ctx.upstream("prompts"), "train"))
        self.response_len = task_info(ctx.upstream("prompts"))["response_len"]
        self.judge = load_judge(ctx.upstream("sampler.online"))
        self.golden = load_judge(ctx.upstream("evaluate.judge")) if ctx.has("evaluate.judge") else None
        self.buffer: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.last_flush: int | None = None

    def __call__(self, step: int):
        seed = self.train["seed"]
        idx = batch_indices(len(self.prompts), self.train["batch_size"], seed, step)
        prompts = self.prompts[idx]
        generator = step_generator(seed, "sample", step)
        first = sample(self.policy, prompts, self.response_len, generator)
        second = sample(self.policy, prompts, self.response_len, generator)
        p_first = torch.from_numpy(np.asarray(self.judge.prob_first(prompts, first, second), dtype=np.float64))
        if self.label_mode == "argmax":
            first_wins = p_first >= 0.5  # a tie keeps the first sample as the winner
        else:
            first_wins = torch.rand(len(p_first), generator=step_generator(seed, "label", step), dtype=torch.float64) < p_first
        chosen = torch.where(first_wins[:, None], first, second)
        rejected = torch.where(first_wins[:, None], second, first)
        if self.last_flush is None:
            self.last_flush = step
        self.buffer.append((step, prompts, chosen, rejected))
        metrics = {}
        if self.golden is not None:
            golden = torch.from_numpy(np.asarray(self.golden.prob_first(prompts, chosen, rejected)))
            metrics["online/judge_accuracy_golden"] = torch.where(golden == 0.5, 0.5, (golden > 0.5).double()).mean().item()
        return prompts, chosen, rejected, metrics

    def flush(self, done: int) -> None:
        if not self.buffer:
            return
        steps = np.concatenate([np.full(len(p), s, dtype=np.int64) for s, p, _, _ in self.buffer])
        columns = {name: np.concatenate([b[i].numpy() for b in self.buffer]) for i, name in
                   ((1, "prompt"), (2, "chosen"), (3, "rejected"))}
        write_tokens(self.ctx.job.artifacts / STREAM_DIR / f"part-{self.last_flush:08d}-{done:08d}.parquet",
                     columns, extra={"step": steps})
        self.buffer, self.last_flush = [], None



def read_stream(job: JobDir) -> dict[str, np.ndarray]:
    parts = sorted((job.artifacts / STREAM_DIR).glob("part-*.parquet"))
    if not parts:
        raise FileNotFoundError(f"{job.path}: no recorded online stream")
    tables = [read_tokens(p) for p in parts]
    out = {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}
    order = np.argsort(out["step"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def shuffle_order(n: int, level: float, generator: torch.Generator) -> torch.Tensor:
    """A permutation between the recorded order (level 0) and uniform (level 1): sort
    by (1 - level) * position / n + level * U(0, 1), so each example moves about
    level * n places."""
    if level == 0:
        return torch.arange(n)
    keys = (1 - level) * torch.arange(n, dtype=torch.float64) / n + level * torch.rand(n, generator=generator, dtype=torch.float64)
    return torch.argsort(keys, stable=True)


class ReplaySampler:
    """Offline training on an online run's recorded stream, in its order or shuffled."""

    def __init__(self, ctx: JobContext):
        stream = read_stream(ctx.upstream("sampler.replay"))
        self.train = ctx.config["train"]
        batch = self.train["batch_size"]
        per_step = np.bincount(stream["step"])
        if len(per_step) and per_step.max() != batch:
            raise ValueError(f"replay batch_size {batch} differs from the online run's {per_step.max()}: "
                             "steps would not line up with the recorded batches")
        if self.train["steps"] * batch > len(stream["step"]):
            raise ValueError(f"replay asks for {self.train['steps']} steps; the stream holds {len(stream['step']) // batch}")
        order = shuffle_order(len(stream["step"]), ctx.config["sampler"]["shuffle"],
                              step_generator(self.train["seed"], "shuffle", 0))
        self.data = {k: torch.from_numpy(stream[k])[order] for k in ("prompt", "chosen", "rejected")}

    def __call__(self, step: int):
        sl = slice(step * self.train["batch_size"], (step + 1) * self.train["batch_size"])
        return self.data["prompt"][sl], self.data["chosen"][sl], self.data["rejected"][sl], {}


__all__ = ["OfflineSampler", "OnlineSampler", "ReplaySampler", "read_stream", "shuffle_order"]
