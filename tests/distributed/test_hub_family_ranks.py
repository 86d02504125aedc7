"""Two ranks on the full profile's model family (GPT-NeoX, as Pythia): its blocks are found
and sharded, its untied output layer is gathered and saved whole."""

import json

import numpy as np
import pytest
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from specc.compiler.plan import compile_spec
from specc.runtime.executor import run_local
from specc.runtime.jobdir import JobDir

from tests.distributed.test_ranks import assert_close_runs
from tests.distributed.test_real_data_ranks import rerun_with_two_ranks
from tests.runtime.test_real_pipeline import SPEC, SPECIALS, WORDS, records, word_tokenizer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def neox_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("neox")
    word_tokenizer().save_pretrained(root / "tokenizer")
    config = GPTNeoXConfig(vocab_size=len(SPECIALS + WORDS), hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=64, max_position_embeddings=32,
                           hidden_dropout=0.0, attention_dropout=0.0, eos_token_id=2, pad_token_id=0)
    GPTNeoXForCausalLM(config).save_pretrained(root / "lm")
    word_tokenizer().save_pretrained(root / "lm")
    with open(root / "prefs.jsonl", "w") as fh:
        for row in records(80, np.random.default_rng(0)):
            fh.write(json.dumps(row) + "\n")
    spec = root / "real.yaml"
    spec.write_text(SPEC.format(model=root / "lm", data=root / "prefs.jsonl", tokenizer=root / "tokenizer"))
    plan = compile_spec(spec)
    result = run_local(plan, root / "ws", kind="debug")
    assert result.ok, result.failed
    return {job.stage: JobDir(root / "ws" / "jobs" / job.id) for job in plan.jobs}


@pytest.mark.parametrize("stage", ["sft", "offline"])
def test_two_ranks_of_a_gpt_neox_train_as_one_process(neox_run, tmp_path, stage):
    assert_close_runs(rerun_with_two_ranks(neox_run, stage, tmp_path), neox_run[stage])
