"""What a running job knows: its own directory, its config, and its upstream jobs' directories."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from specc.runtime.jobdir import JobDir


@dataclass
class JobContext:
    job: JobDir
    spec: dict  # job.json: id, stage, kind, config, upstream, upstream_steps, sweep
    stop_after: int | None = None  # stop (as if pre-empted) after this checkpoint step
    device: torch.device = torch.device("cpu")

    @property
    def config(self) -> dict:
        return self.spec["config"]

    @property
    def jobs_root(self) -> Path:
        return self.job.path.parent

    def upstream(self, role: str) -> JobDir:
        return JobDir(self.jobs_root / self.spec["upstream"][role])

    def has(self, role: str) -> bool:
        return role in self.spec["upstream"]

    def upstream_roles(self, prefix: str) -> list[str]:
        return sorted((r for r in self.spec["upstream"] if r == prefix or r.startswith(prefix + ".")),
                      key=lambda r: int(r.rsplit(".", 1)[1]) if r != prefix else -1)

    def policy(self, role: str) -> torch.nn.Module:
        """The policy an upstream sft/align job saved, at the referenced step if one was named."""
        from specc.runtime.models import load_model  # transformers: only for stages that need a policy

        step = self.spec.get("upstream_steps", {}).get(role)
        return load_model(policy_path(self.upstream(role), step)).to(self.device)


def policy_path(job: JobDir, step: int | None = None) -> Path:
    if step is not None and (job.artifacts / f"policy@{step}.safetensors").exists():
        return job.artifacts / f"policy@{step}.safetensors"
    return job.artifacts / "policy.safetensors"
