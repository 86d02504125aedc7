"""Each spec keeps its own sweep labels of a shared job, and its replicate: the seeds a job was
drawn with, upstream ones included (the unit the report pairs online and offline runs over)."""

from specc.compiler.plan import compile_spec
from specc.store.db import query, record_spec

SPEC = """
name: {name}
defaults: {{model: {{family: tiny, size: XS}}, train: {{steps: 2}}}}
stages:
  task: {{kind: dataset, task: {{train_prompts: 16, eval_prompts: 8, seed: 0}}{sweep}}}
  golden: {{kind: oracle, data: task}}
  golden_data: {{kind: label, data: task, judge: golden}}
  sft: {{kind: sft, data: golden_data, sweep: {{train.seed: [0, 1]}}}}
executor: {{kind: debug}}
"""


def plan(tmp_path, name, sweep=""):
    path = tmp_path / f"{name}.yaml"
    path.write_text(SPEC.format(name=name, sweep=sweep))
    return compile_spec(path)


def labels(workspace, spec):
    _, rows = query(workspace, f"SELECT job_id, stage, sweep, replicate FROM spec_jobs WHERE spec_name = '{spec}'")
    return {(job, stage): (sweep, replicate) for job, stage, sweep, replicate in rows}


def test_a_shared_job_keeps_each_specs_labels_and_replicate(tmp_path):
    workspace = tmp_path / "ws"
    study = plan(tmp_path, "study", sweep=", sweep: {task.seed: [0, 1]}")
    single = plan(tmp_path, "single")
    record_spec(workspace, study)
    record_spec(workspace, single)
    shared = {j.id for j in study.jobs} & {j.id for j in single.jobs}
    sft = [j for j in single.jobs if j.stage == "sft" and j.id in shared]
    assert len(sft) == 2  # task seed 0, train seeds 0 and 1: planned by both specs
    study_labels, single_labels = labels(workspace, "study"), labels(workspace, "single")
    for job in sft:
        train_seed = job.config["train"]["seed"]
        study_sweep, study_replicate = study_labels[(job.id, "sft")]
        single_sweep, single_replicate = single_labels[(job.id, "sft")]
        assert '"task.task.seed":0' in study_sweep.replace(" ", "") and "task" not in single_sweep
        # the upstream task seed is part of the study's replicate; the job's own seed label is not
        # repeated (its train.seed stands for it)
        assert study_replicate == f"task.task.seed=0, train.seed={train_seed}"
        assert single_replicate == f"train.seed={train_seed}"
    # the other task seed's jobs belong to the study alone, in another replicate
    others = {rep for (job, stage), (_, rep) in study_labels.items() if stage == "sft" and job not in shared}
    assert others == {"task.task.seed=1, train.seed=0", "task.task.seed=1, train.seed=1"}
