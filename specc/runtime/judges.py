"""Judges: who prefers which response. The oracle (golden) and trained preference models.

Every judge answers `prob_first(prompts, first, second, prompt_mask=None,
first_mask=None, second_mask=None)`: P(first beats second) as a numpy array,
symmetrised over the order of the two responses (App. A), so a verdict never
depends on which side a response was shown on. Masks (1 = real token) come with
padded real data; the oracle judges the synthetic task, which has none.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from specc.runtime.jobdir import JobDir, atomic_write_json
from specc.runtime.tasks.synthetic import SyntheticTask


class OracleJudge:
    """The synthetic task's hidden reward; its label noise is the raters', not the judge's."""

    def __init__(self, task: SyntheticTask):
        self.task = task

    def prob_first(self, prompts, first, second, prompt_mask=None, first_mask=None, second_mask=None) -> np.ndarray:
        # the synthetic task is never padded: masks carry nothing for it
        return self.task.preference_prob(_np(prompts), _np(first), _np(second))

    def reward(self, prompts, responses) -> np.ndarray:
        return self.task.reward(_np(prompts), _np(responses))


def write_oracle(job: JobDir, task_config: dict) -> None:
    atomic_write_json(job.artifacts / "judge.json", {"type": "oracle", "task": task_config})


def load_judge(job: JobDir, device: torch.device | str = "cpu"):
    """The judge a job wrote; a trained preference model is placed on `device`."""
    meta = json.loads((job.artifacts / "judge.json").read_text())
    if meta["type"] == "oracle":
        return OracleJudge(SyntheticTask.from_config(meta["task"]))
    from specc.runtime.preference_models import load_preference_model
    return load_preference_model(job, meta, device)


def _np(x) -> np.ndarray:
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
