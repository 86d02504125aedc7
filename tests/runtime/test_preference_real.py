"""Preference models on real, padded data and with hub backbones (a tiny GPT-2 and a
word-level tokenizer saved into tmp_path: nothing is downloaded)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModel, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from specc.compiler.plan import compile_spec
from specc.runtime.artifacts import read_pairs, task_info
from specc.runtime.executor import run_local
from specc.runtime.jobdir import JobDir
from specc.runtime.judges import load_judge
from specc.runtime.preference_models import PreferenceModel, hub_preference_model, save_preference_model
from specc.runtime.stages.preference_model import shown_in_order

WORDS = "hello world how are you fine thanks a b c d e f g".split()
SPECIALS = ["<pad>", "<unk>", "<eos>"]
PAD, EOS = 0, 2
VOCAB = len(SPECIALS) + len(WORDS)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def make_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level: ids 0-2 are SPECIALS, then WORDS in order; no sep token (pairs use EOS)."""
    core = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(SPECIALS + WORDS)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="<eos>", pad_token="<pad>")


def save_tiny_lm(path, vocab: int = VOCAB):
    """A GPT-2 causal LM and its tokenizer, as `save_pretrained` writes them."""
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                        eos_token_id=EOS, bos_token_id=EOS)
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(path)
    make_tokenizer().save_pretrained(path)
    return model


def task(prompt_len: int, response_len: int) -> dict:
    return {"vocab": VOCAB, "prompt_len": prompt_len, "response_len": response_len, "pad_id": PAD,
            "eos_id": EOS, "tokenizer": "word-level"}


# ---------------------------------------------------------------- padding
PROMPTS = [[4, 5, 6], [7]]
FIRST = [[8, 9], [10, 11, 12]]
SECOND = [[13], [4, 5, 2]]


def padded(rows, width: int, left: bool, rng) -> tuple[np.ndarray, np.ndarray]:
    """Rows packed to `width`, padding filled with random ids: a mask must make them irrelevant."""
    ids = rng.integers(0, VOCAB, (len(rows), width))
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span], mask[i, span] = row, 1
    return ids, mask


def padded_batch(prompt_width: int, response_width: int) -> dict:
    rng = np.random.default_rng(prompt_width * 100 + response_width)
    (p, pm), (a, am), (b, bm) = (padded(PROMPTS, prompt_width, True, rng), padded(FIRST, response_width, False, rng),
                                 padded(SECOND, response_width, False, rng))
    return {"prompts": p, "first": a, "second": b, "prompt_mask": pm, "first_mask": am, "second_mask": bm}


@pytest.mark.parametrize("form", ["pointwise", "pairwise"])
def test_score_does_not_depend_on_padding(form):
    torch.manual_seed(0)
    model = PreferenceModel(form, "S", VOCAB, 9 + 2 * 8 + 1).eval()  # 2 layers: pads must not leak through
    probs = [model.prob_first(**padded_batch(p, r)) for p, r in [(3, 3), (5, 4), (9, 8)]]
    for other in probs[1:]:
        np.testing.assert_allclose(other, probs[0], rtol=0, atol=1e-6)
    assert np.all(np.abs(probs[0] - 0.5) > 1e-4)  # a real verdict, not a constant
    batch = padded_batch(5, 4)
    swapped = model.prob_first(batch["prompts"], batch["second"], batch["first"], batch["prompt_mask"],
                               batch["second_mask"], batch["first_mask"])
    np.testing.assert_allclose(swapped, 1 - probs[1], atol=1e-12)  # symmetrised, masks travel with responses


def test_unpadded_masks_match_the_unmasked_path():
    torch.manual_seed(0)
    model = PreferenceModel("pairwise", "XS", VOCAB, 3 + 2 * 3 + 1).eval()
    prompts, first, second = (torch.tensor([[4, 5, 6]]), torch.tensor([[7, 8, 9]]), torch.tensor([[10, 11, 12]]))
    ones = torch.ones(1, 3, dtype=torch.long)
    np.testing.assert_allclose(model.prob_first(prompts, first, second, ones, ones, ones),
                               model.prob_first(prompts, first, second), atol=1e-6)


def test_pairwise_order_swaps_masks_with_responses():
    batch = {"prompt": torch.tensor([[1], [2]]), "chosen": torch.tensor([[3, 4], [5, 6]]),
             "rejected": torch.tensor([[7, 8], [9, 10]]), "prompt_mask": torch.tensor([[1], [1]]),
             "chosen_mask": torch.tensor([[1, 1], [1, 0]]), "rejected_mask": torch.tensor([[1, 0], [0, 0]])}
    prompts, first, second, prompt_mask, first_mask, second_mask = shown_in_order(batch, torch.tensor([True, False]))
    assert first.tolist() == [[3, 4], [9, 10]] and first_mask.tolist() == [[1, 1], [0, 0]]
    assert second.tolist() == [[7, 8], [5, 6]] and second_mask.tolist() == [[1, 0], [1, 0]]
    no_masks = {k: batch[k] for k in ("prompt", "chosen", "rejected")}
    assert shown_in_order(no_masks, torch.tensor([True, False]))[3:] == (None, None, None)


