"""The engine interface without vLLM: the hf engine is the loop it replaces, bit for bit, and
the spec's engine fields are checked and leave existing job ids alone."""

import pytest
import torch

from specc.compiler.plan import compile_spec, job_hash
from specc.errors import SpecErrors
from specc.runtime.batch import Responder
from specc.runtime.engines import Draw, open_engine
from specc.runtime.loop import step_generator
from specc.runtime.models import build_policy

from tests.runtime.tiny import TINY


def _policy():
    return build_policy({"family": "tiny", "size": "S"}, 32, 24, 0)


@pytest.mark.parametrize("eos", [None, 3])
def test_hf_engine_draws_what_the_loop_drew(eos):
    respond, model = Responder(16, eos, eos), _policy()
    prompts = torch.randint(0, 32, (6, 8), generator=torch.Generator().manual_seed(1))
    engine = open_engine("hf", respond, torch.device("cpu"), 8)
    got = engine.sample(model, prompts, None, Draw(7, "sample", 5), copies=2)
    want = respond(model, prompts, None, step_generator(7, "sample", 5), copies=2)
    assert torch.equal(got[0], want[0]) and (got[1] is None) == (want[1] is None)
    (kept_tokens, _), kept = engine.sample_keeping("logprobs", model, prompts, None, Draw(7, "kl", 0))
    (want_tokens, _), want_kept = respond.keeping("logprobs", model, prompts, None, step_generator(7, "kl", 0))
    assert torch.equal(kept_tokens, want_tokens) and torch.equal(kept, want_kept)


def test_request_seeds_depend_on_seed_step_and_row_only():
    draw = Draw(0, "sample", 3)
    seeds = [draw.request_seed(r) for r in range(64)]
    assert len(set(seeds)) == 64 and seeds == [Draw(0, "sample", 3).request_seed(r) for r in range(64)]
    assert draw.request_seed(0) != Draw(0, "sample", 4).request_seed(0) != Draw(1, "sample", 3).request_seed(0)


def test_hf_greedy_is_the_argmax_continuation():
    model, respond = _policy(), Responder(5)
    prompts = torch.randint(0, 32, (3, 8), generator=torch.Generator().manual_seed(2))
    responses, _ = open_engine("hf", respond, torch.device("cpu"), 8).greedy(model, prompts)
    with torch.no_grad():
        want = model.generate(prompts, max_new_tokens=5, do_sample=False, pad_token_id=0)[:, 8:]
    assert torch.equal(responses, want)


def test_default_engine_keeps_job_ids():
    plan = compile_spec(TINY)
    for job in plan.jobs:
        explicit = dict(job.config)
        if "sampler" in explicit and explicit["sampler"].get("online"):
            assert explicit["sampler"]["engine"] == "hf" and explicit["sampler"]["sync_every"] == 1
        without = {k: ({kk: vv for kk, vv in v.items() if kk not in ("engine", "sync_every")} if isinstance(v, dict) else v)
                   for k, v in explicit.items() if k != "engine"}
        assert job_hash(job.kind, explicit, job.upstream, job.upstream_steps) == \
            job_hash(job.kind, without, job.upstream, job.upstream_steps), job.stage
    vllm = compile_spec(TINY, overrides=["stages.online.sampler.engine=vllm"])
    assert {j.stage: j.id for j in vllm.jobs}["online"] != {j.stage: j.id for j in plan.jobs}["online"]


@pytest.mark.parametrize("override, message", [
    ("stages.offline.sampler.engine=vllm", "online sampler only"),
    ("stages.online.sampler.sync_every=2", "needs engine vllm"),
    ("stages.online.sampler.engine=gpu", "engine"),
])
def test_bad_engine_settings_are_located_errors(override, message):
    with pytest.raises(SpecErrors, match=message):
        compile_spec(TINY, overrides=[override])


def test_sync_every_must_divide_checkpoints_and_evaluations():
    with pytest.raises(SpecErrors, match="sync_every=3 must divide train.checkpoint_every=4"):
        compile_spec(TINY, overrides=["stages.online.sampler.engine=vllm", "stages.online.sampler.sync_every=3"])
    with pytest.raises(SpecErrors, match=r"eval_at \[1, 3\]"):
        compile_spec(TINY, overrides=["stages.online.sampler.engine=vllm", "stages.online.sampler.sync_every=2"])
