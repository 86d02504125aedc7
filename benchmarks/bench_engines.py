"""Sampling throughput of the two engines on the same batch: generated tokens per second.

Both engines sample the same prompts with the same policy (random weights from config):
`hf` is specc's own KV-cache loop, `vllm` a colocated in-process vLLM engine with the
learner's weights pushed to it (runtime.engines). Each round samples `rows` responses of
`new` tokens (no early stop: every response runs its full length in both engines); the
engines take turns, after one warm-up round each, and the figure is each one's median round.

On the CPU the policy is an ~82M-parameter GPT-2 (d=768, 6 layers, 12 heads, the GPT-2
vocabulary), fp32; on a GPU a Pythia-1B-shaped GPT-NeoX (d=2048, 16 layers, 8 heads),
bf16, the shape the online runs of the paper's scale sample with. No target: the figure is
the vllm/hf ratio on the machine at hand.

    python benchmarks/bench_engines.py [--threads 1] [--rows 64] [--prompt 32] [--new 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time

import torch

from specc.runtime.batch import Responder
from specc.runtime.device import autocast
from specc.runtime.engines import Draw, open_engine


def policy(device: torch.device):
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    if device.type == "cuda":  # Pythia-1B's shape
        config = GPTNeoXConfig(vocab_size=50304, hidden_size=2048, num_hidden_layers=16, num_attention_heads=8,
                               intermediate_size=8192, max_position_embeddings=2048, rotary_pct=0.25)
        return GPTNeoXForCausalLM(config).to(device, torch.bfloat16).eval(), "Pythia-1B-shaped GPT-NeoX, bf16"
    config = GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=6, n_head=12,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_pytorch_tanh",
                        bos_token_id=None, eos_token_id=None, pad_token_id=None)
    return GPT2LMHeadModel(config).eval(), "GPT-2 d=768 L=6 H=12, fp32"


def one_round(engine, model, prompts, r: int, device: torch.device) -> float:
    engine.sync(model, r)
    start = time.perf_counter()
    with autocast(device):
        engine.sample(model, prompts, None, Draw(0, "bench", r))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def take_turns(engines: dict, model, prompts, count: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds per round of each engine, the engines alternating (a shared machine's load
    then weighs on both alike), after one warm-up round each (which starts the vllm engine)."""
    for engine in engines.values():
        one_round(engine, model, prompts, 0, device)
    times = {name: [] for name in engines}
    for r in range(1, count + 1):
        for name, engine in engines.items():
            times[name].append(one_round(engine, model, prompts, r, device))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, shape = policy(device)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    prompts = torch.randint(0, model.config.vocab_size, (args.rows, args.prompt),
                            generator=torch.Generator().manual_seed(1)).to(device)
    respond = Responder(args.new)
    names = ["hf"] + (["vllm"] if importlib.util.find_spec("vllm") else [])
    engines = {name: open_engine(name, respond, device, args.prompt) for name in names}
    times = take_turns(engines, model, prompts, args.rounds, device)
    tokens = args.rows * args.new
    rate = {name: tokens / statistics.median(t) for name, t in times.items()}
    best = {name: tokens / min(t) for name, t in times.items()}  # the least disturbed round, on a shared machine
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {device.type}, {args.threads} thread(s), load {load:.1f}; {shape}, "
          f"{params:.0f}M parameters; {args.rows} rows x ({args.prompt} prompt + {args.new} new) tokens; "
          f"median of {args.rounds} rounds")
    for name, t in times.items():
        print(f"{name:5s} {rate[name]:9.0f} tokens/s (best round {best[name]:.0f})   "
              f"rounds: {', '.join(f'{s:.2f}s' for s in t)}")
    if "vllm" not in rate:
        print("vllm is not installed: only the hf engine measured")
        print("RESULT " + json.dumps({"name": f"hf engine tokens/s ({device.type})", "value": rate["hf"],
                                      "unit": "", "target": None, "met": True, "note": "vllm not installed"}))
        return 0
    ratio = rate["vllm"] / rate["hf"]
    print(f"vllm / hf: {ratio:.2f}x (medians), {best['vllm'] / best['hf']:.2f}x (best rounds)")
    print("RESULT " + json.dumps({"name": f"vllm vs hf sampling tokens/s ({device.type})", "value": ratio, "unit": "x",
                                  "target": None, "met": True,
                                  "note": f"hf {rate['hf']:.0f} tok/s, vllm {rate['vllm']:.0f} tok/s, {params:.0f}M; "
                                          f"best rounds {best['vllm'] / best['hf']:.2f}x"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
