"""Determinism, exact tandem replay, and bit-identical resume (issue: runtime contract)."""

import pytest
import torch
from safetensors.torch import load_file

from specc.runtime.job import run_job
from specc.runtime.loop import Interrupted
from specc.runtime.samplers import read_stream

from tests.runtime.tiny import Run, copy_upstream

pytestmark = pytest.mark.slow


def _losses(job):
    return [v for s, n, v in sorted(job.read_metrics()) if n == "train/loss"]


def _weights(job):
    return load_file(str(job.artifacts / "policy.safetensors"))


def test_same_spec_and_seed_twice_is_bit_identical(tiny_run, tmp_path):
    again = Run(tmp_path)
    assert again.result.ok
    for job in tiny_run.plan.jobs:
        first = sorted(tiny_run.job(job.stage).read_metrics())
        second = sorted(again.job(job.stage).read_metrics())
        assert first == second, job.stage  # exact float equality, every metric of every job


def test_exact_replay_reproduces_online_run_bit_for_bit(tiny_run):
    online, tandem = tiny_run.job("online"), tiny_run.job("tandem")
    assert len(_losses(online)) == 12
    assert _losses(tandem) == _losses(online)
    online_w, tandem_w = _weights(online), _weights(tandem)
    assert all(torch.equal(online_w[k], tandem_w[k]) for k in online_w)


def test_uniform_shuffle_does_not_reproduce_online_run(tiny_run):
    assert _losses(tiny_run.job("shuffled"))[1:] != _losses(tiny_run.job("online"))[1:]


def test_stream_holds_every_labelled_batch_once(tiny_run):
    stream = read_stream(tiny_run.job("online"))
    assert stream["step"].tolist() == [s for s in range(12) for _ in range(8)]
    assert stream["prompt"].shape == (96, 8) and stream["chosen"].shape == (96, 16)


@pytest.mark.parametrize("stage", ["online", "offline", "tandem", "sft", "proxy"])
def test_resumed_job_ends_bit_identical(tiny_run, tmp_path, stage):
    job = copy_upstream(tiny_run, stage, tmp_path)
    with pytest.raises(Interrupted):
        run_job(job.path, stop_after=4)  # pre-empted after the step-4 checkpoint
    assert not job.is_done() and (job.checkpoint_dir / "state.pt").exists()
    run_job(job.path)  # resumes from step 4
    assert job.is_done()
    reference = tiny_run.job(stage)
    assert sorted(job.read_metrics()) == sorted(reference.read_metrics())
    name = "judge.safetensors" if stage == "proxy" else "policy.safetensors"
    resumed, uninterrupted = load_file(str(job.artifacts / name)), load_file(str(reference.artifacts / name))
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)
    if stage == "online":
        assert read_stream(job)["step"].tolist() == read_stream(reference)["step"].tolist()


def test_a_judge_continues_from_another_judge(tiny_run):
    def accuracy(stage):
        return {s: v for s, n, v in tiny_run.job(stage).read_metrics() if n == "eval/judge_accuracy"}

    # before its first step the continued judge scores exactly what `rm` scored at its end
    assert accuracy("rm_continued")[0] == accuracy("rm")[4]
