"""The full profile's single-GPU work at its real shapes, on one GPU, in a few minutes.

A Pythia-1B-shaped policy (GPTNeoX built from config, random weights, nothing downloaded) at
the full profile's widths (prompts 1,024 tokens left-padded, responses 128, vocabulary 50,304)
through specc's own code paths: SFT steps (batch 128 in micro-batches of 8, checkpointed),
offline and online IPO steps (batch 32, micro-batches of 8, a bf16 reference, a 1B pairwise
judge), and one evaluation-sized sampling and KL pass. For each phase it prints tokens/s, MFU
(6N, or 8N checkpointed, FLOPs per trained token against the H100's 989 TFLOP/s bf16 peak) and
torch.cuda.max_memory_allocated against the memory planner's estimate.

    python benchmarks/gpu_full_profile.py [--steps 3]

Without a GPU it says so and measures nothing.
"""

from __future__ import annotations

import argparse
import time

import torch

PROMPT, RESPONSE, VOCAB = 1024, 128, 50304
PEAK_FLOPS = 989e12


def neox_1b(dtype=torch.float32, head=False):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, GPTNeoXModel
    config = GPTNeoXConfig(vocab_size=VOCAB, hidden_size=2048, num_hidden_layers=16, num_attention_heads=8,
                           intermediate_size=8192, max_position_embeddings=2048, eos_token_id=0, pad_token_id=1)
    with torch.device("cuda"):
        return (GPTNeoXModel if head else GPTNeoXForCausalLM)(config).to(dtype)


def padded_prompts(rows: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.randint(PROMPT // 2, PROMPT + 1, (rows,), generator=generator)
    tokens = torch.randint(2, VOCAB, (rows, PROMPT), generator=generator)
    mask = (torch.arange(PROMPT)[None] >= PROMPT - lengths[:, None]).long()
    return tokens.masked_fill(mask == 0, 1).cuda(), mask.cuda()


def pairs(rows: int, generator) -> dict:
    prompt, prompt_mask = padded_prompts(rows, generator)
    out = {"prompt": prompt, "prompt_mask": prompt_mask}
    for side in ("chosen", "rejected"):
        out[side] = torch.randint(2, VOCAB, (rows, RESPONSE), generator=generator).cuda()
        out[side + "_mask"] = torch.ones_like(out[side])
    return out


def report(name: str, tokens: float, seconds: float, flops_per_token: float, planned_gb: float) -> None:
    peak = torch.cuda.max_memory_allocated() / 1e9
    mfu = tokens * flops_per_token / seconds / PEAK_FLOPS
    print(f"{name:10s} {tokens / seconds:10.0f} tokens/s  MFU {mfu:5.1%}  peak {peak:6.1f} GB  "
          f"planned {planned_gb:6.1f} GB  ({peak / planned_gb - 1:+.0%})", flush=True)
    torch.cuda.reset_peak_memory_stats()


def planned(rows: int, tokens: int, logit_positions: int, frozen_bytes: float = 0.0) -> float:
    """The planner's peak for the 1B policy's state, frozen models and one micro-batch (GB)."""
    from specc.compiler.memory import HUB_SHAPES, _activation_bytes
    shape = HUB_SHAPES["EleutherAI/pythia-1b"]
    state = shape.params * (4 + 2 + 4 + 8)
    train = {"grad_checkpointing": True}
    return (state + frozen_bytes + _activation_bytes(shape, rows, tokens, logit_positions, train, gpu=True)) / 1e9


def main(steps: int) -> None:
    from specc.runtime.batch import pair_logps
    from specc.runtime.device import autocast
    from specc.runtime.loop import make_optimizer
    from specc.runtime.losses import preference_loss
    from specc.runtime.microbatch import accumulated_update, enable_checkpointing, share, trimmed
    from specc.runtime.models import response_logprobs, sample

    device, generator = torch.device("cuda"), torch.Generator().manual_seed(0)
    policy = neox_1b()
    enable_checkpointing(policy.train())
    train = {"lr": 1e-5, "weight_decay": 0.0, "warmup": 0, "grad_clip": 1.0, "micro_batch_size": 8}
    optimizer, scheduler = make_optimizer(policy, train)
    n = sum(p.numel() for p in policy.parameters())
    torch.cuda.reset_peak_memory_stats()

    sft = pairs(128, generator)
    start = time.perf_counter()
    for _ in range(steps):
        def sft_loss(part):
            rows = trimmed({k: v[part] for k, v in sft.items() if k.startswith(("prompt", "chosen"))})
            with autocast(device):
                logps = response_logprobs(policy, rows["prompt"], rows["chosen"], rows["chosen_mask"],
                                          rows["prompt_mask"])
            return -logps.sum() / (128 * RESPONSE), None
        accumulated_update(policy, optimizer, scheduler, {**train, "batch_size": 128}, 128, sft_loss)
    torch.cuda.synchronize()
    report("sft", steps * 128 * (PROMPT + RESPONSE), time.perf_counter() - start, 8 * n,
           planned(8, PROMPT + RESPONSE, 8 * RESPONSE))

    reference = neox_1b(torch.bfloat16).requires_grad_(False)
    batch = pairs(32, generator)
    start = time.perf_counter()
    for _ in range(steps):
        with torch.no_grad():
            ref = pair_logps(reference, batch, "sum", device)

        def align_loss(part):
            chosen, rejected = pair_logps(policy, trimmed({k: v[part] for k, v in batch.items()}), "sum", device)
            loss, _ = preference_loss("ipo", 0.1, chosen, rejected, ref[0][part], ref[1][part])
            return loss * share(part, 32), None
        accumulated_update(policy, optimizer, scheduler, {**train, "batch_size": 32}, 32, align_loss)
    torch.cuda.synchronize()
    report("offline", steps * 32 * 2 * (PROMPT + RESPONSE), time.perf_counter() - start, 8 * n,
           planned(8, 2 * (PROMPT + RESPONSE), 16 * RESPONSE, n * 2))

    prompts, prompt_mask = padded_prompts(32, generator)
    start = time.perf_counter()
    with autocast(device):
        samples = sample(policy, prompts, RESPONSE, torch.Generator("cuda").manual_seed(1), prompt_mask=prompt_mask,
                         copies=2)
    torch.cuda.synchronize()
    report("sampling", 64 * RESPONSE, time.perf_counter() - start, 2 * n, planned(0, 0, 0, n * 2))
    del samples

    kl_prompts, kl_mask = padded_prompts(256, generator)
    start = time.perf_counter()
    with torch.no_grad(), autocast(device):
        kl_samples, _ = sample(policy, kl_prompts, RESPONSE, torch.Generator("cuda").manual_seed(2),
                               prompt_mask=kl_mask, keep="logprobs")
        response_logprobs(reference, kl_prompts, kl_samples, None, kl_mask)
    torch.cuda.synchronize()
    report("eval-KL", 256 * (PROMPT + 2 * RESPONSE), time.perf_counter() - start, 2 * n, planned(0, 0, 0, n * 2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no GPU: nothing measured (this benchmark needs one; see benchmarks/README.md)")
    else:
        main(args.steps)
