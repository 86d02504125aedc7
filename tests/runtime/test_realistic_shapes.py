"""Every stage kind at the full profile's sequence widths, on the CPU: a GPTNeoX (Pythia's
architecture) built from config, prompts of hundreds of tokens, left-padded batches, with
micro-batches, activation checkpointing and chunked gradient-free forwards (more rows than a
chunk: labelling, D_golden classification, the reference table, sampling), for a few steps.

What would break: a code path that only ever ran at toy widths (a shape assumption, a cache
dropped under checkpointing, chunks stitched in the wrong order) failing on the first real job.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from tests.runtime.test_real_pipeline import EOS, PAD, WORDS, metrics, run_real_spec, word_tokenizer

SPEC = """
name: realistic
defaults:
  model: {{family: hub, name: {model}, dtype: bfloat16}}
  train: {{batch_size: 8, micro_batch_size: 3, grad_checkpointing: true, threads: 1, eval_every: 2,
          checkpoint_every: 2, lr: 1.0e-4}}
evaluate: {{baseline: sft, judge: golden, pairs: golden_data, kl_prompts: 12, win_prompts: 12, classifier_pairs: 70}}
stages:
  task:
    kind: dataset
    source: files
    format: generic
    path: {data}
    tokenizer: {tokenizer}
    max_prompt_tokens: 320
    max_response_tokens: 24
  golden: {{kind: preference_model, data: task, form: pairwise, train: {{steps: 2}}}}
  golden_data: {{kind: label, data: task, judge: golden}}
  sft: {{kind: sft, data: golden_data, train: {{steps: 3}}}}
  proxy: {{kind: preference_model, data: golden_data, init: sft, form: pointwise, train: {{steps: 2}}}}
  online: {{kind: align, init: sft, sampler: {{online: proxy}}, train: {{steps: 2}}}}
  offline: {{kind: align, init: sft, sampler: {{offline: golden_data}}, train: {{steps: 2}}}}
  tandem: {{kind: align, init: sft, sampler: {{replay: online}}, train: {{steps: 2}}}}
  versus: {{kind: pairs, a: online, b: sft, judge: golden, prompts: task, count: 70}}
executor: {{kind: debug}}
"""


def long_records(n: int, rng: np.random.Generator) -> list[dict]:
    """Prompts of 60-300 words (a padded batch spans them), replies of 2-20."""
    def words(lo, hi):
        return " ".join(rng.choice(WORDS, size=rng.integers(lo, hi)))
    return [{"prompt": words(60, 300), "chosen": words(2, 20), "rejected": words(2, 20)} for _ in range(n)]


@pytest.fixture(scope="module")
def realistic_run(tmp_path_factory):
    torch.manual_seed(0)
    config = GPTNeoXConfig(vocab_size=len(word_tokenizer()), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=512, eos_token_id=EOS, pad_token_id=PAD)
    return run_real_spec(tmp_path_factory.mktemp("realistic"), SPEC, GPTNeoXForCausalLM(config),
                         long_records(90, np.random.default_rng(0)))


def test_every_stage_kind_runs_at_full_widths(realistic_run):
    prompt_len = json.loads((realistic_run["task"].artifacts / "task.json").read_text())["prompt_len"]
    assert prompt_len >= 250  # hundreds of tokens, padded
    for stage in ("online", "offline", "tandem"):
        m = metrics(realistic_run[stage])
        for name in ("train/loss", "eval/kl", "eval/win_rate", "eval/classifier_accuracy"):
            assert all(math.isfinite(v) for v in m[name].values()), (stage, name)
    for stage in ("sft", "golden", "proxy"):
        assert all(math.isfinite(v) for v in metrics(realistic_run[stage])["train/loss"].values())
    assert (realistic_run["versus"].artifacts).exists()


def test_bf16_spec_saved_bf16_and_trained_float32(realistic_run):
    from safetensors import safe_open
    with safe_open(str(realistic_run["sft"].artifacts / "policy.safetensors"), "pt") as fh:
        assert {fh.get_slice(k).get_dtype() for k in fh.keys()} == {"BF16"}
    assert not list(realistic_run["sft"].checkpoint_dir.glob("state.pt*"))  # optimiser state dropped once done


def test_exact_replay_still_reproduces_the_online_run(realistic_run):
    online, tandem = metrics(realistic_run["online"]), metrics(realistic_run["tandem"])
    assert online["train/loss"] == tandem["train/loss"]
