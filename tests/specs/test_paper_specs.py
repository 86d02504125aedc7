"""The paper's experiments as spec files (specs/paper/): every tiny form runs, every full profile
compiles to the SLURM plan the paper implies, and the CLI plans each one.

The smoke runs share one workspace, as a user running several figures would: stages every spec has
(task, golden judge, D_golden, SFT, proxy, golden policy, online) are the same jobs by content hash
and train once, so the whole file stays within a few minutes on two cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from specc.compiler.plan import Plan, compile_spec
from specc.runtime.executor import job_dir, run_local

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "specs" / "paper"
NOT_EXPERIMENTS = {"base.yaml", "embedded-study.yaml"}  # shared settings; another owner's study
SPECS = ["fig01-online-vs-offline", "fig04-tandem", "fig05-strong-policy-data", "fig06-08-classification",
         "fig09-bo2", "fig10-11-14-scaling", "fig12-dataset-ablations", "fig13-shuffle-levels",
         "appF-exact-tandem"]
TASKS = 4  # the full profile sweeps the dataset stage over HH helpful, HH harmless, TL;DR, Chatbot Arena

# stage -> the stages its jobs read from, per spec, in the full profile. Every align stage is also
# evaluated against the golden policy by the golden judge on D_golden, with prompts from `task`.
EVAL = {"golden_policy", "golden", "golden_data", "task"}
BASE_DAG = {
    "task": set(),
    "golden": {"task"},                                   # full: a preference model trained on D_initial
    "golden_data": {"task", "golden"},
    "sft": {"golden_data"},
    "proxy": {"golden_data", "sft"},
    "golden_policy": {"sft", "golden", "golden_data", "task"},  # judged against its own init
    "online": {"sft", "proxy"} | EVAL,
}
DAGS = {
    "fig01-online-vs-offline": {**BASE_DAG, "offline": {"sft", "golden_data"} | EVAL},
    "fig04-tandem": {**BASE_DAG, "offline": {"sft", "golden_data"} | EVAL, "tandem": {"sft", "online"} | EVAL,
                     "tandem_shuffled": {"sft", "online"} | EVAL},
    "fig05-strong-policy-data": {**BASE_DAG, "offline": {"sft", "golden_data"} | EVAL,
                                 "d_4k_vs_4k": {"online", "golden", "task"},
                                 "offline_strong": {"sft", "d_4k_vs_4k"} | EVAL},
    "fig06-08-classification": {**BASE_DAG, "offline": {"sft", "golden_data"} | EVAL,
                                "tandem_shuffled": {"sft", "online"} | EVAL},
    "fig09-bo2": {**BASE_DAG, "online_bo2": {"sft", "proxy"} | EVAL, "offline_bo2": {"sft", "golden_data"} | EVAL,
                  "tandem_bo2_shuffled": {"sft", "online_bo2"} | EVAL},
    # The reference size's SFT is the same job as sft_ref (same config and upstream): the plan holds
    # it once, under sft_ref, so the policies of that size read from sft_ref.
    "fig10-11-14-scaling": {**BASE_DAG, "sft_ref": {"golden_data"}, "proxy": {"golden_data", "sft_ref"},
                            "golden_policy": {"sft_ref", "golden", "golden_data", "task"},
                            "online": {"sft", "sft_ref", "proxy"} | EVAL,
                            "offline": {"sft", "sft_ref", "golden_data"} | EVAL,
                            "tandem_shuffled": {"sft", "sft_ref", "online"} | EVAL},
    "fig12-dataset-ablations": {**BASE_DAG, "offline": {"sft", "golden_data"} | EVAL,
                                "d_sft_vs_early": {"sft", "online", "golden", "task"},
                                "d_early_vs_final": {"online", "golden", "task"},
                                "d_final_vs_final": {"online", "golden", "task"},
                                "offline_sft_vs_early": {"sft", "d_sft_vs_early"} | EVAL,
                                "offline_early_vs_final": {"sft", "d_early_vs_final"} | EVAL,
                                "offline_final_vs_final": {"sft", "d_final_vs_final"} | EVAL},
    "fig13-shuffle-levels": {**BASE_DAG, "tandem": {"sft", "online"} | EVAL},
    "appF-exact-tandem": {**BASE_DAG, "tandem": {"sft", "online"} | EVAL, "tandem_nudged": {"sft", "online"} | EVAL},
}

# jobs per stage in the full profile, before the x4 of the task sweep
PAPER_OFFLINE_SWEEP = 3 * 3 * 2  # lr x beta x steps (Sec. 4)
BASE_JOBS = dict.fromkeys(BASE_DAG, 1)
FULL_JOBS = {
    "fig01-online-vs-offline": {**BASE_JOBS, "offline": PAPER_OFFLINE_SWEEP},
    "fig04-tandem": {**BASE_JOBS, "offline": PAPER_OFFLINE_SWEEP, "tandem": 1, "tandem_shuffled": 9},
    "fig05-strong-policy-data": {**BASE_JOBS, "offline": PAPER_OFFLINE_SWEEP, "d_4k_vs_4k": 1, "offline_strong": 9},
    "fig06-08-classification": {**BASE_JOBS, "offline": PAPER_OFFLINE_SWEEP, "tandem_shuffled": 1},
    "fig09-bo2": {**BASE_JOBS, "online_bo2": 1, "offline_bo2": 3, "tandem_bo2_shuffled": 3},
    # 3 sizes; the Large SFT is sft_ref's job; online x3 sizes, offline and tandem x3 sizes x3 betas
    "fig10-11-14-scaling": {**BASE_JOBS, "sft": 2, "sft_ref": 1, "online": 3, "offline": 9, "tandem_shuffled": 9},
    "fig12-dataset-ablations": {**BASE_JOBS, "offline": 3, "d_sft_vs_early": 1, "d_early_vs_final": 1,
                                "d_final_vs_final": 1, "offline_sft_vs_early": 3, "offline_early_vs_final": 3,
                                "offline_final_vs_final": 3},
    "fig13-shuffle-levels": {**BASE_JOBS, "tandem": 5},
    "appF-exact-tandem": {**BASE_JOBS, "tandem": 1, "tandem_nudged": 1},
}


def spec_path(name: str) -> Path:
    return PAPER / f"{name}.yaml"


def stage_dag(plan: Plan) -> dict[str, set[str]]:
    stage_of = {job.id: job.stage for job in plan.jobs}
    dag: dict[str, set[str]] = {}
    for job in plan.jobs:
        dag.setdefault(job.stage, set()).update(stage_of[up] for up in job.upstream.values())
    return dag


def test_every_paper_spec_is_listed():
    on_disk = {p.stem for p in PAPER.glob("*.yaml") if p.name not in NOT_EXPERIMENTS}
    assert on_disk == set(SPECS)


# -- (b) the full profiles: the paper's plan on SLURM ----------------------------------------------


@pytest.fixture(scope="module")
def full_plans() -> dict[str, Plan]:
    return {name: compile_spec(spec_path(name), profile="full") for name in SPECS}


@pytest.mark.parametrize("name", SPECS)
def test_full_profile_compiles_to_the_slurm_plan(name, full_plans):
    plan = full_plans[name]
    executor = plan.executor
    assert (executor.kind, executor.partition, executor.gpus) == ("slurm", "gpu", 1)
    assert executor.time_min >= 60
    expected = {stage: count * TASKS for stage, count in FULL_JOBS[name].items()}
    assert dict(Counter(job.stage for job in plan.jobs)) == expected
    assert len(plan.jobs) == sum(expected.values())
    assert stage_dag(plan) == DAGS[name]


@pytest.mark.parametrize("name", SPECS)
def test_full_profile_uses_real_data_and_hub_models(name, full_plans):
    plan = full_plans[name]
    datasets = [job.config for job in plan.jobs if job.kind == "dataset"]
    assert datasets and all(c["source"] == "hub" and c["tokenizer"] for c in datasets)
    assert {(c["hub_name"], c["subset"], c["format"]) for c in datasets} == {
        ("Anthropic/hh-rlhf", "helpful-base", "anthropic_hh"),
        ("Anthropic/hh-rlhf", "harmless-base", "anthropic_hh"),
        ("openai/summarize_from_feedback", "comparisons", "tldr"),
        ("lmsys/chatbot_arena_conversations", None, "chatbot_arena"),
    }
    assert not any(job.kind == "oracle" for job in plan.jobs)  # real data has no hidden reward
    golden = [job for job in plan.jobs if job.stage == "golden"]
    assert golden and all(job.kind == "preference_model" for job in golden)
    assert all(job.config["model"]["family"] == "hub" and job.config["model"]["name"]
               for job in plan.jobs if "model" in job.config)


@pytest.mark.parametrize("name", SPECS)
def test_full_profile_has_the_paper_hyperparameters(name, full_plans):
    """4k steps, lr 1e-5, beta 0.1, batch 32 unless a sweep says otherwise; 2048 win-rate prompts."""
    for job in full_plans[name].jobs:
        if job.kind != "align":
            continue
        swept = {key.split(".", 1)[1] for key in job.sweep if key.startswith(job.stage + ".")}
        train, loss = job.config["train"], job.config["loss"]
        assert train["batch_size"] == 32
        assert "train.steps" in swept or train["steps"] == 4000
        assert "train.lr" in swept or train["lr"] == 1e-5
        assert "loss.beta" in swept or loss["name"] == "bo2" or loss["beta"] == 0.1
        assert job.config["evaluate"]["win_prompts"] == 2048 and job.config["evaluate"]["kl_prompts"] == 256


def test_offline_sweep_is_the_papers(full_plans):
    plan = full_plans["fig01-online-vs-offline"]
    points = {(j.config["train"]["lr"], j.config["loss"]["beta"], j.config["train"]["steps"])
              for j in plan.jobs if j.stage == "offline"}
    assert points == {(lr, beta, steps) for lr in (3e-6, 1e-5, 3e-5) for beta in (0.1, 0.5, 1.0)
                      for steps in (4000, 20000)}


def test_scaling_sweeps_policy_size_with_batch_size(full_plans):
    plan = full_plans["fig10-11-14-scaling"]
    sft = {(j.config["model"]["name"], j.config["train"]["batch_size"])
           for j in plan.jobs if j.stage in ("sft", "sft_ref")}
    assert sft == {("EleutherAI/pythia-1b", 128), ("EleutherAI/pythia-2.8b", 16), ("EleutherAI/pythia-12b", 8)}
    proxies = {j.upstream["init"] for j in plan.jobs if j.stage == "proxy"}
    assert len(proxies) == TASKS  # one proxy per task, whatever the policy size


def test_checkpoint_references_point_at_saved_steps(full_plans):
    for name in ("fig05-strong-policy-data", "fig12-dataset-ablations"):
        plan = full_plans[name]
        by_id = plan.by_id()
        for job in plan.jobs:
            for role, step in job.upstream_steps.items():
                train = by_id[job.upstream[role]].config["train"]
                assert step in train["save_at"] or step == train["steps"], (name, job.stage, role, step)
        steps = {(j.stage, tuple(sorted(j.upstream_steps.values()))) for j in plan.jobs if j.kind == "pairs"}
        assert all(s and set(s) <= {800, 4000} for _, s in steps)


# -- the tiny forms: small enough for a laptop ---------------------------------------------------


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("profile", [None, "smoke"])
def test_tiny_forms_are_small_and_local(name, profile):
    plan = compile_spec(spec_path(name), profile=profile)
    assert plan.executor.kind == "local"
    assert all(job.config.get("source", "synthetic") == "synthetic" for job in plan.jobs if job.kind == "dataset")
    for job in plan.jobs:
        if "model" in job.config:
            assert job.config["model"]["family"] == "tiny" and job.config["model"]["size"] in ("XS", "S")
        if "train" in job.config:
            assert job.config["train"]["steps"] <= (300 if profile is None else 20)
    assert len(plan.jobs) <= 16


# -- (c) the CLI ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SPECS)
def test_cli_plans_the_full_profile_as_json(name, tmp_path):
    proc = subprocess.run([sys.executable, "-c", "from specc.cli import main; main()", "plan",
                           str(spec_path(name)), "--profile", "full", "--json", "--workspace", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["spec"] == name and plan["executor"]["kind"] == "slurm"
    assert len(plan["jobs"]) == TASKS * sum(FULL_JOBS[name].values())
    assert {job["status"] for job in plan["jobs"]} == {"pending"}


# -- (a) every tiny form runs end to end (smoke profile) -------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("paper-specs")


@pytest.mark.slow
@pytest.mark.parametrize("name", SPECS)
def test_smoke_profile_runs_end_to_end(name, workspace):
    plan = compile_spec(spec_path(name), profile="smoke")
    result = run_local(plan, workspace, kind="debug")
    assert result.ok, (result.failed, result.blocked)
    assert set(result.done) | set(result.cached) == {job.id for job in plan.jobs}
    assert all(job_dir(workspace, job).is_done() for job in plan.jobs)


@pytest.mark.slow
def test_scaling_report_finds_the_policy_sizes(workspace):
    """The scaling spec's custom figure recovers each align job's size from its SFT sweep point."""
    from specc.store.db import ingest, query, record_spec

    plan = compile_spec(spec_path("fig10-11-14-scaling"), profile="smoke")
    assert run_local(plan, workspace, kind="debug").ok
    record_spec(workspace, plan)
    ingest(workspace, warn=lambda message: None)
    columns, rows = query(workspace, plan.spec.report.custom["best_by_sft_size"].sql)
    found = [dict(zip(columns, row)) for row in rows]
    assert {(r["method"], r["policy_size"]) for r in found} == {
        (method, size) for method in ("online", "offline", "tandem-shuffled") for size in ("XS", "S")}
