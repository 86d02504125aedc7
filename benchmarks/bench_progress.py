"""What watching a run costs a training step: progress.json (always on), and the TensorBoard sink.

The setting is bench_train.py's offline IPO run (tiny GPT-2 d=64, L=2, 8+16 tokens, batch 32,
fp32, one thread unless --threads). Three learners built from the same job take turns, a block
of steps each per round, so a change in the machine's load hits all of them alike:

  none         the align step alone (`step_fn`), as `run_loop` calls it
  progress     the step, then `Progress.step` as `run_loop` calls it (a write at most once a second)
  tensorboard  the same with a TensorBoard sink (`report_to: [tensorboard]`, every metric every step)

Figures: the median over rounds of each round's time ratio against `none` (target for progress:
<= 1.01, i.e. no measurable cost), and the cost of one `Progress.step` call on its own.

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

TARGET = 1.01


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
    def __init__(self, job: JobDir):
        self.name, self.inner = "none", Specc("none", job)

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
        contestants = [Bare(jobs["offline"]), Watched("progress", jobs["offline"], Path(tmp) / "w1", sinks=False),
                       Watched("tensorboard", jobs["offline"], Path(tmp) / "w2", sinks=True)]
        for contestant in contestants:  # warm-up
            for _ in range(3):
                contestant.step()
        times = {c.name: [] for c in contestants}
        for _ in range(args.rounds):
            for contestant in contestants:
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
    print(f"one training step: {step_ms:.1f} ms; one Progress.step call: {hook_us:.2f} us "
          f"({hook_us / 1e3 / step_ms:.5%} of a step)")
    for name in ("progress", "tensorboard"):
        target = f"<= {TARGET}x: {'met' if ratios[name] <= TARGET else 'MISSED'}" if name == "progress" else "no target"
        print(f"{name:12s} {ratios[name]:.3f}x the bare step  ({target})")
    print("RESULT " + json.dumps({"name": "progress.json: step time vs none", "value": ratios["progress"], "unit": "x",
                                  "target": TARGET, "met": ratios["progress"] <= TARGET, "at_most": True,
                                  "note": f"hook {hook_us:.2f} us vs step {step_ms:.1f} ms"}))
    print("RESULT " + json.dumps({"name": "tensorboard sink: step time vs none", "value": ratios["tensorboard"],
                                  "unit": "x", "target": None, "met": True}))
    return 0 if ratios["progress"] <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
