"""The paper's pipeline on real, padded text data: a local tokenizer and a local causal LM
(written here with save_pretrained), preference records in a jsonl file, every stage kind.

What would break: padding leaking into log-probs (padding invariance), samples not ending
at EOS, masks lost between stages (the online stream, D_golden, replay), the replay of a
padded stream not reproducing its online run, a hub policy not surviving save/load.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from specc.compiler.plan import compile_spec
from specc.runtime.artifacts import read_pairs
from specc.runtime.executor import run_local
from specc.runtime.jobdir import JobDir
from specc.runtime.loop import step_generator
from specc.runtime.models import end_at_eos, load_model, response_logprobs, sample, save_model

WORDS = "good great fine bad awful meh the a cat dog sat ran on mat log yes no maybe why how".split()
SPECIALS = ["<pad>", "<unk>", "<eos>"]
PAD, EOS = 0, 2


def word_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="<eos>", pad_token="<pad>")


def tiny_lm(seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(SPECIALS + WORDS), n_positions=32, n_embd=32, n_layer=1, n_head=2,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, eos_token_id=EOS, pad_token_id=PAD)
    return GPT2LMHeadModel(config).eval()


def records(n: int, rng: np.random.Generator) -> list[dict]:
    """Replies with more positive words are preferred; prompts and replies vary in length."""
    positive, other = WORDS[:3], WORDS[6:]
    out = []
    for _ in range(n):
        prompt = " ".join(rng.choice(other, size=rng.integers(1, 6)))
        good = " ".join(list(rng.choice(positive, size=rng.integers(1, 4))) + list(rng.choice(other, size=rng.integers(0, 3))))
        bad = " ".join(rng.choice(WORDS[3:6] + other, size=rng.integers(1, 6)))
        out.append({"prompt": prompt, "chosen": good, "rejected": bad})
    return out


def run_real_spec(root, spec_template: str, lm, rows: list[dict]) -> dict[str, JobDir]:
    """Save `lm` and the word tokenizer under `root`, write `rows` as a jsonl file, fill the
    spec template's {model}, {data} and {tokenizer}, run every job in-process: jobs by stage."""
    word_tokenizer().save_pretrained(root / "tokenizer")
    lm.save_pretrained(root / "lm")
    word_tokenizer().save_pretrained(root / "lm")
    with open(root / "prefs.jsonl", "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    spec = root / "spec.yaml"
    spec.write_text(spec_template.format(model=root / "lm", data=root / "prefs.jsonl", tokenizer=root / "tokenizer"))
    plan = compile_spec(spec)
    result = run_local(plan, root / "ws", kind="debug")
    assert result.ok, result.failed
    return {job.stage: JobDir(root / "ws" / "jobs" / job.id) for job in plan.jobs}


SPEC = """
name: real-tiny
defaults:
  model: {{family: hub, name: {model}}}
  train: {{batch_size: 8, threads: 1, eval_every: 3, checkpoint_every: 3, lr: 1.0e-3}}
  loss: {{name: ipo, beta: 0.1}}
evaluate: {{baseline: sft, judge: golden, pairs: golden_data, kl_prompts: 6, win_prompts: 6, classifier_pairs: 16}}
stages:
  task:
    kind: dataset
    source: files
    format: generic
    path: {data}
    tokenizer: {tokenizer}
    max_prompt_tokens: 6
    max_response_tokens: 5
  golden: {{kind: preference_model, data: task, form: pointwise, model: {{family: tiny, size: XS}}, train: {{steps: 6}}}}
  golden_data: {{kind: label, data: task, judge: golden}}
  sft: {{kind: sft, data: golden_data, train: {{steps: 6}}}}
  proxy: {{kind: preference_model, data: golden_data, form: pairwise, model: {{family: tiny, size: XS}}, train: {{steps: 6}}}}
  online: {{kind: align, init: sft, sampler: {{online: proxy}}, train: {{steps: 6}}}}
  offline: {{kind: align, init: sft, sampler: {{offline: golden_data}}, train: {{steps: 6}}}}
  tandem: {{kind: align, init: sft, sampler: {{replay: online}}, train: {{steps: 6}}}}
  versus: {{kind: pairs, a: online, b: sft, judge: golden, prompts: task, count: 12}}
executor: {{kind: debug}}
"""


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    return run_real_spec(tmp_path_factory.mktemp("real"), SPEC, tiny_lm(), records(80, np.random.default_rng(0)))


def metrics(job: JobDir) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for f in sorted((job.path / "metrics").glob("*.parquet")):
        t = pq.read_table(f).to_pydict()
        for step, name, value in zip(t["step"], t["name"], t["value"]):
            out.setdefault(name, {})[int(step)] = value
    return out


def test_padding_does_not_change_log_probs():
    lm = tiny_lm()
    prompt, response = torch.tensor([[5, 9, 12]]), torch.tensor([[4, 7, EOS, PAD]])
    response_mask = torch.tensor([[1, 1, 1, 0]])
    plain = response_logprobs(lm, prompt, response, response_mask, torch.ones_like(prompt))
    padded_prompt = torch.tensor([[PAD, PAD, 5, 9, 12]])
    padded = response_logprobs(lm, padded_prompt, response, response_mask, torch.tensor([[0, 0, 1, 1, 1]]))
    torch.testing.assert_close(padded, plain, rtol=0, atol=1e-5)
    assert padded[0, 3] == 0  # the pad after EOS contributes nothing
    # without the mask the pads are read as tokens: the test would catch a lost mask
    unmasked = response_logprobs(lm, padded_prompt, response, response_mask)
    assert not torch.allclose(unmasked, plain, atol=1e-3)


def test_sampling_after_left_padding_matches_unpadded():
    lm = tiny_lm()
    prompts = torch.tensor([[PAD, PAD, 5, 9], [7, 8, 10, 11]])
    prompt_mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    padded = sample(lm, prompts, 6, step_generator(0, "t", 0), prompt_mask=prompt_mask)
    alone = sample(lm, torch.tensor([[5, 9]]), 6, step_generator(0, "t", 0), prompt_mask=torch.ones(1, 2, dtype=torch.long))
    logp_padded = response_logprobs(lm, prompts[:1], padded[:1], None, prompt_mask[:1])
    logp_alone = response_logprobs(lm, torch.tensor([[5, 9]]), padded[:1])
    torch.testing.assert_close(logp_padded, logp_alone, rtol=0, atol=1e-5)
    assert padded.shape == (2, 6) and alone.shape == (1, 6)


def test_end_at_eos_keeps_eos_and_pads_after():
    responses = torch.tensor([[4, EOS, 5, EOS], [4, 5, 6, 7], [EOS, 4, 4, 4]])
    cut, mask = end_at_eos(responses, EOS, PAD)
    assert cut.tolist() == [[4, EOS, PAD, PAD], [4, 5, 6, 7], [EOS, PAD, PAD, PAD]]
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]


