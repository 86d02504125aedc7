"""How a stage's resources become ranks: checked at compile time, shown by `specc plan`."""

import json
import subprocess
import sys

import pytest

from specc.compiler.plan import compile_spec
from specc.errors import SpecErrors

SPEC = """
name: ranks
stages:
  task:   {kind: dataset, task: {train_prompts: 64, eval_prompts: 16}}
  golden: {kind: oracle, data: task}
  labels: {kind: label, data: task, judge: golden}
  sft:    {kind: sft, data: labels, train: {steps: 2}}
executor: {kind: slurm, stages: {sft: RESOURCES, labels: RESOURCES}}
"""


def test_plan_shows_each_jobs_ranks(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("RESOURCES", "{gpus: 8, nodes: 2}"))
    assert compile_spec(spec).executor.for_stage("sft").layout() == (2, 4, 4)  # nodes, ranks and GPUs per node
    out = subprocess.run([sys.executable, "-c", "from specc.cli import main; main()", "plan", str(spec), "--json",
                          "--workspace", str(tmp_path / "ws")], capture_output=True, text=True, check=True).stdout
    ranks = {job["stage"]: job["ranks"] for job in json.loads(out)["jobs"]}
    assert ranks == {"task": 1, "golden": 1, "labels": 1, "sft": 8}  # a label job runs on one rank


@pytest.mark.parametrize("resources, message", [
    ("{gpus: 4, ranks: 2}", "stages.sft: ranks 2 with gpus 4: a job has one rank per GPU"),
    ("{ranks: 3, nodes: 2}", "stages.sft: 3 ranks do not spread evenly over 2 nodes"),
])
def test_ranks_that_cannot_be_laid_out_are_spec_errors(tmp_path, resources, message):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("stages: {sft: RESOURCES, labels: RESOURCES}", f"stages: {{sft: {resources}}}"))
    with pytest.raises(SpecErrors) as errors:
        compile_spec(spec)
    assert message in str(errors.value)


def test_a_batch_the_ranks_cannot_share_is_a_spec_error(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("RESOURCES", "{ranks: 3}"))  # sft's batch_size is 32 by default
    with pytest.raises(SpecErrors) as errors:
        compile_spec(spec)
    assert str(errors.value).count("train.batch_size") == 1  # the label stage trains nothing
    assert "3 ranks cannot share stage sft's train.batch_size 32 equally: make it a multiple of 3" in str(errors.value)
