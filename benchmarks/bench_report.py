"""How long `render_report` takes over a large store: 1,000,000 metric rows, target < 5 s.

The store is written directly (the real schema: specc.store.db creates it; no training): one spec
with the paper's whole design (online, an offline sweep, offline on a second dataset,
tandem at three shuffle levels, IPO and Bo2, three policy sizes, three seeds), each run
with per-step train metrics and periodic evaluations. The baseline is the same design
thinned to 10,000 rows, rendered in the same process, so the ratio says how the report
scales with the store rather than how fast this machine is.

    python benchmarks/bench_report.py [--rows 1000000] [--baseline-rows 10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from specc.store.db import connect

SPEC = "bench"
TARGET_S = 5.0
SIZES = ("S", "M", "L")
SEEDS = (0, 1, 2)
EVAL_METRICS = ("kl", "win_rate", "win_rate_lo", "win_rate_hi", "classifier_accuracy", "self_classifier_accuracy",
                "logp_chosen", "logp_rejected", "oracle_reward")
TRAIN_METRICS = ("train/loss", "train/margin_mean", "train/logp_chosen")


def _id(*parts) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _align_runs() -> list[dict]:
    """The align jobs of the design: (method, loss, data, shuffle, lr, beta, size, seed)."""
    runs = []
    for size in SIZES:
        for seed in SEEDS:
            for loss in ("ipo", "bo2"):
                base = {"size": size, "seed": seed, "loss": loss, "lr": 1e-5, "beta": 0.1, "shuffle": 0.0}
                online = {**base, "method": "online", "data": None}
                runs.append(online)
                if loss == "ipo":
                    runs += [{**base, "method": "offline", "data": "golden_data", "lr": lr, "beta": beta}
                             for lr in (3e-6, 1e-5, 3e-5) for beta in (0.1, 0.5)]
                    runs.append({**base, "method": "offline", "data": "d_4k_vs_4k"})
                    runs += [{**base, "method": "tandem", "data": None, "shuffle": s, "replays": online}
                             for s in (0.0, 0.1, 1.0)]
                else:
                    runs.append({**base, "method": "offline", "data": "golden_data"})
    return runs


def _job_row(job_id, kind, stage, config, upstream, sweep):
    return [job_id, kind, stage, json.dumps(config), json.dumps(upstream), json.dumps(sweep), "done",
            1.7e9, 1.7e9 + 60, 60.0, "bench", 1, 1, None, None]


def build_store(workspace: Path, rows: int, seed: int = 0) -> int:
    """Write a store of about `rows` metric rows; returns the exact count."""
    rng = np.random.default_rng(seed)
    runs = _align_runs()
    upstream_ids = {stage: _id(stage) for stage in ("task", "golden", "golden_data", "sft", "proxy", "d_4k_vs_4k")}
    jobs = [_job_row(upstream_ids[s], k, s, {"kind": k}, {}, {}) for s, k in
            (("task", "dataset"), ("golden", "oracle"), ("golden_data", "label"), ("sft", "sft"),
             ("proxy", "preference_model"), ("d_4k_vs_4k", "pairs"))]
    spec_jobs = [[SPEC, job_id, stage] for stage, job_id in upstream_ids.items()]
    for run in runs:
        run["id"] = _id(run["method"], run["loss"], run["data"], run["shuffle"], run["lr"], run["beta"],
                        run["size"], run["seed"])
    # 25 evaluations per run on a large store (3 on a small one); train steps fill the rest of `rows`
    n_online = sum(r["method"] == "online" for r in runs)
    evals = 25 if rows >= 100_000 else 3
    eval_rows = len(runs) * (evals + 1) * len(EVAL_METRICS)
    steps = max(evals, int((rows - eval_rows) / (len(runs) * len(TRAIN_METRICS) + n_online)))
    eval_every = max(1, steps // evals)
    frames = []
    for run in runs:
        stage = {"online": "online", "offline": f"offline_{run['data']}",
                 "tandem": f"tandem_{run['shuffle']}"}[run["method"]]
        if run["loss"] == "bo2":
            stage += "_bo2"
        upstream = {"init": upstream_ids["sft"], "prompts": upstream_ids["task"],
                    "evaluate.judge": upstream_ids["golden"], "evaluate.pairs": upstream_ids["golden_data"]}
        sampler = {"online": None, "offline": None, "replay": None, "shuffle": run["shuffle"]}
        if run["method"] == "online":
            upstream["sampler.online"], sampler["online"] = upstream_ids["proxy"], "proxy"
        elif run["method"] == "offline":
            upstream["sampler.offline"], sampler["offline"] = upstream_ids[run["data"]], run["data"]
        else:
            upstream["sampler.replay"], sampler["replay"] = run["replays"]["id"], "online"
        config = {"kind": "align", "sampler": sampler, "loss": {"name": run["loss"], "beta": run["beta"]},
                  "train": {"lr": run["lr"], "seed": run["seed"], "steps": steps}, "model": {"size": run["size"]}}
        sweep = {k: run[k] for k in ("lr", "beta", "seed", "size")}
        jobs.append(_job_row(run["id"], "align", stage, config, upstream, sweep))
        spec_jobs.append([SPEC, run["id"], stage])
        frames += _run_metrics(run, steps, eval_every, rng)
    metrics = pd.concat(frames, ignore_index=True)
    with connect(workspace) as con:  # creates the store's real tables and views
        con.execute("INSERT INTO specs VALUES (?, ?, ?, ?)", [SPEC, "bench.yaml", f"name: {SPEC}\n", time.time()])
        con.executemany("INSERT INTO spec_jobs (spec_name, job_id, stage) VALUES (?, ?, ?)", spec_jobs)
        con.executemany("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", jobs)
        con.register("new_metrics", metrics)
        con.execute("INSERT INTO metrics SELECT job_id, step, name, value FROM new_metrics")
    examples = workspace / "jobs" / upstream_ids["task"] / "artifacts"
    examples.mkdir(parents=True, exist_ok=True)
    (examples / "examples.json").write_text(json.dumps({"examples": [
        {"prompt": f"t{i} t{i + 1}", "chosen": "t1 t2", "rejected": "t3 t4"} for i in range(5)]}))
    return len(metrics)


def _run_metrics(run: dict, steps: int, eval_every: int, rng) -> list[pd.DataFrame]:
    """Plausible curves: win rate rises then falls with KL; online peaks higher; tandem at
    shuffle 0 replays online's losses exactly."""
    size_gain = {"S": 0.0, "M": 0.04, "L": 0.07}[run["size"]]
    peak = {"online": 0.75, "offline": 0.6, "tandem": 0.75 - 0.15 * run["shuffle"]}[run["method"]] + size_gain
    peak -= 0.05 if run["loss"] == "bo2" else 0.0
    train_steps = np.arange(1, steps + 1)
    t = train_steps / steps
    tandem_exact = run["method"] == "tandem" and run["shuffle"] == 0.0
    noise_key = run["replays"]["id"] if tandem_exact else run["id"]
    noise = np.random.default_rng(int(noise_key, 16) % 2**32).normal(0, 0.02, steps)
    loss = 1.0 / (1 + 5 * t) + noise
    out = [pd.DataFrame({"job_id": run["id"], "step": train_steps, "name": "train/loss", "value": loss}),
           pd.DataFrame({"job_id": run["id"], "step": train_steps, "name": "train/margin_mean",
                         "value": 2 * t + rng.normal(0, 0.05, steps)}),
           pd.DataFrame({"job_id": run["id"], "step": train_steps, "name": "train/logp_chosen",
                         "value": -20 - 5 * t + rng.normal(0, 0.2, steps)})]
    if run["method"] == "online":
        out.append(pd.DataFrame({"job_id": run["id"], "step": train_steps, "name": "online/judge_accuracy_golden",
                                 "value": 0.8 - 0.15 * t + rng.normal(0, 0.03, steps)}))
    eval_steps = np.arange(0, steps + 1, eval_every)
    u = eval_steps / steps
    kl = 40 * u * (1.5 if run["method"] == "offline" else 1.0) * (run["lr"] / 1e-5) ** 0.3
    win = 0.5 + (peak - 0.5) * u * (1.2 - u) / 0.36 + rng.normal(0, 0.01, len(u))  # peaks at u = 0.6
    half = 1.96 * np.sqrt(win * (1 - win) / 2048)
    accuracy = (0.5 + (0.15 if run["method"] == "offline" else 0.0) * u + rng.normal(0, 0.01, len(u)))
    values = {"kl": kl, "win_rate": win, "win_rate_lo": win - half, "win_rate_hi": win + half,
              "classifier_accuracy": accuracy, "self_classifier_accuracy": 0.5 + rng.normal(0, 0.02, len(u)),
              "logp_chosen": -20 - (8 if run["method"] == "offline" else 3) * u,
              "logp_rejected": -22 - (10 if run["method"] == "offline" else 3) * u, "oracle_reward": win}
    if run["method"] == "online":  # the proxy's own verdicts on the policy's samples, decaying as it drifts
        values["proxy_accuracy_on_policy"] = 0.85 - 0.1 * u + rng.normal(0, 0.01, len(u))
    out += [pd.DataFrame({"job_id": run["id"], "step": eval_steps, "name": f"eval/{name}", "value": v})
            for name, v in values.items()]
    return out


