"""The training loop every learner shares: steps, evaluation cadence, checkpoints, resume.

Randomness is stateless: each draw uses a generator seeded from
(seed, purpose, step), so a resumed job needs only the model, optimiser and
step to continue bit-identically, and a replay can line its steps up with
the online run it replays.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from typing import Callable

import torch

from specc.runtime import distributed
from specc.runtime.divergence import check_parameters, check_step_metrics
from specc.runtime.jobdir import JobDir
from specc.runtime.progress import open_progress


def step_generator(seed: int, purpose: str, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator for one draw; on a GPU, for draws made there (e.g. sampling)."""
    digest = hashlib.sha256(f"{seed}/{purpose}/{step}".encode()).digest()
    return torch.Generator(device).manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """Examples for `step`: consecutive slices of one fresh permutation per epoch."""
    start = step * batch_size
    out = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n)
        perm = torch.randperm(n, generator=step_generator(seed, "epoch", epoch))
        take = min(batch_size - len(out), n - offset)
        out.extend(perm[offset: offset + take].tolist())
    return torch.tensor(out, dtype=torch.long)


def make_optimizer(model: torch.nn.Module, train: dict):
    """AdamW over float32 master weights (state in float32 too); refuses lower-precision weights,
    whose updates at small learning rates would mostly round away."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    low = sorted({str(p.dtype) for p in parameters if p.dtype != torch.float32})
    if low:
        raise ValueError(f"training needs float32 master weights, got {', '.join(low)} parameters "
                         "(models.master_weights makes them; bf16 is the compute dtype, under autocast)")
    # one fused kernel for every parameter (4-5x faster than the per-tensor loop on a CPU);
    # other devices keep torch's default implementation
    fused = all(p.device.type in ("cpu", "cuda") for p in parameters) or None
    optimizer = torch.optim.AdamW(parameters, lr=train["lr"], weight_decay=train["weight_decay"], fused=fused)
    warmup = train["warmup"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    return optimizer, scheduler


def apply_update(model: torch.nn.Module, optimizer, scheduler, loss: torch.Tensor, grad_clip: float | None) -> None:
    """One optimiser step on `loss`: backward, optional global-norm clipping, step, schedule."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()


@dataclass
class Learner:
    """What the loop drives. `step_fn(step) -> {metric: value}` does one update."""

    model: torch.nn.Module
    train: dict
    step_fn: Callable[[int], dict]
    eval_fn: Callable[[int], dict] | None = None
    save_fn: Callable[[int], None] | None = None  # named checkpoints (train.save_at)
    flush_fn: Callable[[int], None] | None = None  # e.g. the online stream, at each checkpoint
    optimizer: torch.optim.Optimizer = None
    scheduler: object = None


class Interrupted(Exception):
    """Raised after the checkpoint at `stop_after`: the job stops as if pre-empted there."""


def run_loop(job: JobDir, learner: Learner, stop_after: int | None = None) -> int:
    """Train to `train.steps`, resuming from the job's checkpoint if there is one."""
    train = learner.train
    start = _resume(job, learner)
    pending: list[tuple[int, str, float]] = []
    last_flush = start
    # progress.json and the spec's metric sinks, written by the job's rank 0 only
    progress = open_progress(job, train["steps"], start) if distributed.is_main() else distributed.NoProgress()
    for step in range(start, train["steps"]):
        if learner.eval_fn and evaluates_at(train, step):
            _evaluate(job, learner, step, progress)
        metrics = learner.step_fn(step)
        check_step_metrics(step + 1, metrics)
        pending += _rows(step + 1, metrics)
        done = step + 1
        progress.step(done, metrics)
        if learner.save_fn and done in train["save_at"] and done != train["steps"]:
            learner.save_fn(done)
        if done % train["checkpoint_every"] == 0 or done == train["steps"]:
            check_parameters(done, learner.model)
            if learner.flush_fn:
                learner.flush_fn(done)
            job.write_metrics(f"train-{last_flush:08d}-{done:08d}", pending)
            pending, last_flush = [], done
            _checkpoint(job, learner, done)
            if stop_after is not None and done >= stop_after and done != train["steps"]:
                progress.close()
                raise Interrupted(done)
    if learner.eval_fn:
        _evaluate(job, learner, train["steps"], progress)
    progress.close()
    return train["steps"]


def _evaluate(job: JobDir, learner: Learner, step: int, progress) -> None:
    metrics = learner.eval_fn(step)
    job.write_metrics(f"eval-{step:08d}", _rows(step, metrics))
    progress.evaluated(step, metrics)


def evaluates_at(train: dict, step: int) -> bool:
    """Step 0, every `eval_every` steps, and the extra steps of `eval_at` (the end always)."""
    return step % train["eval_every"] == 0 or step in train.get("eval_at", ())


def _rows(step: int, metrics: dict) -> list[tuple[int, str, float]]:
    return [(step, name, float(value)) for name, value in metrics.items()]


def _checkpoint(job: JobDir, learner: Learner, step: int) -> None:
    if distributed.world() > 1:  # sharded: every rank writes its part
        return distributed.save_checkpoint(job.checkpoint_dir, step, learner.model, learner.optimizer,
                                           learner.scheduler)
    state = {"step": step, "model": learner.model.state_dict(), "optimizer": learner.optimizer.state_dict(),
             "scheduler": learner.scheduler.state_dict()}
    path = job.checkpoint_dir / "state.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    # unique per process and attempt: a requeued attempt never writes into a dying one's file
    tmp = path.with_name(f"state.pt.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _resume(job: JobDir, learner: Learner) -> int:
    if distributed.world() > 1:
        return distributed.load_checkpoint(job.checkpoint_dir, learner.model, learner.optimizer, learner.scheduler)
    path = job.checkpoint_dir / "state.pt"
    if not path.exists():
        return 0
    # straight onto the model's device: a GPU job resumes without a host copy per tensor
    device = next(learner.model.parameters()).device
    state = torch.load(path, weights_only=False, map_location=device)
    learner.model.load_state_dict(state["model"])
    learner.optimizer.load_state_dict(state["optimizer"])
    learner.scheduler.load_state_dict(state["scheduler"])
    return state["step"]


def release_checkpoint(job: JobDir, train: dict | None) -> int:
    """Once a job is done: remove its resume state (the optimiser's moments are twice the
    weights; the final weights are in artifacts/) unless `train.keep_optimizer_state`, and
    return the bytes the job keeps on disk."""
    if train is not None and not train.get("keep_optimizer_state"):
        for path in job.checkpoint_dir.glob("state.pt*"):
            path.unlink(missing_ok=True)
        for path in job.checkpoint_dir.glob("step-*"):  # a sharded checkpoint (runtime.distributed)
            shutil.rmtree(path, ignore_errors=True)
        (job.checkpoint_dir / distributed.LATEST).unlink(missing_ok=True)
    return sum(p.stat().st_size for p in job.path.rglob("*") if p.is_file())
