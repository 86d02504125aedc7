"""The vllm engine against the hf engine on one small causal LM built from config: greedy
responses equal, sampled ones follow the policy's distribution, draws reproducible per
request, weights pushed by `sync`. One engine serves the whole module (it starts in ~10-60 s)."""

import math
import os

import pytest
import torch

from specc.runtime.batch import Responder
from specc.runtime.engines import Draw, open_engine
from specc.runtime.models import response_logprobs, tiny_config

from tests.engines.conftest import needs_vllm

pytestmark = needs_vllm

VOCAB, PROMPT, LENGTH = 32, 8, 16
CPU = torch.device("cpu")
LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
LAUNCHER_BEFORE = {key: os.environ.get(key) for key in LAUNCHER_VARIABLES}  # before any engine starts


def _model(seed: int, spread: float = 0.3):
    """Tiny M (head size 32); weights wider than GPT-2's init, so logits have clear leaders
    and greedy decoding is not decided by float rounding."""
    from transformers import GPT2LMHeadModel

    config = tiny_config("M", VOCAB, PROMPT + LENGTH)
    config.initializer_range = spread
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def engines():
    respond = Responder(LENGTH)
    return open_engine("hf", respond, CPU, PROMPT), open_engine("vllm", respond, CPU, PROMPT)


def _prompts(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n, PROMPT), generator=torch.Generator().manual_seed(seed))


def test_greedy_responses_equal_the_hf_engines(engines):
    hf, vllm = engines
    model, prompts = _model(0), _prompts(32)
    assert torch.equal(vllm.greedy(model, prompts)[0], hf.greedy(model, prompts)[0])


def test_sync_pushes_the_learners_new_weights(engines):
    hf, vllm = engines
    model, prompts = _model(0), _prompts(16)
    vllm.sync(model, 0)
    before = vllm.greedy(model, prompts)[0]
    model.load_state_dict(_model(1).state_dict())  # the learner's module changes in place
    assert torch.equal(vllm.greedy(model, prompts)[0], before)  # not pushed yet: the old weights
    vllm.sync(model, 1)
    assert torch.equal(vllm.greedy(model, prompts)[0], hf.greedy(model, prompts)[0])


def test_each_request_draws_from_its_own_seed(engines):
    _, vllm = engines
    model, prompts = _model(2, spread=0.05), _prompts(8)
    first = vllm.sample(model, prompts, None, Draw(0, "sample", 3), copies=2)[0]
    assert torch.equal(first, vllm.sample(model, prompts, None, Draw(0, "sample", 3), copies=2)[0])
    # a batch of other prompts around them changes nothing for these requests
    wider = vllm.sample(model, torch.cat([prompts, _prompts(8, seed=1)]), None, Draw(0, "sample", 3))[0]
    assert torch.equal(wider[:8], first[:8])
    assert not torch.equal(first, vllm.sample(model, prompts, None, Draw(0, "sample", 4), copies=2)[0])
    assert not torch.equal(first[:8], first[8:])  # the two copies of a prompt are two draws


def test_samples_follow_the_policys_distribution(engines):
    """First tokens: chi-square against the learner's exact probabilities. Whole responses:
    the learner's mean log-prob of vllm's samples against hf's (two-sample z)."""
    hf, vllm = engines
    model, copies = _model(3, spread=0.05), 400
    prompts = _prompts(4, seed=5)
    drawn = {name: engine.sample(model, prompts, None, Draw(0, name, 0), copies=copies)[0]
             for name, engine in (("hf", hf), ("vllm", vllm))}
    with torch.no_grad():
        first = torch.softmax(model(prompts).logits[:, -1].double(), -1)  # [4, V]
    tokens = drawn["vllm"][:, 0].view(copies, len(prompts))
    chi2, cells = 0.0, 0
    for p in range(len(prompts)):
        observed = torch.bincount(tokens[:, p], minlength=VOCAB).double()
        expected = first[p] * copies
        chi2 += ((observed - expected) ** 2 / expected).sum().item()
        cells += VOCAB - 1
    assert chi2 < cells + 6 * math.sqrt(2 * cells), (chi2, cells)
    with torch.no_grad():
        logps = {name: response_logprobs(model, prompts.repeat(copies, 1), tokens).sum(-1).double()
                 for name, tokens in drawn.items()}
    diff = logps["vllm"].mean() - logps["hf"].mean()
    se = math.sqrt(logps["vllm"].var() / len(logps["vllm"]) + logps["hf"].var() / len(logps["hf"]))
    assert abs(diff / se) < 4, (diff, se)
    assert not torch.equal(drawn["vllm"], drawn["hf"])  # two engines, two sets of draws


def test_eos_ends_a_response_and_is_kept():
    from specc.runtime.engines.vllm import VllmEngine

    engine = VllmEngine.shared(Responder(LENGTH, eos_id=5, pad_id=0), CPU, PROMPT)
    padded = engine._padded([7, 9, 5])
    assert padded == [7, 9, 5] + [0] * (LENGTH - 3)
    assert engine._padded([7, 9]) == [7, 9, 5] + [0] * (LENGTH - 3)  # a stop not echoed back


def test_a_head_size_vllms_cpu_attention_lacks_is_refused_up_front():
    from specc.runtime.engines.vllm import check_supported
    from specc.runtime.models import build_policy

    with pytest.raises(ValueError, match="heads have 16 dimensions.*tiny sizes M and L"):
        check_supported(build_policy({"family": "tiny", "size": "S"}, VOCAB, 24, 0), CPU)


def _left_padded(n: int):
    """Prompts of 3 to 8 real tokens, left-padded with 0 (real data's layout)."""
    prompts, mask = _prompts(n, seed=7), torch.ones(n, PROMPT, dtype=torch.long)
    for row in range(n):
        mask[row, : row % 6] = 0
    return prompts * mask, mask


def test_left_padded_prompts_continue_as_in_the_hf_engine(engines):
    hf, vllm = engines
    model = _model(0)
    prompts, mask = _left_padded(12)
    assert torch.equal(vllm.greedy(model, prompts, mask)[0], hf.greedy(model, prompts, mask)[0])


def test_sampled_responses_stop_at_eos_and_are_masked_after_it():
    from specc.runtime.engines.vllm import VllmEngine

    eos, pad = 5, 0
    engine = VllmEngine.shared(Responder(LENGTH, eos_id=eos, pad_id=pad), CPU, PROMPT)
    prompts, mask = _left_padded(32)
    responses, response_mask = engine.sample(_model(4, spread=0.05), prompts, mask, Draw(0, "eos", 0), copies=2)
    assert responses.shape == (64, LENGTH) and response_mask.shape == (64, LENGTH)
    stopped = 0
    for tokens, kept in zip(responses.tolist(), response_mask.tolist()):
        length = sum(kept)
        assert kept == [1] * length + [0] * (LENGTH - length)
        if eos in tokens:
            stopped += 1
            assert tokens.index(eos) == length - 1 and tokens[length:] == [pad] * (LENGTH - length)
        else:
            assert length == LENGTH
    assert stopped > 10  # ~1 - (31/32)^16 = 40% of responses draw the EOS somewhere


def test_a_started_engine_leaves_no_launcher_variables_behind(engines):
    """vLLM's CPU platform sets torch.distributed's launcher variables in the process; a SLURM
    job of several ranks submitted later from the same process would inherit them."""
    hf, vllm = engines
    vllm.greedy(_model(0), _prompts(4))  # the engine has started by now
    assert {key: os.environ.get(key) for key in LAUNCHER_VARIABLES} == LAUNCHER_BEFORE
