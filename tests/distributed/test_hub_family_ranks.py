"""Two ranks on the full profile's model family (GPT-NeoX, as Pythia): its blocks are found
and sharded, its untied output layer is gathered and saved whole."""

import numpy as np
import pytest
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from tests.distributed.test_ranks import assert_close_runs
from tests.distributed.test_real_data_ranks import rerun_with_two_ranks
from tests.runtime.test_real_pipeline import SPEC, SPECIALS, WORDS, records, run_real_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def neox_run(tmp_path_factory):
    config = GPTNeoXConfig(vocab_size=len(SPECIALS + WORDS), hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=64, max_position_embeddings=32,
                           hidden_dropout=0.0, attention_dropout=0.0, eos_token_id=2, pad_token_id=0)
    return run_real_spec(tmp_path_factory.mktemp("neox"), SPEC, GPTNeoXForCausalLM(config),
                         records(80, np.random.default_rng(0)))


@pytest.mark.parametrize("stage", ["sft", "offline"])
def test_two_ranks_of_a_gpt_neox_train_as_one_process(neox_run, tmp_path, stage):
    assert_close_runs(rerun_with_two_ranks(neox_run, stage, tmp_path), neox_run[stage])
