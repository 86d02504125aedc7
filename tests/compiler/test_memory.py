"""The memory planner at plan time: every job of the paper's full profile fits its stage's
GPUs; a job that cannot fit is a located error naming the settings that would make it fit."""

from __future__ import annotations

from pathlib import Path

import pytest

from specc.compiler.load import load_source
from specc.compiler.memory import HUB_SHAPES, estimate, memory_errors, plan_memory
from specc.compiler.plan import compile_spec

PAPER = Path(__file__).resolve().parents[2] / "specs" / "paper"
SPECS = sorted(p for p in PAPER.glob("*.yaml") if p.stem not in ("base", "embedded-study"))


def test_public_shapes_have_the_published_sizes():
    assert HUB_SHAPES["EleutherAI/pythia-1b"].params == pytest.approx(1.012e9, rel=0.01)
    assert HUB_SHAPES["EleutherAI/pythia-2.8b"].params == pytest.approx(2.775e9, rel=0.01)
    assert HUB_SHAPES["EleutherAI/pythia-12b"].params == pytest.approx(11.85e9, rel=0.01)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_full_profile_job_fits_its_gpus(spec):
    plan = compile_spec(spec, profile="full")
    assert memory_errors(plan, load_source(spec, profile="full")) == []
    memory = plan_memory(plan)
    trained = [m for job in plan.jobs if job.kind in ("sft", "align") for m in [memory[job.id]]]
    assert trained and all(m is not None and m["fits"] and 0 < m["device"] <= m["gpu_mem_gb"] for m in trained)


def test_a_job_that_cannot_fit_is_a_located_error_naming_the_knobs():
    spec = PAPER / "fig01-online-vs-offline.yaml"
    overrides = ["defaults.train.grad_checkpointing=false", "defaults.train.micro_batch_size=32"]
    plan = compile_spec(spec, profile="full", overrides=overrides)
    errors = memory_errors(plan, load_source(spec, profile="full", overrides=overrides))
    assert errors
    online = next(e for e in errors if e.field == "stages.online")
    assert online.location.line > 0 and str(online.location.file).endswith("base.yaml")
    assert "needs ~" in online.message and "it fits with train.grad_checkpointing: true" in online.message


def test_pure_bf16_would_not_be_planned_and_checkpointing_shrinks_activations():
    plan = compile_spec(PAPER / "fig01-online-vs-offline.yaml", profile="full")
    by_id = plan.by_id()
    sft = next(j for j in plan.jobs if j.stage == "sft")
    with_ckpt = estimate(sft, by_id, 1)
    from dataclasses import replace
    plain = estimate(replace(sft, config={**sft.config, "train": {**sft.config["train"], "grad_checkpointing": False}}),
                     by_id, 1)
    assert with_ckpt.activations < plain.activations / 4
    assert with_ckpt.optimizer == 2 * with_ckpt.gradients  # float32 AdamW moments: 8 bytes a parameter


def test_a_vllm_engine_is_planned_at_its_share_of_the_gpu():
    plan = compile_spec(PAPER / "fig01-online-vs-offline.yaml", profile="full")
    by_id = plan.by_id()
    online = next(j for j in plan.jobs if j.stage == "online")
    hf = estimate(online, by_id, 1, 80)
    from dataclasses import replace
    vllm = estimate(replace(online, config={**online.config, "sampler": {**online.config["sampler"], "engine": "vllm"}}),
                    by_id, 1, 80)
    assert vllm.sampling >= 8e9 and vllm.sampling >= hf.sampling


def test_an_align_jobs_frozen_models_are_sharded_over_its_gpus():
    spec = PAPER / "fig10-11-14-scaling.yaml"
    plan = compile_spec(spec, profile="full")
    by_id, memory = plan.by_id(), plan_memory(plan)
    online = next(j for j in plan.jobs if j.stage == "online" and "pythia-12b" in str(j.sweep))
    whole, sharded = estimate(online, by_id, 1), estimate(online, by_id, 8)
    # the 12B reference and the judges: an eighth each, plus one gathered block
    assert whole.frozen / 8 < sharded.frozen < whole.frozen / 4
    assert memory[online.id]["frozen_sharded"] == ["reference", "judges"] and memory[online.id]["gpu_mem_gb"] == 80
    offline = next(j for j in plan.jobs if j.stage == "offline" and "pythia-12b" in str(j.sweep))
    assert memory[offline.id]["frozen_sharded"] == ["reference"] and memory[offline.id]["fits"]
    assert memory[next(j.id for j in plan.jobs if j.stage == "golden_policy")]["frozen_sharded"] == []
