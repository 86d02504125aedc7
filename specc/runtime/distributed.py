"""Jobs larger than one GPU: N ranks over torch.distributed, the trained model sharded by FSDP2.

A job runs as N ranks when N processes start it: N SLURM tasks launched by submitit (one
GPU each; see runtime.slurm), or any launcher that sets torchrun's variables (RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT), e.g. `torchrun --nproc-per-node N -m
specc.runtime.job <job dir>`. One process is the single-process path, unchanged.

What the ranks share out and what they keep whole:
- every step's global batch is split into N equal, contiguous shares, one per rank; the
  gradient FSDP averages over ranks is then the gradient of the global batch's mean loss;
- draws are made for the global batch (the same generators as one process) and each rank
  takes its rows of them, so N ranks sample what one process samples;
- the trained model is sharded (`fully_shard` per transformer block, then the whole),
  bf16 compute with float32 master weights and reductions on a GPU, float32 on the CPU;
  frozen models are sharded the same way (`shard_frozen`: forward-only, in their saved
  dtype): an align job's reference always, and its judges (proxy and golden preference
  models) when it samples online; an offline job's judges, which only evaluations read and
  which wait on the host between them on a GPU, stay whole (compiler.memory plans the same);
- rank 0 alone writes metrics, status, artifacts and the online stream; evaluation runs on
  every rank (a sharded forward needs them all) and rank 0 records it.

Collectives time out (SPECC_COLLECTIVE_TIMEOUT_S, default 600 s): a rank that dies or
hangs fails the others instead of holding the allocation until its time limit.
"""

from __future__ import annotations

import datetime
import os
import warnings

import torch
import torch.distributed as dist

from specc.compiler.schema import RANKED_KINDS  # noqa: F401  (job.py reads it here)

TIMEOUT_S = 600.0


def launched_ranks() -> int:
    """How many ranks started this job: torchrun's WORLD_SIZE, else SLURM's task count when
    submitit launched several tasks, else 1."""
    if "WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"])
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
        return int(os.environ["SLURM_NTASKS"])
    return 1


def launched_rank() -> int:
    """This process's rank among those `launched_ranks` counts, before any process group."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))


def start(device_type: str) -> None:
    """Join the job's process group (gloo on the CPU, NCCL on GPUs); on a GPU, use this
    rank's own device. Under submitit the rendezvous comes from its job environment."""
    if dist.is_initialized():
        return
    if "WORLD_SIZE" not in os.environ:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    timeout = datetime.timedelta(seconds=float(os.environ.get("SPECC_COLLECTIVE_TIMEOUT_S", TIMEOUT_S)))
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo", timeout=timeout)


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world() > 1:
        dist.barrier()


def broadcast(obj):
    """Rank 0's `obj` on every rank."""
    if world() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# -- the global batch, shared out -----------------------------------------------------------