def test_hub_policy_survives_save_and_load(tmp_path):
    lm = tiny_lm(3)
    save_model(lm, tmp_path / "p.safetensors")
    back = load_model(tmp_path / "p.safetensors")
    tokens = torch.tensor([[5, 6, 7, 8]])
    torch.testing.assert_close(back(input_ids=tokens).logits, lm(input_ids=tokens).logits, rtol=0, atol=0)


def test_every_stage_runs_on_padded_text(real_run):
    for stage in ("online", "offline", "tandem"):
        m = metrics(real_run[stage])
        for name in ("eval/kl", "eval/win_rate", "eval/classifier_accuracy", "train/loss"):
            assert name in m, (stage, name)
            assert all(math.isfinite(v) for v in m[name].values()), (stage, name)
        assert min(m["eval/kl"].values()) >= -1e-6
        assert m["eval/kl"][0] == pytest.approx(0, abs=1e-6)  # the policy starts at its reference
    assert "eval/proxy_accuracy_on_policy" in metrics(real_run["online"])
    status = real_run["online"].status()
    assert (status["device"], status["precision"]) == ("cpu", "float32")  # what the job ran on is recorded


def test_masks_travel_with_the_data(real_run):
    golden = read_pairs(real_run["golden_data"])
    assert {"prompt_mask", "chosen_mask", "rejected_mask"} <= set(golden)
    # a masked-out position holds the pad id, in every table the pipeline writes
    stream = pq.read_table(next((real_run["online"].artifacts / "stream").glob("*.parquet"))).to_pydict()
    versus = read_pairs(real_run["versus"])
    for table in (golden, {k: np.asarray(v) for k, v in stream.items()}, versus):
        for side in ("chosen", "rejected"):
            tokens, mask = np.asarray(table[side]), np.asarray(table[f"{side}_mask"])
            assert (tokens[mask == 0] == PAD).all()
            assert mask[:, 0].all()  # every response has at least one real token
    # sampled responses end at their first EOS (or run to the length limit)
    tokens, mask = np.asarray(stream["chosen"]), np.asarray(stream["chosen_mask"])
    for row, row_mask in zip(tokens, mask):
        real = row[row_mask == 1]
        assert EOS not in real[:-1]
        assert len(real) == len(row) or real[-1] == EOS


def test_exact_replay_of_a_padded_stream_reproduces_the_online_run(real_run):
    online, tandem = metrics(real_run["online"]), metrics(real_run["tandem"])
    assert online["train/loss"] == tandem["train/loss"]
    assert online["eval/kl"] == tandem["eval/kl"]
