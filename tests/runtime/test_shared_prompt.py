"""The training forward computes each prompt once for its two responses, sampling can hand
back the logits it drew from, and judges score both sides of a pair in one forward. Each
shortcut must give what the plain computation gives (up to float rounding)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from specc.runtime.models import (ROWS_PER_FORWARD, build_policy, response_logits, response_logprobs, sample,
                                  shared_prompt_logprobs)
from specc.runtime.preference_models import PreferenceModel

VOCAB, PROMPT, RESPONSE = 32, 6, 9


def tiny_gpt2():
    return build_policy({"family": "tiny", "size": "S"}, VOCAB, PROMPT + RESPONSE, seed=0)


def tiny_llama():
    """Not a GPT-2: takes the transformers path (a repeated KV cache object) instead of specc's own forward."""
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))


def batch(prompts: int, copies: int = 2, response: int = RESPONSE, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randint(0, VOCAB, (prompts, PROMPT), generator=generator),
            torch.randint(0, VOCAB, (copies * prompts, response), generator=generator))


def left_padding(prompts: int) -> torch.Tensor:
    mask = torch.ones(prompts, PROMPT, dtype=torch.long)
    for row in range(prompts):
        mask[row, : row % PROMPT] = 0
    return mask


def gradients(model, value: torch.Tensor) -> list[torch.Tensor]:
    return torch.autograd.grad((value.sum(-1) ** 2).mean(), list(model.parameters()))


@pytest.mark.parametrize("make_model", [tiny_gpt2, tiny_llama])
@pytest.mark.parametrize("padded", [False, True])
def test_shared_prompt_equals_the_repeated_prompt(make_model, padded):
    model = make_model()
    prompts, responses = batch(8)
    prompt_mask = left_padding(8) if padded else None
    response_mask = torch.ones_like(responses)
    response_mask[::3, -2:] = 0  # some right padding too
    shared = shared_prompt_logprobs(model, prompts, responses, response_mask, prompt_mask)
    plain = response_logprobs(model, prompts.repeat(2, 1), responses, response_mask,
                              None if prompt_mask is None else prompt_mask.repeat(2, 1))
    assert shared.shape == plain.shape == responses.shape
    torch.testing.assert_close(shared, plain, atol=2e-5, rtol=1e-5)
    for got, expected in zip(gradients(model, shared), gradients(model, plain)):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_shared_prompt_with_three_copies_and_one_token_responses():
    model = tiny_gpt2()
    for copies, length in ((3, RESPONSE), (2, 1)):
        prompts, responses = batch(5, copies, length)
        torch.testing.assert_close(shared_prompt_logprobs(model, prompts, responses),
                                   response_logprobs(model, prompts.repeat(copies, 1), responses), atol=2e-5, rtol=1e-5)


def test_left_padding_does_not_change_shared_prompt_log_probs():
    model = tiny_gpt2()
    prompts, responses = batch(1)
    alone = shared_prompt_logprobs(model, prompts, responses)
    wider = torch.cat([torch.zeros(1, 3, dtype=torch.long), prompts], 1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones_like(prompts)], 1)
    torch.testing.assert_close(shared_prompt_logprobs(model, wider, responses, prompt_mask=mask), alone,
                               atol=2e-5, rtol=1e-5)


def test_gradient_free_chunks_are_the_same_bits_as_one_graded_forward():
    """A reference table precomputed in chunks must equal the reference computed inside a step
    (the exact replay of an online run depends on it)."""
    model = tiny_gpt2()
    prompts, responses = batch(ROWS_PER_FORWARD + 5)
    graded = shared_prompt_logprobs(model, prompts, responses)
    with torch.no_grad():
        chunked = shared_prompt_logprobs(model, prompts, responses)
    assert torch.equal(graded.detach(), chunked)


