"""Where an align step's labelled pairs come from: offline, online, or replay of an online stream.

A sampler is built from the job's context and the policy being trained, is called with the
step number and returns a batch (a dict of token tensors, see runtime.batch) on the job's
device, plus metrics. All randomness is drawn from generators seeded by (seed, purpose, step).
A sampler that draws rows of a fixed pair table says so in `table` (its name in the reference
cache's key, and the upstream role holding the table) and has `pairs` and `rows(step)`: the
align stage then precomputes the reference's log-probs of the table. SAMPLER_CLASSES, at the
end, maps each `sampler:` key of a spec (contracts.SAMPLERS) to its class.
"""

from __future__ import annotations

import numpy as np
import torch

from specc.contracts import STREAM_DIR
from specc.runtime import distributed
from specc.runtime.artifacts import read_pairs, read_prompt_set, read_tokens, task_info, write_tokens
from specc.runtime.batch import Responder, mask, order_pairs, take, to_device
from specc.runtime.context import JobContext
from specc.runtime.device import autocast
from specc.runtime.engines import Draw, open_engine
from specc.runtime.jobdir import JobDir
from specc.runtime.loop import batch_indices, step_generator


class OfflineSampler:
    table = ("offline", "sampler.offline")

    def __init__(self, ctx: JobContext, policy=None):
        pairs = read_pairs(ctx.upstream("sampler.offline"))
        self.pairs = {k: torch.from_numpy(v) for k, v in pairs.items()}
        self.train, self.device = ctx.config["train"], ctx.device

    def rows(self, step: int) -> torch.Tensor:
        """The step's rows of the table (this rank's share of them)."""
        return distributed.share(batch_indices(len(self.pairs["prompt"]), self.train["batch_size"],
                                               self.train["seed"], step))

    def __call__(self, step: int):
        return to_device(take(self.pairs, self.rows(step)), self.device), {}


