"""One evaluation against the training time between two evaluations (default cadence, eval_every 25).

An evaluation is the paper's protocol as specc runs it for every align stage: exact
per-token KL to the reference on 256 prompts (one sample each), win rate against the
baseline on 512 held-out prompts (golden judge, symmetrised), the policy-as-classifier
accuracies and winner/loser log-probs. The setting is bench_train.py's (tiny GPT-2 d=64,
L=2, 8+16 tokens, batch 32, fp32, one thread unless --threads). Each round runs one
evaluation, then 25 training steps; the figure is the median over rounds of
eval time / time of the 25 steps, for an offline and an online IPO run. Target: <= 20%.

    python benchmarks/bench_eval.py [--threads 1] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from bench_train import EVERY, Specc, build_workspace  # benchmarks/ is on sys.path when run as a script

TARGET = 0.20
PARTS = {"sample": "sampling (KL 256 + win 512 responses, keeping the policy's logits / log-probs)",
         "response_logits": "forwards: KL reference",
         "response_logprobs": "forwards: classification (reference on 256 self-pairs, policy on 256 D_golden pairs)",
         "judges": "judges (golden oracle; online: also the proxy reward model)"}



def instrument(evaluator) -> dict[str, float]:
    """Time the evaluation's parts by wrapping the evaluator's methods (this instance only)."""
    spent = defaultdict(float)

    def timed(fn, part):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[part] += time.perf_counter() - start
        return wrapper

    # the evaluator's own helpers: sampling, KL logits, classification log-probs
    for method, part in (("_sample", "sample"), ("_logits", "response_logits"), ("_logps", "response_logprobs"),
                         ("_pair_logps", "response_logprobs")):
        setattr(evaluator, method, timed(getattr(evaluator, method), part))
    for judge in {id(j): j for j in (evaluator.judge, evaluator.proxy) if j is not None}.values():
        judge.prob_first = timed(judge.prob_first, "judges")
        if hasattr(judge, "reward"):
            judge.reward = timed(judge.reward, "judges")
    return spent


def measure(contestant: Specc, rounds: int) -> dict:
    evaluator, step = contestant.learner.eval_fn, contestant.step
    spent = instrument(evaluator)
    evaluator(0)
    for _ in range(3):
        step()
    evals, trains, parts = [], [], defaultdict(list)
    for _ in range(rounds):
        spent.clear()
        start = time.perf_counter()
        evaluator(contestant.next)
        evals.append(time.perf_counter() - start)
        for part, seconds in spent.items():
            parts[part].append(seconds)
        start = time.perf_counter()
        for _ in range(EVERY):
            step()
        trains.append(time.perf_counter() - start)
    share = statistics.median(e / t for e, t in zip(evals, trains))
    return {"eval_s": statistics.median(evals), "train_s": statistics.median(trains), "share": share,
            "parts": {p: statistics.median(v) for p, v in parts.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)  # as run_job sets it for specc's jobs
    with tempfile.TemporaryDirectory(prefix="specc-bench-eval-") as tmp:
        jobs = build_workspace(Path(tmp), args.threads)
        found = {kind: measure(Specc(f"specc {kind}", jobs[kind]), args.rounds) for kind in ("offline", "online")}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {args.threads} thread(s), load {load:.1f}; median of {args.rounds} rounds")
    print(f"{'run':8s} {'one eval':>9s} {f'{EVERY} steps':>9s} {'share':>7s}  target   verdict   (eval parts)")
    for kind, r in found.items():
        parts = ", ".join(f"{PARTS[p]} {1e3 * s:.0f} ms" for p, s in r["parts"].items())
        print(f"{kind:8s} {r['eval_s']:8.2f}s {r['train_s']:8.2f}s {100 * r['share']:6.1f}%  <= {100 * TARGET:.0f}%   "
              f"{'met' if r['share'] <= TARGET else 'MISSED'}   ({parts})")
    for kind, r in found.items():
        print("RESULT " + json.dumps({"name": f"eval vs {EVERY} {kind} steps", "value": 100 * r["share"], "unit": "%",
                                      "target": 100 * TARGET, "met": r["share"] <= TARGET, "at_most": True,
                                      "note": f"eval {r['eval_s']:.2f} s / {EVERY} steps {r['train_s']:.2f} s"}))
    return 0 if all(r["share"] <= TARGET for r in found.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
