"""Errors are for people: located, with a did-you-mean, all of a file's at once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from specc.compiler.plan import compile_spec
from specc.errors import SpecErrors

PIPELINE = """\
name: t
stages:
  task:        {kind: dataset}
  golden:      {kind: oracle, data: task}
  golden_data: {kind: label, data: task, judge: golden}
  sft:         {kind: sft, data: golden_data}
"""


def spec_file(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(path: Path, **kwargs) -> list[str]:
    with pytest.raises(SpecErrors) as raised:
        compile_spec(path, **kwargs)
    return [str(e) for e in raised.value.errors]


def position(path: Path, needle: str, occurrence: int = 0) -> str:
    """file:line:col of the `occurrence`-th line holding `needle`, at the needle (errors point at keys)."""
    lines = path.read_text().splitlines()
    hits = [(i + 1, line.index(needle) + 1) for i, line in enumerate(lines) if needle in line]
    line, col = hits[occurrence]
    return f"{path}:{line}:{col}"


def test_unknown_stage_reference_did_you_mean(tmp_path):
    path = spec_file(tmp_path, PIPELINE + """\
  online:  {kind: align, init: sft, sampler: {online: golden}}
  offline:
    kind: align
    init: sft
    sampler: {replay: onlin}
""")
    assert errors_of(path) == [
        f"{position(path, 'replay')}: stages.offline.sampler.replay: unknown stage 'onlin' (did you mean 'online'?)"]


def test_unknown_key_did_you_mean(tmp_path):
    path = spec_file(tmp_path, PIPELINE.replace("{kind: sft, data: golden_data}",
                                                "{kind: sft, data: golden_data, train: {lrr: 1.0e-3}}"))
    [error] = errors_of(path)
    assert error.startswith(f"{position(path, 'lrr')}: stages.sft.train.lrr: unknown key 'lrr' (did you mean 'lr'?); "
                            "expected one of: batch_size, ")


@pytest.mark.parametrize("typo, meant, where", [
    ("stagse", "stages", "top level"), ("kidn", "kind", "a stage"), ("bta", "beta", "loss"),
    ("gird", "grid", "sweep"), ("exector", "executor", "top level")])
def test_did_you_mean_everywhere(tmp_path, typo, meant, where):
    blocks = {
        "top level": PIPELINE + f"{typo}: 1\n",
        "a stage": PIPELINE + f"  x: {{kind: dataset, {typo}: 1}}\n",
        "loss": PIPELINE + f"  off: {{kind: align, init: sft, sampler: {{offline: golden_data}}, loss: {{{typo}: 1}}}}\n",
        "sweep": PIPELINE + f"  off: {{kind: align, init: sft, sampler: {{offline: golden_data}}, sweep: {{{typo}: {{lr: [1]}}}}}}\n",
    }
    errors = errors_of(spec_file(tmp_path, blocks[where]))
    assert any(f"unknown key '{typo}' (did you mean '{meant}'?)" in e for e in errors), errors


def test_unknown_stage_kind_did_you_mean(tmp_path):
    [error] = errors_of(spec_file(tmp_path, PIPELINE + "  x: {kind: allign}\n"))
    assert ": stages.x.kind: unknown stage kind 'allign' (did you mean 'align'?)" in error


def test_all_errors_of_a_file_at_once(tmp_path):
    path = spec_file(tmp_path, PIPELINE + """\
  proxy:   {kind: preference_model, data: golden_data, init: sft, trian: {steps: 5}}
  online:  {kind: align, init: sfft, sampler: {online: golden}}
  offline:
    kind: align
    init: sft
    sampler: {offline: golden_data}
    sweep: {lr: [1.0e-4, 3.0e-4], where: ["lr >> 1"]}
  ring_a:  {kind: label, data: ring_b, judge: golden}
  ring_b:  {kind: label, data: ring_a, judge: golden}
