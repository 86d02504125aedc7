"""An online run sampled by the vllm engine: it completes, records its stream, resumes after
pre-emption exactly, and its tandem replay reproduces it bit for bit."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from specc.runtime.job import run_job
from specc.runtime.loop import Interrupted
from specc.runtime.samplers import read_stream

from tests.engines.conftest import needs_vllm
from tests.runtime.tiny import Run, copy_upstream

pytestmark = [needs_vllm, pytest.mark.slow]

SPEC = Path(__file__).with_name("online.yaml")


class EngineRun(Run):
    def __init__(self, workspace: Path):
        from specc.compiler.plan import compile_spec
        from specc.runtime.executor import run_local

        self.workspace = workspace
        self.plan = compile_spec(SPEC)
        self.result = run_local(self.plan, workspace, kind="debug")  # in this process: one engine for all


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = EngineRun(tmp_path_factory.mktemp("engines"))
    assert run.result.ok, run.result.failed
    return run


def _metrics(job, name):
    return [v for s, n, v in sorted(job.read_metrics()) if n == name]


def _weights(job):
    return load_file(str(job.artifacts / "policy.safetensors"))


def test_online_run_records_every_sampled_batch(run):
    stream = read_stream(run.job("online"))
    assert stream["step"].tolist() == [s for s in range(8) for _ in range(8)]
    assert stream["chosen"].shape == (64, 16)
    assert _metrics(run.job("online"), "online/policy_lag") == [0.0] * 8
    assert len(_metrics(run.job("online"), "eval/win_rate")) == 3  # steps 0, 4, 8


def test_exact_replay_reproduces_the_vllm_run_bit_for_bit(run):
    online, tandem = run.job("online"), run.job("tandem")
    assert _metrics(tandem, "train/loss") == _metrics(online, "train/loss")
    a, b = _weights(online), _weights(tandem)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pushing_every_two_steps_records_the_lag(run):
    assert _metrics(run.job("lagged"), "online/policy_lag") == [0.0, 1.0] * 4
    assert _metrics(run.job("lagged"), "train/loss") != _metrics(run.job("online"), "train/loss")


def test_pairs_stage_samples_through_the_engine(run):
    assert run.job("d_pairs").is_done()


@pytest.mark.parametrize("stage", ["online", "lagged"])
def test_resumed_run_samples_what_the_uninterrupted_one_did(run, tmp_path, stage):
    job = copy_upstream(run, stage, tmp_path)
    with pytest.raises(Interrupted):
        run_job(job.path, stop_after=4)
    run_job(job.path)  # resumes at step 4: the engine is handed the checkpoint's weights
    reference = run.job(stage)
    assert sorted(job.read_metrics()) == sorted(reference.read_metrics())
    for name in ("chosen", "rejected"):
        assert (read_stream(job)[name] == read_stream(reference)[name]).all()
    a, b = _weights(job), _weights(reference)
    assert all(torch.equal(a[k], b[k]) for k in a)
