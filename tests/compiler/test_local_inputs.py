"""Local models, tokenizers and dataset folders are part of a job's identity: their content,
not their path alone. Retrain a checkpoint in place and the jobs that read it are new."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from specc.compiler import inputs
from specc.compiler.inputs import CACHE_ENV, CACHE_FILE
from specc.compiler.plan import compile_spec
from specc.errors import SpecErrors

SPEC = """\
name: local
stages:
  task:   {kind: dataset, source: files, format: generic, path: DATA, tokenizer: TOKENIZER}
  sft:    {kind: sft, data: task, model: {family: hub, name: MODEL}}
  online: {kind: dataset, source: hub, hub_name: some-org/some-data, format: generic, tokenizer: TOKENIZER}
"""


@pytest.fixture(autouse=True)
def digest_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / CACHE_FILE


@pytest.fixture
def folders(tmp_path):
    model, tokenizer = tmp_path / "model", tmp_path / "tokenizer"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "gpt2"}')
    (model / "model.safetensors").write_bytes(b"\x00" * 1000)
    (model / "sub" / "extra.bin").write_bytes(b"\x01\x02")
    (model / ".cache").mkdir()
    (model / ".cache" / "download.lock").write_text("x")
    tokenizer.mkdir()
    (tokenizer / "tokenizer.json").write_text('{"version": "1.0"}')
    data = tmp_path / "prefs.jsonl"
    data.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n')
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("DATA", str(data)).replace("TOKENIZER", str(tokenizer)).replace("MODEL", str(model)))
    return spec, model, tokenizer


def ids(spec) -> dict[str, str]:
    return {job.stage: job.id for job in compile_spec(spec).jobs}


def test_editing_a_local_model_makes_new_jobs(folders):
    spec, model, _ = folders
    before = ids(spec)
    (model / "model.safetensors").write_bytes(b"\x00" * 999 + b"\x01")  # retrained in place, same size
    after = ids(spec)
    assert after["sft"] != before["sft"]
    assert after["task"] == before["task"] and after["online"] == before["online"]
    (model / "sub" / "extra.bin").write_bytes(b"\x01\x03")  # a file in a subfolder counts too
    assert ids(spec)["sft"] != after["sft"]


def test_touching_or_hidden_files_change_nothing(folders):
    spec, model, _ = folders
    before = ids(spec)
    os.utime(model / "config.json", (1, 1))  # same bytes, another time stamp
    (model / ".cache" / "download.lock").write_text("y")  # download metadata
    assert ids(spec) == before


def test_editing_a_local_tokenizer_changes_every_job_that_reads_it(folders):
    spec, _, tokenizer = folders
    before = ids(spec)
    (tokenizer / "tokenizer.json").write_text('{"version": "1.1"}')
    after = ids(spec)
    assert after["task"] != before["task"] and after["online"] != before["online"]
    assert after["sft"] != before["sft"]  # downstream of the re-tokenized data


def test_hub_names_are_not_read(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: hub\nstages:\n  data: {kind: dataset, source: hub, hub_name: Anthropic/hh-rlhf, "
                    "format: anthropic_hh, tokenizer: openai-community/gpt2}\n")
    assert len(compile_spec(spec).jobs) == 1  # compiles offline: nothing to digest


def test_a_missing_local_folder_is_a_located_error(folders, tmp_path):
    spec, model, _ = folders
    shutil.rmtree(model)
    with pytest.raises(SpecErrors) as err:
        compile_spec(spec)
    message = str(err.value)
    assert "stages.sft.model.name" in message and "no such folder" in message
    assert f"{spec}:4:" in message  # the line of the sft stage's model


def test_digests_are_remembered_and_a_torn_cache_is_ignored(folders, digest_cache, monkeypatch):
    spec, model, _ = folders
    before = ids(spec)
    cached = json.loads(digest_cache.read_text())
    assert os.path.realpath(model / "model.safetensors") in cached
    digest_cache.write_text("{torn")
    monkeypatch.setattr(inputs, "_DIGESTS", inputs._DigestCache())  # what a new process starts from
    assert ids(spec) == before
    assert os.path.realpath(model / "model.safetensors") in json.loads(digest_cache.read_text())