executor: {kind: lokal}
colour: blue
""")
    errors = errors_of(path)
    expected = [
        (position(path, "trian"), "stages.proxy.trian: unknown key 'trian' (did you mean 'train'?)"),
        (position(path, "init: sfft"), "stages.online.init: unknown stage 'sfft' (did you mean 'sft'?)"),
        (position(path, '"lr >> 1"'), "stages.offline.sweep.where.0: where expression 'lr >> 1': RShift is not allowed"),
        (position(path, "data: ring_a"), "stages.ring_b.data: references form a loop: ring_a -> ring_b -> ring_a (cycle)"),
        (position(path, "kind: lokal"), "executor.kind: Input should be 'debug', 'local' or 'slurm' (got 'lokal')"),
        (position(path, "colour"), "colour: unknown key 'colour'"),
    ]
    assert len(errors) == len(expected), errors
    for error, (where, what) in zip(errors, expected):  # sorted by position in the file
        assert error.startswith(f"{where}: {what}"), (error, where, what)


def test_defaults_errors_reported_once_where_written(tmp_path):
    path = spec_file(tmp_path, "defaults: {train: {lr: -1}}\n" + PIPELINE + "  pm: {kind: preference_model, data: golden_data}\n")
    assert errors_of(path) == [f"{position(path, 'lr: -1')}: defaults.train.lr: Input should be greater than 0 (got -1)"]


def test_where_and_sweep_errors(tmp_path):
    path = spec_file(tmp_path, PIPELINE + """\
  off:
    kind: align
    init: sft
    sampler: {offline: golden_data}
    sweep:
      lr: [1.0e-4, 3.0e-4]
      train.lrr: [1]
      zip: [{beta: [0.1, 0.2], loss: [ipo]}]
""")
    errors = errors_of(path)
    assert f"{position(path, 'train.lrr')}: stages.off.sweep.train.lrr: cannot sweep train.lrr: train has no field 'lrr' (did you mean 'lr'?)" in errors
    assert any(e.startswith(f"{position(path, '{beta')}: stages.off.sweep.zip.0: zipped lists must have equal lengths")
               for e in errors), errors


def test_yaml_tags_are_refused(tmp_path):
    path = spec_file(tmp_path, PIPELINE + "  x: !!python/object/apply:os.system ['echo pwned']\n")
    [error] = errors_of(path)
    assert error == f"{position(path, 'x: !!python')}: stages.x: YAML tag !!python/object/apply:os.system is not allowed: a spec is plain data"


def test_sweep_past_the_job_limit_is_refused_with_its_count(tmp_path):
    grid = PIPELINE + """\
  off:
    kind: align
    init: sft
    sampler: {offline: golden_data}
    sweep: {lr: [%s], beta: [%s]}
