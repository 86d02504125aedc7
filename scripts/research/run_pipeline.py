"""Run a spec (with --set style overrides) and summarise the paper's effects from the job dirs.

    python scripts/research/run_pipeline.py SPEC WORKSPACE [key=value ...] [--seeds 0,1,2] [--tag NAME]

For each seed (stages.task.task.seed and every stage's train.seed), runs the plan with the
local executor, then prints per align stage: peak win rate vs the golden policy (and its KL),
the final KL, D_golden classifier accuracy and winner log-prob change, and for the proxy its
validation accuracy. Appends one JSON line per seed to WORKSPACE/summary.jsonl.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from specc.compiler.plan import compile_spec
from specc.runtime.executor import run_local


def metrics(job_path: Path) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for f in sorted((job_path / "metrics").glob("*.parquet")):
        t = pq.read_table(f).to_pydict()
        for step, name, value in zip(t["step"], t["name"], t["value"]):
            out.setdefault(name, {})[int(step)] = float(value)
    return out


def curve(m, name):
    d = m.get(name, {})
    return [d[s] for s in sorted(d)], sorted(d)


def summarise(plan, workspace: Path) -> dict:
    rows = {}
    for job in plan.jobs:
        stage = job.stage
        path = workspace / "jobs" / job.id
        m = metrics(path)
        cfg = job.config
        label = stage
        if cfg.get("kind") == "align" or "sampler" in cfg:
            label = f"{stage}[b={cfg['loss']['beta']},lr={cfg['train']['lr']},n={cfg['train']['steps']}]"
            win, steps = curve(m, "eval/win_rate")
            kl, _ = curve(m, "eval/kl")
            acc, _ = curve(m, "eval/classifier_accuracy")
            lpc, _ = curve(m, "eval/logp_chosen")
            if not win:
                continue
            i = int(np.argmax(win))
            rows[label] = {"stage": stage, "steps": steps, "win": win, "kl": kl, "acc": acc, "logp_chosen": lpc,
                           "peak": win[i], "peak_kl": kl[i], "peak_step": steps[i], "final_win": win[-1],
                           "final_kl": kl[-1], "final_acc": acc[-1] if acc else None,
                           "dlogp_chosen": (lpc[-1] - lpc[0]) if lpc else None,
                           "proxy_on_policy": curve(m, "eval/proxy_accuracy_on_policy")[0]}
        elif "eval/judge_accuracy" in m:
            rows[label] = {"stage": stage, "judge_accuracy": curve(m, "eval/judge_accuracy")[0]}
    return rows


def main():
    spec, workspace, *rest = sys.argv[1:]
    seeds, tag, overrides = [0], "", []
    it = iter(rest)
    for a in it:
        if a == "--seeds":
            seeds = [int(s) for s in next(it).split(",")]
        elif a == "--tag":
            tag = next(it)
        else:
            overrides.append(a)
    workspace = Path(workspace)
    for seed in seeds:
        seeded = overrides + [f"stages.task.task.seed={seed}"]
        plan = compile_spec(spec, overrides=seeded)
        t0 = time.time()
        run_local(plan, workspace, kind="local", max_parallel=2)
        wall = time.time() - t0
        rows = summarise(plan, workspace)
        print(f"== {tag} seed {seed}: wall {wall:.0f}s  overrides {overrides}")
        for label, r in rows.items():
            if "judge_accuracy" in r:
                print(f"  {label:40s} judge acc {' '.join(f'{a:.2f}' for a in r['judge_accuracy'])}")
            else:
                po = r["proxy_on_policy"]
                print(f"  {label:40s} peak {r['peak']:.3f} @kl {r['peak_kl']:.2f} (step {r['peak_step']}) final {r['final_win']:.3f} "
                      f"kl {r['final_kl']:.2f} acc {r['final_acc']:.3f} dlogp_w {r['dlogp_chosen']:+.1f}"
                      + (f" proxy_on_pol {po[0]:.2f}->{po[-1]:.2f}" if po else ""))
                print(f"  {'':40s} win {' '.join(f'{w:.2f}' for w in r['win'])}")
                print(f"  {'':40s} kl  {' '.join(f'{k:.1f}' for k in r['kl'])}")
        with open(workspace / "summary.jsonl", "a") as fh:
            fh.write(json.dumps({"tag": tag, "seed": seed, "overrides": overrides, "wall": wall, "rows": rows}) + "\n")


if __name__ == "__main__":
    main()
