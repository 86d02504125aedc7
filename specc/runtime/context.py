"""What a running job knows: its own directory, its config, and its upstream jobs' directories."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from specc.contracts import policy_filename
from specc.runtime import distributed
from specc.runtime.jobdir import JobDir


@dataclass
class JobContext:
    job: JobDir
    job_json: dict  # job.json: id, stage, kind, config, upstream, upstream_steps, sweep
    stop_after: int | None = None  # stop (as if pre-empted) after this checkpoint step
    device: torch.device = torch.device("cpu")
    _judges: dict = field(default_factory=dict, repr=False)  # upstream job id -> judge, loaded once

    @property
    def config(self) -> dict:
        return self.job_json["config"]

    @property
    def jobs_root(self) -> Path:
        return self.job.path.parent

    def upstream(self, role: str) -> JobDir:
        return JobDir(self.jobs_root / self.job_json["upstream"][role])

    def has(self, role: str) -> bool:
        return role in self.job_json["upstream"]

    def upstream_roles(self, prefix: str) -> list[str]:
        return sorted((r for r in self.job_json["upstream"] if r == prefix or r.startswith(prefix + ".")),
                      key=lambda r: int(r.rsplit(".", 1)[1]) if r != prefix else -1)

    def policy(self, role: str) -> torch.nn.Module:
        """The policy an upstream sft/align job saved, at the referenced step if one was named."""
        from specc.runtime.models import load_model  # transformers: only for stages that need a policy

        step = self.job_json.get("upstream_steps", {}).get(role)
        return load_model(policy_path(self.upstream(role), step), self.device)


    def judge(self, role: str):
        """The judge an upstream job wrote, on this job's device; loaded once per job and shared by
        every role that names the same job (a golden policy's sampler and evaluator: one 12B judge)."""
        from specc.runtime.judges import load_judge

        job_id = self.job_json["upstream"][role]
        if job_id not in self._judges:
            judge = load_judge(self.upstream(role), self.device)
            if distributed.world() > 1 and isinstance(judge, torch.nn.Module) and self.has("sampler.online"):
                # over several ranks, an online job's judges are sharded (runtime.distributed);
                # an offline job's are whole, to wait on the host between evaluations
                judge = distributed.shard_frozen(judge)
            self._judges[job_id] = judge
        return self._judges[job_id]


def policy_path(job: JobDir, step: int | None = None) -> Path:
    """The policy a job saved: at `step` (a named checkpoint, or its last step), or its final one."""
    named = job.artifacts / policy_filename(step)
    if step is None or step == job.job_json()["config"].get("train", {}).get("steps"):
        return job.artifacts / policy_filename()  # the last step is saved as the final policy
    if not named.exists():
        raise FileNotFoundError(f"{job.path}: no checkpoint at step {step} (steps saved: train.save_at)")
    return named


def policy_file(job: JobDir, step: int | None) -> Path:
    """Where a job saves a policy: at a named step (train.save_at), or its final weights (None)."""
    return job.artifacts / policy_filename(step)