@pytest.mark.parametrize("padded", [False, True])
def test_sampling_keeps_the_logits_and_log_probs_it_drew_from(padded):
    model = tiny_gpt2()
    prompts, _ = batch(6)
    prompt_mask = left_padding(6) if padded else None
    draw = lambda keep: sample(model, prompts, RESPONSE, torch.Generator().manual_seed(1),  # noqa: E731
                               prompt_mask=prompt_mask, keep=keep)
    (tokens, logits), (same_tokens, logps) = draw("logits"), draw("logprobs")
    assert torch.equal(tokens, draw(None)) and torch.equal(tokens, same_tokens)
    with torch.no_grad():
        torch.testing.assert_close(logits, response_logits(model, prompts, tokens, prompt_mask), atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(logps, response_logprobs(model, prompts, tokens, prompt_mask=prompt_mask),
                                   atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("form", ["pointwise", "pairwise"])
def test_judging_both_sides_in_one_forward(form):
    torch.manual_seed(0)
    judge = PreferenceModel(form, "S", VOCAB, 2 * RESPONSE + PROMPT + 1).eval()
    prompts, responses = batch(7)
    first, second = responses.chunk(2)
    p = judge.prob_first(prompts, first, second)
    with torch.no_grad():
        if form == "pointwise":
            reward = lambda y: judge._score(torch.cat([prompts, y], 1))  # noqa: E731
            expected = torch.sigmoid((reward(first) - reward(second)).double())
        else:
            logit = lambda a, b: judge._score(torch.cat([prompts, a, torch.full((7, 1), judge.sep), b], 1))  # noqa: E731
            expected = (torch.sigmoid(logit(first, second).double()) + 1 - torch.sigmoid(logit(second, first).double())) / 2
    np.testing.assert_allclose(p, expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(p + judge.prob_first(prompts, second, first), 1.0, atol=1e-12)


@pytest.mark.parametrize("padded", [False, True])
def test_copies_of_a_prompt_sample_as_the_repeated_prompt(padded):
    """The online sampler decodes both responses of every prompt as one batch, the prompt's
    forward shared: the same draws as sampling the prompts written out twice (decoding in
    several chunks of rows included)."""
    model = tiny_gpt2()
    prompts, _ = batch(300)
    prompt_mask = left_padding(300) if padded else None
    shared = sample(model, prompts, RESPONSE, torch.Generator().manual_seed(2), prompt_mask=prompt_mask, copies=2)
    repeated = sample(model, prompts.repeat(2, 1), RESPONSE, torch.Generator().manual_seed(2),
                      prompt_mask=None if prompt_mask is None else prompt_mask.repeat(2, 1))
    assert shared.shape == (600, RESPONSE)
    assert torch.equal(shared, repeated)
    assert not torch.equal(shared[:300], shared[300:])  # two draws per prompt, not one draw twice


def test_pointwise_judge_computes_each_prompt_once():
    """Both rewards of a pair from one forward in which the prompt is computed once: the same
    rewards as scoring each (prompt, response) alone, with gradients."""
    torch.manual_seed(0)
    judge = PreferenceModel("pointwise", "S", VOCAB, PROMPT + RESPONSE)
    prompts, responses = batch(5)
    first, second = responses.chunk(2)
    logit = judge.logit(prompts, first, second)
    alone = judge._score(torch.cat([prompts, first], 1)) - judge._score(torch.cat([prompts, second], 1))
    torch.testing.assert_close(logit, alone, atol=1e-5, rtol=1e-5)
    for got, expected in zip(torch.autograd.grad(logit.square().sum(), list(judge.parameters())),
                             torch.autograd.grad(alone.square().sum(), list(judge.parameters()))):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_token_draws_follow_the_distribution_and_never_pick_an_impossible_token():
    """Tokens are drawn by inverting the CDF: frequencies match softmax(logits / temperature),
    and a token of probability 0 is never drawn (not even by a uniform of exactly 0)."""
    from specc.runtime.models import _draw
    logits = torch.tensor([[0.0, float("-inf"), 1.0, 2.0, float("-inf")]]).repeat(20000, 1)
    for temperature in (1.0, 0.5):
        drawn = _draw(logits, temperature, torch.Generator().manual_seed(0)).squeeze(1)
        frequencies = torch.bincount(drawn, minlength=5).double() / len(drawn)
        expected = torch.softmax(logits[0].double() / temperature, dim=-1)
        assert frequencies[1] == 0 and frequencies[4] == 0
        torch.testing.assert_close(frequencies, expected, atol=0.015, rtol=0)
    first_impossible = torch.tensor([[float("-inf"), 0.0]]).repeat(10000, 1)
    assert (_draw(first_impossible, 1.0, torch.Generator().manual_seed(1)) == 1).all()
