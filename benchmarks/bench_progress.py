"""What watching a run costs a training step: progress.json (always on), and the TensorBoard sink.

The setting is bench_train.py's offline IPO run (tiny GPT-2 d=64, L=2, 8+16 tokens, batch 32,
fp32, one thread unless --threads). Four learners built from the same job take turns, a block
of steps each per round, in an order that rotates every round, so a change in the machine's
load hits all of them alike:

  none         the align step alone (`step_fn`), as `run_loop` calls it
  none again   the same, a second time: its ratio to `none` is the measurement's noise floor
  progress     the step, then `Progress.step` as `run_loop` calls it (a write at most once a second)
  tensorboard  the same with a TensorBoard sink (`report_to: [tensorboard]`, every metric every step)

Figures: one `Progress.step` call timed on its own, as a share of a step (target <= 0.1%); and
the median over rounds of each round's time ratio against `none` (progress: target <= 1.02,
read beside the noise floor).

    python benchmarks/bench_progress.py [--threads 1] [--rounds 6] [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench_train import Specc, build_workspace  # benchmarks/ is on sys.path when run as a script

from specc.runtime.jobdir import JobDir
from specc.runtime.progress import Progress
from specc.runtime.sinks import Guarded, TensorBoardSink

TARGET_SHARE, TARGET_RATIO = 0.1, 1.02  # % of a step; ratio to the bare step


class Watched:
    """A contestant whose steps are followed by a progress hook, as in run_loop."""

    def __init__(self, name: str, job: JobDir, folder: Path, sinks: bool):
        self.name, self.inner = name, Specc(name, job)
        folder.mkdir(parents=True)
        watched = JobDir(folder)
        shutil.copy(job.path / "job.json", folder / "job.json")  # the sink names the run from it
        sink = [Guarded(watched, "tensorboard", TensorBoardSink(watched, {"run_name": name}, 0))] if sinks else []
        self.progress = Progress(watched, steps=10**9, sinks=sink)

    def step(self) -> None:
        metrics = self.inner.learner.step_fn(self.inner.next)
        self.inner.next += 1
        self.progress.step(self.inner.next, metrics)


class Bare:
    def __init__(self, job: JobDir, name: str = "none"):
        self.name, self.inner = name, Specc(name, job)

    def step(self) -> None:
        self.inner.step()


def hook_cost_us(folder: Path, calls: int = 200_000) -> float:
    """One Progress.step call with a step's metrics (floats already, as the loop has them)."""
    folder.mkdir(parents=True)
    progress = Progress(JobDir(folder), steps=calls)
    metrics = {"train/loss": 0.5, "train/margin_mean": 0.1, "train/margin_std": 0.2, "train/logp_chosen": -5.0,
               "train/logp_rejected": -6.0}
    start = time.perf_counter()
    for step in range(calls):
        progress.step(step, metrics)
    return (time.perf_counter() - start) / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=40, help="steps per contestant per round")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    with tempfile.TemporaryDirectory(prefix="specc-bench-progress-") as tmp:
        jobs = build_workspace(Path(tmp), args.threads)
        contestants = [Bare(jobs["offline"]), Bare(jobs["offline"], "none again"), Watched("progress", jobs["offline"], Path(tmp) / "w1", sinks=False),
                       Watched("tensorboard", jobs["offline"], Path(tmp) / "w2", sinks=True)]
        for contestant in contestants:  # warm-up
            for _ in range(3):
                contestant.step()
        times = {c.name: [] for c in contestants}
        for round_ in range(args.rounds):
            for contestant in contestants[round_ % 4:] + contestants[:round_ % 4]:
                start = time.perf_counter()
                for _ in range(args.steps):
                    contestant.step()
                times[contestant.name].append(time.perf_counter() - start)
        hook_us = hook_cost_us(Path(tmp) / "hook")
    ratios = {name: statistics.median(t / n for t, n in zip(times[name], times["none"])) for name in times}
    step_ms = 1e3 * statistics.median(times["none"]) / args.steps
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {args.threads} thread(s), load {load:.1f}; median of {args.rounds} rounds "
          f"of {args.steps} steps each")
    share = 100 * hook_us / 1e3 / step_ms
    met = {"share": share <= TARGET_SHARE, "ratio": ratios["progress"] <= TARGET_RATIO}
    print(f"one training step: {step_ms:.1f} ms; one Progress.step call: {hook_us:.2f} us = {share:.4f}% of a step "
          f"(target <= {TARGET_SHARE}%: {'met' if met['share'] else 'MISSED'})")
    for name in ("none again", "progress", "tensorboard"):
        target = f"target <= {TARGET_RATIO}x: {'met' if met['ratio'] else 'MISSED'}" if name == "progress" else \
            ("the noise floor" if name == "none again" else "no target")
        print(f"{name:12s} {ratios[name]:.3f}x the bare step  ({target})")
    print("RESULT " + json.dumps({"name": "progress hook: share of a step", "value": share, "unit": "%",
                                  "target": TARGET_SHARE, "met": met["share"], "at_most": True,
                                  "note": f"{hook_us:.2f} us vs a {step_ms:.1f} ms step"}))
    print("RESULT " + json.dumps({"name": "progress.json: step time vs none", "value": ratios["progress"], "unit": "x",
                                  "target": TARGET_RATIO, "met": met["ratio"], "at_most": True,
                                  "note": f"noise floor (none vs none) {ratios['none again']:.3f}x"}))
    print("RESULT " + json.dumps({"name": "tensorboard sink: step time vs none", "value": ratios["tensorboard"],
                                  "unit": "x", "target": None, "met": True}))
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
