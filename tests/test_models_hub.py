"""Tokenization into arrays and model loading, with a tiny tokenizer and GPT-2 built here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from specc.runtime import models_hub
from specc.runtime.data.loaders import PreferenceRecord
from specc.runtime.data.tokenize import encode_preferences
from specc.runtime.models_hub import load_causal_lm

WORDS = "hello world how are you fine thanks a b c d e f g".split()
SPECIALS = ["<pad>", "<unk>", "<eos>", "<bos>"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def make_tokenizer(*, pad: bool = True, bos: bool = False) -> PreTrainedTokenizerFast:
    """Word-level tokenizer: ids 0-3 are SPECIALS, then WORDS in order (hello=4, world=5, ...)."""
    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if bos:  # Llama-style: the tokenizer itself prepends BOS when special tokens are on.
        core.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="<eos>",
                                   pad_token="<pad>" if pad else None, bos_token="<bos>" if bos else None)


def ids(text: str) -> list[int]:
    return [(SPECIALS + WORDS).index(w) for w in text.split()]


def record(prompt: str, chosen: str, rejected: str) -> PreferenceRecord:
    return PreferenceRecord(prompt, chosen, rejected, source="test", meta={})


PAD, EOS, BOS = 0, 2, 3


# ---------------------------------------------------------------- encode_preferences
def test_padding_sides_masks_and_eos():
    records = [record("hello world", "fine", "a b"), record("how are you", "fine thanks", "c")]
    out = encode_preferences(records, make_tokenizer(), max_prompt_tokens=4, max_response_tokens=4)
    assert {k: (v.shape, v.dtype) for k, v in out.items()} == {
        k: ((2, 4), np.int64) for k in ("prompt_ids", "prompt_mask", "chosen_ids", "chosen_mask",
                                        "rejected_ids", "rejected_mask")}
    # Prompts LEFT-padded, responses RIGHT-padded and ended by EOS.
    assert out["prompt_ids"].tolist() == [[PAD, PAD] + ids("hello world"), [PAD] + ids("how are you")]
    assert out["prompt_mask"].tolist() == [[0, 0, 1, 1], [0, 1, 1, 1]]
    assert out["chosen_ids"].tolist() == [ids("fine") + [EOS, PAD, PAD], ids("fine thanks") + [EOS, PAD]]
    assert out["chosen_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 0]]
    assert out["rejected_ids"].tolist() == [ids("a b") + [EOS, PAD], ids("c") + [EOS, PAD, PAD]]
    assert out["rejected_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]


def test_truncation_keeps_prompt_end_and_cuts_response_without_eos():
    records = [record("a b c d e f", "a b c d e", "a b c")]
    out = encode_preferences(records, make_tokenizer(), max_prompt_tokens=3, max_response_tokens=4)
    assert out["prompt_ids"].tolist() == [ids("d e f")]
    assert out["prompt_mask"].tolist() == [[1, 1, 1]]
    assert out["chosen_ids"].tolist() == [ids("a b c d")]  # cut: no EOS, the reply did not end here
    assert out["rejected_ids"].tolist() == [ids("a b c") + [EOS]]  # exactly fits with its EOS
    assert out["rejected_mask"].tolist() == [[1, 1, 1, 1]]


def test_no_pad_token_pads_with_eos_but_masks_real_eos():
    tokenizer = make_tokenizer(pad=False)
    assert tokenizer.pad_token_id is None
    out = encode_preferences([record("hello", "fine", "a")], tokenizer, max_prompt_tokens=2, max_response_tokens=3)
    assert out["prompt_ids"].tolist() == [[EOS] + ids("hello")]
    assert out["chosen_ids"].tolist() == [ids("fine") + [EOS, EOS]]
    assert out["chosen_mask"].tolist() == [[1, 1, 0]]


def test_bos_survives_left_truncation():
    out = encode_preferences([record("a b c d", "e", "f")], make_tokenizer(bos=True),
                             max_prompt_tokens=3, max_response_tokens=2)
    assert out["prompt_ids"].tolist() == [[BOS] + ids("c d")]
    assert out["chosen_ids"].tolist() == [ids("e") + [EOS]]  # responses get no BOS


def test_empty_input_and_bad_limits():
    out = encode_preferences([], make_tokenizer(), max_prompt_tokens=5, max_response_tokens=2)
    assert out["prompt_ids"].shape == (0, 5) and out["rejected_mask"].shape == (0, 2)
    with pytest.raises(ValueError, match="max_prompt_tokens and max_response_tokens must be >= 1"):
        encode_preferences([], make_tokenizer(), max_prompt_tokens=0, max_response_tokens=2)


# ---------------------------------------------------------------- load_causal_lm
def save_tiny_lm(path, *, pad: bool = True):
    tokenizer = make_tokenizer(pad=pad)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=16, n_layer=1, n_head=2,
                        eos_token_id=EOS, bos_token_id=EOS)
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return model, tokenizer


def test_reloaded_model_matches_original(tmp_path):
    original, _ = save_tiny_lm(tmp_path / "lm")
    model, tokenizer = load_causal_lm(str(tmp_path / "lm"))
    assert isinstance(model, GPT2LMHeadModel) and not model.training
    batch = torch.tensor([ids("hello world how are you")])
    assert tokenizer("hello world how are you", add_special_tokens=False)["input_ids"] == batch[0].tolist()
    with torch.no_grad():
        assert torch.equal(model(batch).logits, original(batch).logits)
    assert next(model.parameters()).dtype == torch.float32


def test_dtype_is_applied(tmp_path):
    save_tiny_lm(tmp_path / "lm")
    model, _ = load_causal_lm(str(tmp_path / "lm"), dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    with pytest.raises(ValueError, match=r"unknown dtype 'float8'"):
        load_causal_lm(str(tmp_path / "lm"), dtype="float8")


def test_local_directory_never_asks_the_network(tmp_path, monkeypatch):
    save_tiny_lm(tmp_path / "lm")
    seen = []
    real = AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.append(kwargs.get("local_files_only"))
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    load_causal_lm(str(tmp_path / "lm"), revision="main")
    assert seen == [True]


def test_missing_pad_token_becomes_eos(tmp_path):
    save_tiny_lm(tmp_path / "lm", pad=False)
    _, tokenizer = load_causal_lm(str(tmp_path / "lm"))
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == EOS


def test_missing_local_path_is_readable(tmp_path):
    with pytest.raises(ValueError, match=r"nope: no such model directory"):
        load_causal_lm(str(tmp_path / "nope"))
    assert models_hub.resolve_dtype("bf16") is torch.bfloat16


def test_a_context_longer_than_the_models_positions_is_a_clear_error(tmp_path):
    from specc.runtime.models import build_policy

    save_tiny_lm(tmp_path / "lm")  # 32 positions
    config = {"family": "hub", "name": str(tmp_path / "lm"), "dtype": "float32"}
    assert build_policy(config, vocab=8, max_len=32, seed=0) is not None
    with pytest.raises(ValueError, match=r"prompt \+ response is 48 tokens, but the model has 32 positions"):
        build_policy(config, vocab=8, max_len=48, seed=0)