def _time_render(workspace: Path, repeats: int) -> tuple[float, Path]:
    from specc.reports.render import render_report

    best, output = float("inf"), workspace / "reports" / f"{SPEC}.html"
    for _ in range(repeats):
        start = time.perf_counter()
        render_report(workspace, SPEC, output)
        best = min(best, time.perf_counter() - start)
    return best, output


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3, help="timed renders per store; the best is reported")
    parser.add_argument("--keep", type=Path, help="build the stores under this folder and keep them")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="specc-bench-report-"))
    big, small = root / "big", root / "baseline"
    for path in (big, small):
        path.mkdir(parents=True, exist_ok=True)
        (path / "specc.duckdb").unlink(missing_ok=True)

    start = time.perf_counter()
    n_big = build_store(big, args.rows)
    n_small = build_store(small, args.baseline_rows)
    print(f"stores: {n_big:,} and {n_small:,} metric rows, built in {time.perf_counter() - start:.1f} s")

    import vl_convert

    from specc.reports.render import vega_bundle

    start = time.perf_counter()
    vl_convert.javascript_bundle()
    print(f"building the vega JS bundle: {time.perf_counter() - start:.2f} s, paid by the first report on a "
          f"machine (then cached on disk, so not in the timings below)")
    vega_bundle()

    baseline_s, _ = _time_render(small, args.repeats)
    big_s, output = _time_render(big, args.repeats)
    size_mb = output.stat().st_size / 1e6
    met = "met" if big_s < TARGET_S else "MISSED"
    print(f"baseline: render_report over {n_small:,} rows: {baseline_s:.3f} s")
    print(f"render_report over {n_big:,} rows: {big_s:.3f} s (target < {TARGET_S:.0f} s: {met}); "
          f"ratio to baseline {big_s / baseline_s:.2f}x; report {size_mb:.1f} MB")
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0 if big_s < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
