"""Compile a 10,000-job sweep on one core; target < 1 s.

The baseline, measured in the same run on the same core, is serialising the
same resolved configs as canonical JSON (what hashing them needs at least),
so the ratio says how much the compiler costs beyond touching every config once.

    python benchmarks/bench_compile.py [--repeat 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import tempfile
import time
from pathlib import Path

from specc.compiler.plan import compile_spec

TARGET_S = 1.0
SPEC = """\
name: bench-10k
defaults:
  model: {family: tiny, size: XS}
  train: {batch_size: 16, threads: 1}
stages:
  task:        {kind: dataset}
  golden:      {kind: oracle, data: task}
  golden_data: {kind: label, data: task, judge: golden}
  sft:         {kind: sft, data: golden_data, train: {steps: 100}}
  offline:
    kind: align
    init: sft
    sampler: {offline: golden_data}
    evaluate: {judge: golden, pairs: golden_data}
    sweep:                                  # 10 x 10 x 10 x 10 = 10,000 jobs
      lr: [1.0e-6, 3.0e-6, 1.0e-5, 3.0e-5, 1.0e-4, 3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2, 3.0e-2]
      beta: [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]
      steps: [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
      seeds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
max_jobs: 20000
"""


def one_core() -> str:
    """Pin this process to one core, so the figure is a one-core figure."""
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"core {core}"
    return "unpinned"


def timed(fn, repeat: int) -> tuple[float, float, object]:
    """Median wall and CPU seconds of `repeat` calls, and the last result.

    CPU time is shown too: on a shared machine the wall time also counts other processes' turns."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is reported")
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile of one compile")
    args = parser.parse_args()
    pinned = one_core()
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "bench.yaml"
        spec.write_text(SPEC)
        compile_spec(spec)  # warm up: imports, pydantic schema builds
        compile_s, compile_cpu, plan = timed(lambda: compile_spec(spec), args.repeat)
        configs = [job.config for job in plan.jobs]
        baseline_s, _, _ = timed(lambda: [json.dumps(c, sort_keys=True, separators=(",", ":")) for c in configs],
                                 args.repeat)
        if args.profile:
            profile = cProfile.Profile()
            profile.runcall(compile_spec, spec)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(20)
    jobs = len(plan.jobs)
    verdict = "met" if compile_s < TARGET_S else "missed"
    print(f"compile {jobs} jobs: {compile_s:.2f}s (target < {TARGET_S:g}s: {verdict}); ratio vs baseline "
          f"(json-dump of the same {jobs} configs: {baseline_s:.3f}s): {compile_s / baseline_s:.1f}x "
          f"[median of {args.repeat} on {pinned}; cpu {compile_cpu:.2f}s]")


if __name__ == "__main__":
    main()
