"""Activation memory knobs change memory, not results: a step in micro-batches (gradients
accumulated), with activation checkpointing, or on batches trimmed to their longest real
prompt and response gives the unsplit step's loss and gradients within float32 tolerance,
for every loss, for SFT and for both forms of preference model, on synthetic and on padded
real data.

What would break: a micro-batch's loss weighted by its own size instead of the batch's
(means of means), the KV cache silently dropped under checkpointing (responses would stop
seeing their prompt), trimming a column that holds a real token.
"""

from __future__ import annotations

import json

import pytest
import torch

from specc.runtime.batch import pair_logps, take
from specc.runtime.context import JobContext
from specc.runtime.microbatch import micro_slices, share, trimmed
from specc.runtime.models import load_model
from specc.runtime.stages.align import build_align
from specc.runtime.stages.preference_model import build_preference_model_learner
from specc.runtime.stages.sft import build_sft
from tests.runtime.test_real_pipeline import real_run  # noqa: F401  (a fixture)

BUILD = {"sft": build_sft, "preference_model": build_preference_model_learner, "align": build_align}


def step_of(job, train: dict | None = None, loss: str | None = None):
    """(train/loss, {parameter: gradient}) of step 0 of `job` rebuilt with other settings."""
    spec = json.loads((job.path / "job.json").read_text())
    spec["config"]["train"].update(train or {})
    if loss:
        spec["config"]["loss"]["name"] = loss
    learner = BUILD[spec["kind"]](JobContext(job, spec, None, torch.device("cpu")))
    metrics = learner.step_fn(0)
    grads = {name: p.grad.clone() for name, p in learner.model.named_parameters() if p.grad is not None}
    return metrics["train/loss"], grads


def assert_same_step(a, b):
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    assert loss_a == pytest.approx(loss_b, rel=1e-5, abs=1e-6)
    assert grads_a.keys() == grads_b.keys() and grads_a
    # one scale for every tensor: some gradients are zero but for rounding (a pointwise judge's
    # final bias cancels in r1 - r2)
    scale = max(float(g.abs().max()) for g in grads_a.values())
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6 * scale, msg=name)


def test_micro_slices_cover_the_batch_once():
    assert micro_slices(8, None) == [slice(None)] and micro_slices(8, 8) == [slice(None)]
    parts = micro_slices(8, 3)
    assert [(p.start, p.stop) for p in parts] == [(0, 3), (3, 6), (6, 8)]
    assert sum(share(p, 8) for p in parts) == 1.0 and share(slice(None), 8) == 1.0


CASES = [("sft", None), ("proxy", None), ("rm", None), ("offline", "ipo"), ("offline", "dpo"), ("offline", "slic"),
         ("offline", "bo2"), ("online", None), ("tandem", None)]


@pytest.mark.parametrize("stage,loss", CASES)
def test_micro_batches_give_the_whole_batchs_step(tiny_run, stage, loss):
    job = tiny_run.job(stage)
    whole = step_of(job, loss=loss)
    assert_same_step(whole, step_of(job, {"micro_batch_size": 3}, loss))  # 8 rows as 3 + 3 + 2


@pytest.mark.parametrize("stage", ["sft", "proxy", "rm", "online"])
def test_activation_checkpointing_gives_the_same_step(tiny_run, stage):
    job = tiny_run.job(stage)
    assert_same_step(step_of(job), step_of(job, {"grad_checkpointing": True, "micro_batch_size": 4}))


@pytest.mark.parametrize("stage", ["sft", "golden", "proxy", "offline", "online"])
def test_padded_real_data_in_micro_batches_and_checkpointed(real_run, stage):  # noqa: F811
    """A hub model on left/right-padded text: each micro-batch is trimmed to its own widths."""
    job = real_run[stage]
    whole = step_of(job)
    assert_same_step(whole, step_of(job, {"micro_batch_size": 3}))
    assert_same_step(whole, step_of(job, {"micro_batch_size": 5, "grad_checkpointing": True}))


def test_trimming_drops_only_padding_columns(real_run):  # noqa: F811
    from specc.runtime.artifacts import read_pairs

    pairs = {k: torch.from_numpy(v) for k, v in read_pairs(real_run["golden_data"]).items()}
    policy = load_model(real_run["sft"].artifacts / "policy.safetensors")
    for rows in (slice(0, 4), slice(4, 12), slice(None)):
        batch = take(pairs, rows)
        small = trimmed(batch)
        assert small["prompt"].shape[1] <= batch["prompt"].shape[1]
        for name in ("prompt_mask", "chosen_mask", "rejected_mask"):
            assert small[name].sum() == batch[name].sum()  # every real token is kept
        with torch.no_grad():
            for a, b in zip(pair_logps(policy, batch, "sum", torch.device("cpu")),
                            pair_logps(policy, small, "sum", torch.device("cpu"))):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    narrow = trimmed(take(pairs, slice(0, 1)))
    assert narrow["prompt_mask"].all()  # one row: no left padding left at all


def test_a_checkpointed_policy_evaluates_as_a_plain_one(real_run):  # noqa: F811
    """Evaluation runs the policy in training mode between steps: transformers' checkpointed
    layers would drop its KV cache there, so the shared-prompt forward must not rely on one."""
    job = real_run["offline"]
    spec = json.loads((job.path / "job.json").read_text())
    plain = build_align(JobContext(job, spec, None, torch.device("cpu"))).eval_fn(0)
    spec["config"]["train"]["grad_checkpointing"] = True
    checkpointed = build_align(JobContext(job, spec, None, torch.device("cpu"))).eval_fn(0)
    assert plain.keys() == checkpointed.keys()
    for name, value in plain.items():
        assert checkpointed[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name
