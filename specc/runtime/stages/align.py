"""Policy optimisation: a sampler feeds labelled pairs, a loss moves the policy from its init."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from specc.contracts import RUNTIME_VERSION
from specc.runtime import distributed
from specc.runtime.batch import pair_logps, take, to_device
from specc.runtime.context import JobContext, policy_file
from specc.runtime.device import precision
from specc.runtime.evaluation import Evaluator
from specc.runtime.losses import preference_loss
from specc.runtime.loop import Learner, make_optimizer, run_loop
from specc.runtime.microbatch import accumulated_update, enable_checkpointing, share, total_loss, trimmed
from specc.runtime.models import master_weights, weights_dtype
from specc.runtime.samplers import make_sampler

PRECOMPUTE_BATCH = 256  # pairs per reference forward when precomputing (512 sequences)
# Precompute when a run visits at least a quarter of the table: up front, a pair costs about
# a third of what it costs inside a step (no graph, large batches), and the cached table
# serves the sweep's other jobs.
PRECOMPUTE_WORTH = 4


def run_align(ctx: JobContext) -> dict:
    learner = build_align(ctx)
    run_loop(ctx.job, learner, ctx.stop_after)
    learner.save_fn(None)
    return {}


def build_align(ctx: JobContext) -> Learner:
    """The policy, its update step and its evaluation, ready for `run_loop` (benchmarks call
    `step_fn` and `eval_fn` directly)."""
    config, train, device = ctx.config, ctx.config["train"], ctx.device
    reference = ctx.policy("init")  # pi_sft in the paper: the init, frozen, in its saved dtype
    saved_dtype = weights_dtype(reference)  # the policy is saved as its init was
    reference = distributed.shard_frozen(reference)  # over the ranks, as the trained policy is
    policy = master_weights(ctx.policy("init"))
    if train.get("grad_checkpointing"):
        enable_checkpointing(policy)
    policy = distributed.shard(policy, device)
    optimizer, scheduler = make_optimizer(policy, train)
    sampler = make_sampler(ctx, policy)
    loss_cfg = config["loss"]
    reference_logps = ReferenceLogps(reference, loss_cfg["normalize"], sampler, train, device,
                                     ReferenceCache.for_job(ctx, sampler))
    evaluator = Evaluator(ctx, policy, reference)

    def step_fn(step: int) -> dict:
        batch, metrics = sampler(step)
        ref_chosen, ref_rejected = reference_logps(step, batch)
        rows = len(batch["prompt"])

        def loss_of(part: slice):
            pol_chosen, pol_rejected = pair_logps(policy, trimmed(take(batch, part)), loss_cfg["normalize"], device)
            loss, h = preference_loss(loss_cfg["name"], loss_cfg["beta"], pol_chosen, pol_rejected,
                                      ref_chosen[part], ref_rejected[part], loss_cfg)
            return loss * share(part, rows), (h.detach(), pol_chosen.detach(), pol_rejected.detach())

        kept = accumulated_update(policy, optimizer, scheduler, train, rows, loss_of)
        h, pol_chosen, pol_rejected = (torch.cat(parts) for parts in zip(*(extra for _, extra in kept)))
        # the global batch's statistics (this rank's share is all of it on one process)
        h, pol_chosen, pol_rejected = (distributed.gather(t) for t in (h, pol_chosen, pol_rejected))
        return {**metrics, "train/loss": distributed.mean(total_loss(kept)), "train/margin_mean": h.mean().item(),
                "train/margin_std": h.std().item() if len(h) > 1 else 0.0,
                "train/logp_chosen": pol_chosen.mean().item(), "train/logp_rejected": pol_rejected.mean().item()}

    def save_fn(step: int | None) -> None:
        distributed.save_policy(policy, policy_file(ctx.job, step), saved_dtype)

    return Learner(policy, train, step_fn, eval_fn=evaluator, optimizer=optimizer, scheduler=scheduler, save_fn=save_fn,
                   flush_fn=getattr(sampler, "flush", None))


class ReferenceLogps:
    """The frozen reference's sequence log-probs of a step's pairs, as (chosen, rejected).

    Offline and replay samplers draw rows of a fixed table of pairs. When a run visits a
    large enough share of the table, each pair's reference log-probs are computed once, up
    front, in large batches, and looked up by row: the reference forward (a quarter of an
    offline step) leaves the step. The table is cached in the workspace, so every job of a
    sweep over the same reference and data (an offline beta sweep; exact and shuffled
    replays of one stream) reuses it. Rows do not interact in a forward, so a looked-up
    value is bit-identical to one computed inside the step's batch, and results do not
    depend on the path a run takes (the exact-replay test compares an online run,
    reference in the step, with its precomputed replay). Online pairs are new every step
    and always go through the forward."""

    def __init__(self, reference, normalize: str, sampler, train: dict, device: torch.device,
                 cache: "ReferenceCache | None" = None):
        self.reference, self.normalize, self.device = reference, normalize, device
        self.table = None
        if sampler.table is not None:  # rows of a fixed pair table
            self.pairs, self.rows = sampler.pairs, sampler.rows
            visited = train["steps"] * train["batch_size"]
            cached = cache.load() if cache else None
            if not distributed.every_rank(cached is not None):  # all ranks precompute, or none
                cached = None
            if cached is not None:
                self.table = cached
            elif visited * PRECOMPUTE_WORTH >= len(self.pairs["prompt"]):
                self.table = self._precompute(self.pairs)
                if cache:
                    cache.save(self.table)
            if self.table is not None:
                self.table = tuple(t.to(device) for t in self.table)

    def __call__(self, step: int, batch: dict):
        if self.table is not None:
            rows = self.rows(step)
            # a guard, not a lookup key: if the sampler ever drew differently, compute instead
            # (on every rank, whose sharded reference forwards go together)
            if distributed.every_rank(all(torch.equal(self.pairs[name][rows].to(self.device), batch[name])
                                          for name in ("prompt", "chosen", "rejected"))):
                rows = rows.to(self.device)
                return self.table[0][rows], self.table[1][rows]
        with torch.no_grad():
            return pair_logps(self.reference, batch, self.normalize, self.device)

    @torch.no_grad()
    def _precompute(self, pairs) -> tuple[torch.Tensor, torch.Tensor]:
        chosen, rejected = [], []
        for i in range(0, len(pairs["prompt"]), PRECOMPUTE_BATCH):
            rows = to_device(take(pairs, slice(i, i + PRECOMPUTE_BATCH)), self.device)
            c, r = pair_logps(self.reference, rows, self.normalize, self.device)
            chosen.append(c.cpu())
            rejected.append(r.cpu())
        return torch.cat(chosen), torch.cat(rejected)


class ReferenceCache:
    """A precomputed reference table in the workspace, keyed by everything its bits depend on:
    the reference checkpoint, the pair table, the normalisation, threads, device, runtime."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def for_job(cls, ctx: JobContext, sampler) -> "ReferenceCache | None":
        if sampler.table is None:
            return None
        name, role = sampler.table
        table = (name, ctx.job_json["upstream"][role])
        train = ctx.config["train"]
        key = json.dumps({"reference": ctx.job_json["upstream"]["init"], "step": ctx.job_json.get("upstream_steps", {}).get("init"),
                          "table": table, "normalize": ctx.config["loss"]["normalize"], "threads": train["threads"],
                          "device": ctx.device.type, "precision": precision(ctx.device), "runtime": RUNTIME_VERSION},
                         sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return cls(ctx.jobs_root.parent / "cache" / "reference-logps" / f"{digest}.pt")

    def load(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self.path.exists():
            return None
        try:
            saved = torch.load(self.path, weights_only=True)
        except Exception:  # a torn or foreign file is recomputed, never trusted
            return None
        return saved["chosen"], saved["rejected"]

    def save(self, table: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        torch.save({"chosen": table[0], "rejected": table[1]}, tmp)
        os.replace(tmp, self.path)