# ---------------------------------------------------------------- hub backbones
def test_hub_judge_saves_and_reloads_without_its_source(tmp_path, monkeypatch):
    save_tiny_lm(tmp_path / "lm")
    torch.manual_seed(0)
    model = hub_preference_model("pairwise", str(tmp_path / "lm"), "float32", task(9, 8))
    assert model.sep == EOS  # the word-level tokenizer has no sep token
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = padded_batch(9, 8)
    for _ in range(3):  # trained a little, so the head and backbone are not their initial values
        optimizer.zero_grad()
        model.logit(*batch.values()).sum().backward()
        optimizer.step()
    job = JobDir(tmp_path / "judge")
    save_preference_model(model, job)
    (tmp_path / "lm").rename(tmp_path / "gone")  # rebuilt from judge.json alone
    monkeypatch.setattr(AutoModel, "from_pretrained", _no_download)
    reloaded = load_judge(job)
    assert np.array_equal(reloaded.prob_first(**batch), model.prob_first(**batch))
    meta = json.loads((job.artifacts / "judge.json").read_text())
    assert {k: meta[k] for k in ("form", "family", "vocab", "max_len", "sep", "dtype")} == {
        "form": "pairwise", "family": "hub", "vocab": VOCAB, "max_len": 9 + 2 * 8 + 1, "sep": EOS, "dtype": "float32"}


def _no_download(*args, **kwargs):
    raise AssertionError("a saved judge must be rebuilt from its config, not loaded from the hub")


def test_hub_judge_starts_from_a_policy_of_the_same_model(tmp_path):
    policy = save_tiny_lm(tmp_path / "lm")
    model = hub_preference_model("pointwise", str(tmp_path / "lm"), "float32", task(4, 4))
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.zero_()
    model.init_from_policy(policy)
    assert all(torch.equal(v, policy.transformer.state_dict()[k]) for k, v in model.backbone.state_dict().items())
    other = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=8, n_layer=1, n_head=2))
    with pytest.raises(ValueError, match=r"does not match the preference model's backbone"):
        model.init_from_policy(other)


def test_dataset_tokenizer_must_be_the_backbones(tmp_path):
    save_tiny_lm(tmp_path / "small", vocab=10)
    with pytest.raises(ValueError, match=r"has 10 token embeddings, but the dataset's tokenizer \(word-level\) "
                                         r"has 17 ids: tokenize the dataset with the model's own tokenizer"):
        hub_preference_model("pairwise", str(tmp_path / "small"), "float32", task(4, 4))


# ---------------------------------------------------------------- the stages, end to end
SPEC = """
name: hub-judge
stages:
  data:    {{kind: dataset, source: files, format: generic, path: {data}, tokenizer: {lm},
            max_prompt_tokens: 4, max_response_tokens: 4}}
  judge:   {{kind: preference_model, data: data, model: {{family: hub, name: {lm}, dtype: float32}},
            train: {{steps: 3, batch_size: 4, eval_every: 2, checkpoint_every: 3, lr: 1.0e-2}}}}
  relabel: {{kind: label, data: data, judge: judge}}
"""


def write_records(path) -> None:
    """Each pair twice, in both orders: a judge relabels exactly one of the two."""
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(10):
        prompt, a, b = (" ".join(rng.choice(WORDS, rng.integers(1, 6))) for _ in range(3))
        lines += [{"prompt": prompt, "chosen": a, "rejected": b}, {"prompt": prompt, "chosen": b, "rejected": a}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_hub_judge_trains_and_relabels_padded_pairs(tmp_path, monkeypatch):
    save_tiny_lm(tmp_path / "lm")
    write_records(tmp_path / "prefs.jsonl")
    (tmp_path / "spec.yaml").write_text(SPEC.format(data=tmp_path / "prefs.jsonl", lm=tmp_path / "lm"))
    plan = compile_spec(tmp_path / "spec.yaml")
    result = run_local(plan, tmp_path / "ws", kind="debug")
    assert result.ok, result.failed
    jobs = {job.stage: JobDir(tmp_path / "ws" / "jobs" / job.id) for job in plan.jobs}
    pairs, relabelled = read_pairs(jobs["data"]), read_pairs(jobs["relabel"])
    assert task_info(jobs["relabel"]) == task_info(jobs["data"])
    assert (pairs["prompt_mask"] == 0).any() and (pairs["chosen_mask"] == 0).any()  # really padded

    monkeypatch.setattr(AutoModel, "from_pretrained", _no_download)
    judge = load_judge(jobs["judge"])
    p_first = judge.prob_first(pairs["prompt"], pairs["chosen"], pairs["rejected"], pairs["prompt_mask"],
                               pairs["chosen_mask"], pairs["rejected_mask"])
    accuracy = [v for s, n, v in jobs["judge"].read_metrics() if n == "eval/judge_accuracy" and s == 3]
    n_val = 2  # the stage holds out the last tenth
    assert accuracy == [float(np.mean(np.where(p_first[-n_val:] == 0.5, 0.5, p_first[-n_val:] > 0.5)))]

    keep = p_first >= 0.5
    assert keep[0::2].tolist() == (~keep[1::2]).tolist()  # one of each mirrored pair flips
    for side, other in (("chosen", "rejected"), ("rejected", "chosen")):
        for suffix in ("", "_mask"):  # each response keeps its own mask
            expected = np.where(keep[:, None], pairs[side + suffix], pairs[other + suffix])
            assert np.array_equal(relabelled[side + suffix], expected)
    assert np.array_equal(relabelled["prompt_mask"], pairs["prompt_mask"])
    for name in ("chosen", "chosen_mask", "rejected", "rejected_mask"):  # mirrored pairs agree once relabelled
        assert np.array_equal(relabelled[name][0::2], relabelled[name][1::2])