def share(rows: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous share of a global batch's rows (all of them on one process)."""
    n = world()
    if n == 1:
        return rows
    if len(rows) % n:
        raise ValueError(f"a batch of {len(rows)} rows does not split into {n} equal shares: "
                         f"make train.batch_size a multiple of the job's {n} ranks")
    size = len(rows) // n
    return rows[rank() * size: (rank() + 1) * size]


def draw_rows(global_rows: int, copies: int = 1) -> tuple[int, torch.Tensor] | None:
    """For sampling `copies` responses per prompt of this rank's share of `global_rows`
    prompts: (rows one process would draw for, this rank's rows among them, copy-major).
    None on one process."""
    n = world()
    if n == 1:
        return None
    size = global_rows // n
    mine = torch.arange(rank() * size, (rank() + 1) * size)
    return copies * global_rows, torch.cat([c * global_rows + mine for c in range(copies)])


def gather(values: torch.Tensor) -> torch.Tensor:
    """Every rank's share of a batch (equal shares), concatenated in rank order: the global
    batch as one process holds it. The tensor itself on one process."""
    n = world()
    if n == 1:
        return values
    parts = [torch.empty_like(values) for _ in range(n)]
    dist.all_gather(parts, values.detach().contiguous())
    return torch.cat(parts)


def mean(value: torch.Tensor) -> float:
    """The mean over ranks of a scalar (for equal shares, the global batch's mean)."""
    if world() == 1:
        return value.item()
    value = value.detach().float().clone()
    dist.all_reduce(value)
    return value.item() / world()


def token_mean(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """A mean over the global batch's real tokens from this rank's `total` and `count`, scaled
    so that FSDP's average over ranks gives its gradient (the mean's value is `mean` of it)."""
    if world() == 1:
        return total / count.clamp(min=1)
    count = count.detach().clone()
    dist.all_reduce(count)
    return total * world() / count.clamp(min=1)


# -- sharding -------------------------------------------------------------------------------


def shard(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The trained model sharded over the ranks with FSDP2 (nothing happens on one process):
    each transformer block is a unit, then the rest. A preference model's `logit` (its
    forward) gathers its parameters like a forward does."""
    if world() == 1:
        return model
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    policy = MixedPrecisionPolicy()  # float32 throughout: the CPU path
    if device.type == "cuda":
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    # FSDP warns of every module output that is a view, in case it is modified in place;
    # specc's forwards never modify their outputs in place
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    for block in transformer_blocks(model):
        fully_shard(block, mp_policy=policy)
    backbone = getattr(model, "backbone", None)
    if backbone is not None:  # a judge's body: sharded, so nothing reads its weights outside a forward
        fully_shard(backbone, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    if hasattr(model, "logit"):
        register_fsdp_forward_method(model, "logit")
    return model


def shard_frozen(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen model (a reference or a judge) sharded like the trained one, for forwards
    only: it keeps its saved dtype (no casting policy; autocast applies as it does whole), and
    every rank must call its forwards in lockstep (the same number of chunks), which the
    rank-shared batch and evaluation on every rank do. Nothing happens on one process."""
    model.requires_grad_(False)
    if world() == 1:
        return model
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    for block in transformer_blocks(model):
        fully_shard(block)
    backbone = getattr(model, "backbone", None)
    if backbone is not None:  # a judge's body, which its shared-prompt path calls directly
        fully_shard(backbone)
    fully_shard(model)
    if hasattr(model, "logit"):
        register_fsdp_forward_method(model, "logit")
    return model


def every_rank(flag: bool) -> bool:
    """Whether `flag` holds on every rank: a choice that decides whether a sharded model's
    forward runs must be the same on all of them."""
    if world() == 1:
        return bool(flag)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"  # NCCL reduces GPU tensors only
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def transformer_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks of a transformers model (GPT-2's `h`, Llama's `layers`, ...)."""
    for module in model.modules():
        for name in ("h", "layers", "layer", "blocks"):
            blocks = getattr(module, name, None)
            if isinstance(blocks, torch.nn.ModuleList) and len(blocks):
                return list(blocks)
    return []


def full_state(model: torch.nn.Module) -> dict | None:
    """The model's whole state dict on rank 0's CPU (every rank must call it); None elsewhere."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return state if is_main() else None


def save_policy(model: torch.nn.Module, path, dtype: torch.dtype | None = None) -> None:
    """`models.save_model` of a policy, sharded or not (every rank calls it; rank 0 writes)."""
    from specc.runtime.models import save_model

    if world() == 1:
        save_model(model, path, dtype)
        return
    state = full_state(model)
    if is_main():
        save_model(model, path, dtype, state=state)
    barrier()


# -- checkpoints ----------------------------------------------------------------------------

LATEST = "LATEST"  # names the newest whole checkpoint; written after it is complete


def save_checkpoint(folder, step: int, model, optimizer, scheduler) -> None:
    """Every rank writes its shards, in parallel, with torch.distributed.checkpoint into
    `step-N.partial/`; once all have, rank 0 renames it to `step-N/` and points LATEST at it:
    a checkpoint is used whole or not at all, and a kill mid-write leaves the previous one."""
    import shutil

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    from specc.runtime.jobdir import atomic_write_json

    model_state, optimizer_state = get_state_dict(model, optimizer)
    final = folder / f"step-{step:08d}"
    partial = folder / f"{final.name}.partial"
    if is_main():
        shutil.rmtree(partial, ignore_errors=True)
    barrier()
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=partial)
    barrier()
    if is_main():
        torch.save({"step": step, "scheduler": scheduler.state_dict(), "ranks": world()}, partial / "loop.pt")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        atomic_write_json(folder / LATEST, {"step": step, "dir": final.name})
        for old in folder.glob("step-*"):
            if old.name != final.name:
                shutil.rmtree(old, ignore_errors=True)
    barrier()


def load_checkpoint(folder, model, optimizer, scheduler) -> int:
    """Resume from the checkpoint LATEST names (every rank reads its shards): its step, or 0."""
    import json

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    pointer = broadcast(json.loads((folder / LATEST).read_text()) if is_main() and (folder / LATEST).exists() else None)
    if pointer is None:
        return 0
    path = folder / pointer["dir"]
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=path)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    loop = torch.load(path / "loop.pt", weights_only=False)
    scheduler.load_state_dict(loop["scheduler"])
    return loop["step"]


def all_finite(finite: torch.Tensor) -> bool:
    """Whether every rank's parameter shards are finite (`finite`: this rank's verdict)."""
    if world() == 1:
        return bool(finite)
    flag = finite.detach().float().reshape(1).cpu()
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


# -- a job's ranks --------------------------------------------------------------------------


def follower(job):
    """The job as rank > 0 sees it: rank 0 alone writes status and metrics; a failure is
    still recorded, by the rank that failed, so the job's status names the cause."""
    from specc.runtime.jobdir import JobDir

    class FollowerJobDir(JobDir):
        def update_status(self, **fields) -> dict:
            return self.status()

        def write_metrics(self, name, rows) -> None:
            pass

        def mark_done(self, summary: dict) -> None:
            pass

        def mark_failed(self, error: str) -> None:
            if self.status().get("state") == "interrupted":  # rank 0 stopped (pre-empted), taking the group down
                return
            JobDir.update_status(self, state="failed", error=error)

    return FollowerJobDir(job.path)


def note_preemption(job) -> None:
    """Rank 0: on pre-emption (USR2, whose handler submitit installed and which requeues the
    job), mark the job interrupted first, so that the ranks it leaves behind, losing their
    connection to it, do not record a failure."""
    import signal
    import threading

    previous = signal.getsignal(signal.SIGUSR2)
    if not callable(previous) or threading.current_thread() is not threading.main_thread():
        return

    def interrupted_then_requeued(signum, frame):
        job.mark_interrupted()
        previous(signum, frame)

    signal.signal(signal.SIGUSR2, interrupted_then_requeued)


def keeps_first_failure(job) -> bool:
    """Whether another rank already recorded this attempt's failure (its cause; rank 0's
    error is then often only the lost connection to it)."""
    status = job.status()
    return status.get("state") == "failed" and str(status.get("error", "")).startswith("rank ")


class NoProgress:
    """What a rank other than 0 reports of its progress: nothing (runtime.progress)."""

    def step(self, step: int, metrics: dict) -> None:
        pass

    def evaluated(self, step: int, metrics: dict) -> None:
        pass

    def close(self) -> None:
        pass


def label() -> str:
    """'rank R of N: ' where a job has several ranks, else ''."""
    return f"rank {rank()} of {world()}: " if world() > 1 else ""