class OnlineSampler:
    """Sample two responses per prompt from the current policy; the judge labels them.

    Every labelled batch is recorded, as token ids with its step, in
    artifacts/stream/ (flushed with each checkpoint) for tandem replay. A job of several
    ranks samples and labels each rank's share of the prompts, with the draws one process
    would make for them; rank 0 records the whole batch, in one process's order."""

    table = None  # new pairs every step

    def __init__(self, ctx: JobContext, policy):
        self.ctx, self.policy = ctx, policy
        self.train = ctx.config["train"]
        self.label_mode = ctx.config["sampler"]["label"]
        self.device = ctx.device
        prompts, prompt_mask = read_prompt_set(ctx.upstream("prompts"), "train")
        self.prompts = {"prompt": torch.from_numpy(prompts)}
        if prompt_mask is not None:
            self.prompts["prompt_mask"] = torch.from_numpy(prompt_mask)
        self.respond = Responder.for_task(task_info(ctx.upstream("prompts")))
        settings = ctx.config["sampler"]
        self.engine = open_engine(settings.get("engine", "hf"), self.respond, ctx.device, prompts.shape[1])
        self.sync_every, self.synced_at = settings.get("sync_every", 1), None
        self.judge = ctx.judge("sampler.online")
        self.golden = ctx.judge("evaluate.judge") if ctx.has("evaluate.judge") else None
        self.buffer: list[tuple[int, dict]] = []
        self.last_flush: int | None = None

    def __call__(self, step: int):
        seed = self.train["seed"]
        every = batch_indices(len(self.prompts["prompt"]), self.train["batch_size"], seed, step)
        idx = distributed.share(every)
        rows = to_device(take(self.prompts, idx), self.device)
        prompts, prompt_mask = rows["prompt"], mask(rows, "prompt")
        if self.synced_at is None or step % self.sync_every == 0:
            self.engine.sync(self.policy, step)
            self.synced_at = step
        with autocast(self.device):  # both samples of every prompt decode as one batch: half the per-token steps
            samples, sample_mask = self.engine.sample(self.policy, prompts, prompt_mask, Draw(seed, "sample", step),
                                                      copies=2, draw_rows=distributed.draw_rows(len(every), copies=2))
        self.engine.sleep()  # the learner trains on the memory an engine held
        first, second = samples.chunk(2)
        first_mask, second_mask = (None, None) if sample_mask is None else sample_mask.chunk(2)
        p_first = torch.from_numpy(np.asarray(self.judge.prob_first(prompts, first, second, prompt_mask=prompt_mask,
                                                                    first_mask=first_mask, second_mask=second_mask),
                                              dtype=np.float64))
        if self.label_mode == "argmax":
            first_wins = p_first >= 0.5  # a tie keeps the first sample as the winner
        else:
            draws = torch.rand(len(every), generator=step_generator(seed, "label", step), dtype=torch.float64)
            first_wins = distributed.share(draws) < p_first
        batch = order_pairs(prompts, first, second, first_wins[:, None].to(self.device), prompt_mask,
                            first_mask, second_mask)
        self._record(step, batch)
        metrics = {} if self.engine.name == "hf" else {"online/policy_lag": step - self.synced_at}
        if self.golden is not None:
            golden = torch.from_numpy(np.asarray(self.golden.prob_first(
                prompts, batch["chosen"], batch["rejected"], prompt_mask=prompt_mask,
                first_mask=mask(batch, "chosen"), second_mask=mask(batch, "rejected"))))
            accuracy = torch.where(golden == 0.5, 0.5, (golden > 0.5).double()).mean()
            metrics["online/judge_accuracy_golden"] = distributed.mean(accuracy)
        return batch, metrics

    def _record(self, step: int, batch: dict) -> None:
        whole = {name: distributed.gather(values) for name, values in batch.items()}
        if not distributed.is_main():
            return
        if self.last_flush is None:
            self.last_flush = step
        self.buffer.append((step, {name: values.cpu() for name, values in whole.items()}))

    def flush(self, done: int) -> None:
        if not self.buffer:
            return
        steps = np.concatenate([np.full(len(b["prompt"]), s, dtype=np.int64) for s, b in self.buffer])
        columns = {name: np.concatenate([b[name].numpy() for _, b in self.buffer]) for name in self.buffer[0][1]}
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

    table = ("stream", "sampler.replay")

    def __init__(self, ctx: JobContext, policy=None):
        stream = read_stream(ctx.upstream("sampler.replay"))
        self.train = ctx.config["train"]
        batch = self.train["batch_size"]
        per_step = np.bincount(stream["step"])
        if len(per_step) and per_step.max() != batch:
            raise ValueError(f"replay batch_size {batch} differs from the online run's {per_step.max()}: "
                             "steps would not line up with the recorded batches")
        if self.train["steps"] * batch > len(stream["step"]):
            raise ValueError(f"replay asks for {self.train['steps']} steps; the stream holds {len(stream['step']) // batch}")
        # the stream in recorded order; `order` is the permutation this run visits it in
        self.order = shuffle_order(len(stream["step"]), ctx.config["sampler"]["shuffle"],
                                   step_generator(self.train["seed"], "shuffle", 0))
        self.pairs = {k: torch.from_numpy(v) for k, v in stream.items() if k != "step"}
        self.device = ctx.device

    def rows(self, step: int) -> torch.Tensor:
        """The step's rows of the stream (this rank's share of them)."""
        return distributed.share(self.order[step * self.train["batch_size"]: (step + 1) * self.train["batch_size"]])

    def __call__(self, step: int):
        return to_device(take(self.pairs, self.rows(step)), self.device), {}


SAMPLER_CLASSES = {"online": OnlineSampler, "offline": OfflineSampler, "replay": ReplaySampler}


def make_sampler(ctx: JobContext, policy):
    """The sampler the align stage's `sampler` block names (exactly one of its sources is set)."""
    (kind,) = [kind for kind in SAMPLER_CLASSES if ctx.config["sampler"].get(kind) is not None]
    return SAMPLER_CLASSES[kind](ctx, policy)


__all__ = ["OfflineSampler", "OnlineSampler", "ReplaySampler", "SAMPLER_CLASSES", "make_sampler", "read_stream",
           "shuffle_order"]