""" % (", ".join(f"{i}.0e-6" for i in range(1, 102)), ", ".join(f"{i / 100}" for i in range(1, 101)))
    path = spec_file(tmp_path, grid)
    [error] = errors_of(path)
    assert error == (f"{position(path, 'sweep')}: stages.off.sweep: this sweep expands to 10100 jobs, past the limit "
                     "of 10000; raise `max_jobs` or pass --max-jobs if this is intended")
    assert len(compile_spec(path, max_jobs=10_104).jobs) == 10_104  # 4 upstream jobs
    with_limit = spec_file(tmp_path, grid + "max_jobs: 20000\n", "with_limit.yaml")
    assert len(compile_spec(with_limit).jobs) == 10_104
    assert "10104 jobs" in _specc("validate", str(path), "--max-jobs", "20000", returncode=0).stdout
    cli = _specc("validate", str(path), returncode=2)
    assert "this sweep expands to 10100 jobs" in cli.stderr


def test_fan_out_past_the_job_limit_is_refused(tmp_path):
    path = spec_file(tmp_path, PIPELINE.replace("{kind: sft, data: golden_data}",
                                                "{kind: sft, data: golden_data, sweep: {seeds: [%s]}}" % ", ".join(map(str, range(200))))
                     + "  off: {kind: align, init: sft, sampler: {offline: golden_data}, sweep: {beta: [%s]}}\n"
                     % ", ".join(f"{i / 100}" for i in range(1, 61)))
    [error] = errors_of(path)
    assert error.startswith(f"{position(path, 'off:')}: stages.off: the plan grows to at least 10")
    assert "past the limit of 10000" in error
    assert len(compile_spec(path, max_jobs=13_000).jobs) == 3 + 200 + 200 * 60
    assert errors_of(path, max_jobs=-1) == ["<command line>: --max-jobs: must be at least 1, got -1"]


def _specc(*args, returncode: int) -> subprocess.CompletedProcess:
    exe = shutil.which("specc")
    command = [exe] if exe else [sys.executable, "-c", "from specc.cli import main; main()"]
    result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == returncode, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result


def test_cli_prints_every_error_and_exits_2(tmp_path):
    path = spec_file(tmp_path, PIPELINE + "  a: {kind: align, init: sfft, sampler: {online: goldn}}\n")
    result = _specc("validate", str(path), returncode=2)
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"{position(path, 'init: sfft')}: stages.a.init: unknown stage 'sfft' (did you mean 'sft'?)",
        f"{position(path, 'online: goldn')}: stages.a.sampler.online: unknown stage 'goldn' (did you mean 'golden'?)",
        "2 errors",
    ]


def test_a_tiny_judge_cannot_start_from_a_policy_of_another_size(tmp_path):
    path = spec_file(tmp_path, PIPELINE + "  proxy: {kind: preference_model, data: golden_data, init: sft, model: {size: M}}\n")
    (error,) = errors_of(path)
    assert error.startswith(f"{position(path, 'init: sft')}: stages.proxy.init: 'proxy' is a size M judge")
    assert "'sft', a size S policy" in error and "drop init" in error
    same = spec_file(tmp_path, PIPELINE + "  proxy: {kind: preference_model, data: golden_data, init: sft}\n", "ok.yaml")
    assert compile_spec(same).jobs  # the same size is fine


def test_per_stage_resources_name_a_stage(tmp_path):
    path = spec_file(tmp_path, PIPELINE + "executor:\n  kind: slurm\n  mem_gb: 4\n  stages:\n    sfft: {mem_gb: 64}\n")
    assert errors_of(path) == [f"{position(path, 'sfft')}: executor.stages.sfft: unknown stage 'sfft' (did you mean 'sft'?)"]
    fixed = spec_file(tmp_path, path.read_text().replace("sfft", "sft"), "fixed.yaml")
    executor = compile_spec(fixed).executor
    assert (executor.for_stage("sft").mem_gb, executor.for_stage("task").mem_gb) == (64, 4)


def test_a_checkpoint_reference_is_checked_at_every_point_of_a_sweep(tmp_path):
    text = PIPELINE.replace("  sft:         {kind: sft, data: golden_data}",
                            "  sft:         {kind: sft, data: golden_data, train: {steps: 10}, sweep: {train.steps: [10, 20]}}")
    text += "  online:      {kind: align, init: sft@10, sampler: {online: golden}}\n"
    path = spec_file(tmp_path, text)
    # the unswept stage saves step 10; its steps=20 point does not
    assert errors_of(path) == [f"{position(path, 'init: sft@10')}: stages.online.init: 'sft' (sft.train.steps=20) "
                               f"never saves step 10: it saves [20] (add 10 to its train.save_at)"]
    saved = spec_file(tmp_path, text.replace("train: {steps: 10}", "train: {steps: 10, save_at: [10]}"), "ok.yaml")
    assert len([j for j in compile_spec(saved).jobs if j.stage == "online"]) == 2


FILES_DATASET = """\
name: f
stages:
  task: {kind: dataset, source: files, format: generic, path: DATA, tokenizer: some/tokenizer}
"""


def test_a_files_dataset_is_identified_by_its_contents(tmp_path):
    data = tmp_path / "prefs.jsonl"
    path = spec_file(tmp_path, FILES_DATASET.replace("DATA", str(data)))
    assert errors_of(path)[0].startswith(f"{position(path, 'path:')}: stages.task.path: cannot read")
    data.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n')
    first = compile_spec(path).jobs[0].id
    os.utime(data, (1, 1))  # touched, same bytes: the same job
    assert compile_spec(path).jobs[0].id == first
    data.write_text('{"prompt": "a", "chosen": "c", "rejected": "b"}\n')  # edited: a new job
    assert compile_spec(path).jobs[0].id != first
