"""Golden plans: job counts and stage DAGs of known specs, and what job ids depend on.

A job id hashes the resolved config plus upstream job ids, so it must change
exactly when the work changes: not with key order, number spelling or stage
names; and a changed swept value changes only the jobs downstream of it.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from specc.compiler.plan import Plan, compile_spec

ROOT = Path(__file__).resolve().parents[2]
SPECS = Path(__file__).parent / "specs"
QUICKSTART = ROOT / "specs" / "quickstart.yaml"
RICH = SPECS / "online_vs_offline.yaml"
EXTENDS = SPECS / "extends_profile.yaml"

POLICY_EVAL = {"golden", "golden_data", "task"}  # judge, pairs (top-level `evaluate`) and inferred prompts


def counts(plan: Plan) -> dict[str, int]:
    return dict(Counter(job.stage for job in plan.jobs))


def dag(plan: Plan) -> dict[str, set[str]]:
    """Stage -> the stages its jobs take inputs from."""
    by_id = plan.by_id()
    out: dict[str, set[str]] = {}
    for job in plan.jobs:
        out.setdefault(job.stage, set()).update(by_id[u].stage for u in job.upstream.values())
    return out


def ids_by_stage(plan: Plan) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for job in plan.jobs:
        out.setdefault(job.stage, set()).add(job.id)
    return out


def assert_consistent(plan: Plan) -> None:
    """Every upstream job agrees with its downstream job on every swept value they share."""
    by_id = plan.by_id()
    assert len(by_id) == len(plan.jobs)
    for job in plan.jobs:
        for role, upstream_id in job.upstream.items():
            upstream = by_id[upstream_id]
            assert upstream.sweep.items() <= job.sweep.items(), (job.stage, role)
            assert upstream.wave < job.wave


def load(path: Path) -> dict:
    return YAML(typ="safe", pure=True).load(path.read_text())


def write(path: Path, data) -> Path:
    yaml = YAML(typ="safe", pure=True)
    out = io.StringIO()
    yaml.dump(data, out)
    path.write_text(out.getvalue())
    return path


# -- golden counts and DAGs ------------------------------------------------------------------


def test_quickstart_plan():
    plan = compile_spec(QUICKSTART)
    assert len(plan.jobs) == 12
    assert counts(plan) == {"task": 1, "golden": 1, "golden_data": 1, "sft": 1, "proxy": 1, "golden_policy": 1,
                            "online": 1, "offline": 3, "tandem": 1, "tandem_shuffled": 1}
    assert dag(plan) == {
        "task": set(),
        "golden": {"task"},
        "golden_data": {"task", "golden"},
        "sft": {"golden_data"},
        "proxy": {"golden_data", "sft"},
        "golden_policy": {"sft"} | POLICY_EVAL,  # its own baseline: judged against its init
        "online": {"sft", "proxy", "golden_policy"} | POLICY_EVAL,
        "offline": {"sft", "golden_policy"} | POLICY_EVAL,
        "tandem": {"sft", "online", "golden_policy"} | POLICY_EVAL,
        "tandem_shuffled": {"sft", "online", "golden_policy"} | POLICY_EVAL,
    }
    assert [len(wave) for wave in plan.waves()] == [1, 1, 1, 1, 2, 4, 2]
    offline = [job for job in plan.jobs if job.stage == "offline"]
    assert len({job.config["loss"]["beta"] for job in offline}) == 3  # the sweep: {beta: [..., ..., ...]}
    assert all(job.sweep.keys() == {"offline.loss.beta"} for job in offline)
    assert_consistent(plan)


def test_rich_plan_fans_out_swept_upstream():
    plan = compile_spec(RICH)
    assert counts(plan) == {"task": 1, "golden": 1, "golden_data": 1, "sft": 2, "proxy": 2, "online": 2,
                            "offline": 16, "tandem": 6, "d_online": 2}
    assert len(plan.jobs) == 33
    assert dag(plan) == {
        "task": set(),
        "golden": {"task"},
        "golden_data": {"task", "golden"},
        "sft": {"golden_data"},
        "proxy": {"golden_data", "sft"},
        "online": {"sft", "proxy"} | POLICY_EVAL,
        "offline": {"sft"} | POLICY_EVAL,
        "tandem": {"sft", "online"} | POLICY_EVAL,
        "d_online": {"online", "golden", "task"},
    }
    assert_consistent(plan)
    # grid (3 lr) x zip (3 beta/loss pairs), minus `where` (lr=1e-4 with beta=0.05), per SFT seed
    offline = [job for job in plan.jobs if job.stage == "offline"]
    for seed in (0, 1):
        points = {(j.config["train"]["lr"], j.config["loss"]["beta"], j.config["loss"]["name"])
                  for j in offline if j.sweep["sft.train.seed"] == seed}
        assert points == {(lr, beta, loss) for lr in (1e-5, 3e-5, 1e-4)
                          for beta, loss in ((0.05, "ipo"), (0.1, "dpo"), (0.5, "ipo"))} - {(1e-4, 0.05, "ipo")}
    tandem = {(j.sweep["sft.train.seed"], j.config["sampler"]["shuffle"]) for j in plan.jobs if j.stage == "tandem"}
    assert tandem == {(seed, shuffle) for seed in (0, 1) for shuffle in (0.0, 0.5, 1.0)}
    d_online = [job for job in plan.jobs if job.stage == "d_online"]
    assert all(job.upstream_steps == {"a": 50} and job.upstream["a"] == job.upstream["b"] for job in d_online)


def test_extends_and_profile():
    plan = compile_spec(EXTENDS)
    assert counts(plan) == {"task": 1, "golden": 1, "golden_data": 1, "sft": 6, "offline": 12}
    assert dag(plan)["offline"] == {"sft", "golden_data", "task"}
    sft = [job for job in plan.jobs if job.stage == "sft"]
    assert {(j.config["train"]["lr"], j.config["train"]["seed"]) for j in sft} == {
        (lr, seed) for lr in (1e-3, 3e-3) for seed in (0, 1, 2)}
    assert all(j.config["model"]["size"] == "XS" and j.config["train"]["steps"] == 200 for j in sft)  # from base.yaml
    task = next(job for job in plan.jobs if job.stage == "task")
    assert task.config["task"]["variant"] == "topic"
    assert_consistent(plan)

    smoke = compile_spec(EXTENDS, profile="smoke")
    assert counts(smoke) == {"task": 1, "golden": 1, "golden_data": 1, "sft": 1, "offline": 2}
    assert {job.config["train"]["steps"] for job in smoke.jobs if job.stage == "sft"} == {20}
    assert {job.config["train"]["steps"] for job in smoke.jobs if job.stage == "offline"} == {10}
    shared = {"task", "golden", "golden_data"}
    assert {j.id for j in smoke.jobs if j.stage in shared} == {j.id for j in plan.jobs if j.stage in shared}


# -- what job ids depend on ------------------------------------------------------------------


def test_ids_stable_under_key_order(tmp_path):
    def reverse(node):
        if isinstance(node, dict):
            return {k: reverse(node[k]) for k in reversed(list(node))}
        return [reverse(v) for v in node] if isinstance(node, list) else node

    for spec in (QUICKSTART, RICH):
        flipped = write(tmp_path / spec.name, reverse(load(spec)))
        assert ids_by_stage(compile_spec(flipped)) == ids_by_stage(compile_spec(spec))


@pytest.mark.parametrize("spelling", ["1e-3", "0.001", "1.0E-3", "10.0e-4", "0.0010"])
def test_ids_stable_under_number_spelling(tmp_path, spelling):
    text = RICH.read_text()
    assert "lr: 1.0e-3" in text and "[1.0e-5, 3.0e-5, 1.0e-4]" in text and "steps: 100," in text
    text = (text.replace("lr: 1.0e-3", f"lr: {spelling}")
                .replace("[1.0e-5, 3.0e-5, 1.0e-4]", "[0.00001, 3e-5, 1E-4]")
                .replace("steps: 100,", "steps: 100.0,"))
    respelled = tmp_path / "respelled.yaml"
    respelled.write_text(text)
    assert ids_by_stage(compile_spec(respelled)) == ids_by_stage(compile_spec(RICH))
    # and on the command line
    overridden = compile_spec(RICH, overrides=[f"stages.sft.train.lr={spelling}"])
    assert ids_by_stage(overridden) == ids_by_stage(compile_spec(RICH))


def test_ids_stable_under_stage_renames(tmp_path):
    renames = {"sft": "warm_start", "online": "online_run", "golden_data": "d_golden", "offline": "off"}
    data = load(RICH)

    def rename(value):
        if isinstance(value, str):
            name, at, step = value.partition("@")
            return renames.get(name, name) + at + step
        if isinstance(value, dict):
            return {k: rename(v) for k, v in value.items()}
        return [rename(v) for v in value] if isinstance(value, list) else value

    data["stages"] = {renames.get(name, name): {k: (v if k in ("kind", "sweep") else rename(v)) for k, v in stage.items()}
                      for name, stage in data["stages"].items()}
    data["evaluate"] = rename(data["evaluate"])
    renamed = compile_spec(write(tmp_path / "renamed.yaml", data))
    original = compile_spec(RICH)
    assert {renames.get(k, k): v for k, v in ids_by_stage(original).items()} == ids_by_stage(renamed)


def test_changing_a_swept_value_changes_exactly_its_jobs(tmp_path):
    original = compile_spec(RICH)
    text = RICH.read_text()
    assert "beta: [0.05, 0.1, 0.5]" in text
    changed_file = tmp_path / "changed.yaml"
    changed_file.write_text(text.replace("beta: [0.05, 0.1, 0.5]", "beta: [0.05, 0.1, 0.6]"))
    changed = compile_spec(changed_file)
    before, after = {j.id for j in original.jobs}, {j.id for j in changed.jobs}
    expected = {j.id for j in original.jobs if j.sweep.get("offline.loss.beta") == 0.5}
    assert len(expected) == 6  # 3 lr x 2 SFT seeds; nothing is downstream of offline
    assert before - after == expected
    assert len(after - before) == 6


def test_changing_an_upstream_sweep_changes_everything_below_it():
    original = compile_spec(RICH)
    changed = compile_spec(RICH, overrides=["stages.sft.sweep.seeds=[0, 2]"])
    before, after = {j.id for j in original.jobs}, {j.id for j in changed.jobs}
    seed1 = {j.id for j in original.jobs if j.sweep.get("sft.train.seed") == 1}
    assert len(seed1) == 15  # sft, proxy, online, 8 offline, 3 tandem, d_online
    assert before - after == seed1
    assert len(after - before) == 15


def test_changing_an_unswept_value_changes_exactly_its_descendants():
    original = compile_spec(RICH)
    changed = compile_spec(RICH, overrides=["stages.golden_data.mode=sample"])
    by_stage_before, by_stage_after = ids_by_stage(original), ids_by_stage(changed)
    for stage in ("task", "golden"):
        assert by_stage_before[stage] == by_stage_after[stage]
    for stage in by_stage_before.keys() - {"task", "golden"}:
        assert not by_stage_before[stage] & by_stage_after[stage], stage


def test_blockwise_validation_matches_whole_stage_validation(monkeypatch, tmp_path):
    """Big sweeps re-validate only the swept blocks of a stage; the configs must not differ."""
    from specc.compiler import points

    swept = write(tmp_path / "swept.yaml", {**load(RICH), "max_jobs": 1000} | {"stages": {
        **load(RICH)["stages"],
        "sft": {**load(RICH)["stages"]["sft"], "sweep": {"seeds": [0, 1], "lr": [1e-3, 1], "model.size": ["XS", "S"]}},
    }})
    specs = (QUICKSTART, RICH, EXTENDS, swept)
    blockwise = [{job.id: job.config for job in compile_spec(spec).jobs} for spec in specs]
    monkeypatch.setattr(points._Resolver, "_by_block", lambda self, point: None)
    whole = [{job.id: job.config for job in compile_spec(spec).jobs} for spec in specs]
    assert blockwise == whole
    assert len(blockwise[-1]) > len(blockwise[1])
