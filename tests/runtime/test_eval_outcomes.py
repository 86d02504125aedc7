"""Evaluations record per-item outcomes that add up to their means, at the extra `eval_at` steps too."""

from __future__ import annotations

from collections import defaultdict

import pytest


def by_step(job) -> dict:
    out = defaultdict(dict)
    for step, name, value in job.read_metrics():
        out[step][name] = value
    return out


def test_eval_at_adds_dense_early_evaluations(tiny_run):
    steps = {s for s, metrics in by_step(tiny_run.job("online")).items() if "eval/kl" in metrics}
    assert steps == {0, 1, 3, 6, 12}  # eval_every 6, eval_at [1, 3], and the end
    offline = {s for s, metrics in by_step(tiny_run.job("offline")).items() if "eval/kl" in metrics}
    assert offline == {0, 6, 12}


def test_per_item_outcomes_add_up_to_the_checkpoint_means(tiny_run):
    for step, metrics in by_step(tiny_run.job("online")).items():
        if "eval/win_rate" not in metrics:
            continue
        items = defaultdict(list)
        for name, value in sorted(metrics.items()):
            if name.startswith("outcome/"):
                items[name.split("/")[1]].append(value)
        assert len(items["win"]) == 32 and set(items["win"]) <= {0.0, 0.5, 1.0}  # win_prompts, one per prompt
        assert sum(items["win"]) / 32 == pytest.approx(metrics["eval/win_rate"], abs=1e-12)
        assert sum(items["oracle_reward"]) / 32 == pytest.approx(metrics["eval/oracle_reward"], abs=1e-9)
        assert len(items["classifier_correct"]) == 32  # classifier_pairs
        assert sum(items["classifier_correct"]) / 32 == pytest.approx(metrics["eval/classifier_accuracy"], abs=1e-12)
