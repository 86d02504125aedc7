"""The bar's four checks from summary.jsonl rows written by run_pipeline.py.

    python scripts/research/verdict.py WORKSPACE/summary.jsonl TAG [--markdown]

--markdown prints one row per seed in the layout of docs/embedded-task.md's pipeline table.

Per seed: F1 peak win rates (online, best offline config, tandem-shuffled) and the mean
online-minus-offline-envelope gap at matched KL (piecewise-linear in KL over the range
both cover; the envelope is the best offline config at each KL); F8 final D_golden
classifier accuracy and change of winner log-prob; over-optimisation (peak before the last
checkpoint and a drop of at least 0.03 after it). Pooled: mean and a t-interval over seeds.
"""

import json
import sys

import numpy as np

T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78}


def interp_curve(kl, win, grid):
    order = np.argsort(kl, kind="stable")
    k, w = np.asarray(kl)[order], np.asarray(win)[order]
    k, idx = np.unique(k, return_index=True)  # a KL seen twice keeps its first checkpoint
    return np.interp(grid, k, w[idx], left=np.nan, right=np.nan)


def per_seed(rows):
    by_stage = {}
    for label, r in rows.items():
        if "peak" in r:
            by_stage.setdefault(r["stage"], []).append((label, r))
    online = by_stage["online"][0][1]
    offline = by_stage["offline"]
    best_label, best = max(offline, key=lambda x: x[1]["peak"])
    shuffled = by_stage["tandem_shuffled"][0][1]
    lo = max(min(online["kl"][1:]), min(min(r["kl"][1:]) for _, r in offline))
    hi = min(max(online["kl"]), max(max(r["kl"]) for _, r in offline))
    gap = None
    if hi > lo:
        grid = np.linspace(lo, hi, 50)
        env = np.nanmax(np.stack([interp_curve(r["kl"], r["win"], grid) for _, r in offline]), axis=0)
        on = interp_curve(online["kl"], online["win"], grid)
        ok = ~np.isnan(env) & ~np.isnan(on)
        gap = (float(np.mean(on[ok] - env[ok])), float(np.mean(on[ok] > env[ok])), float(lo), float(hi))

    def overopt(r):
        i = int(np.argmax(r["win"]))
        return i < len(r["win"]) - 1 and r["win"][i] - r["win"][-1] >= 0.03

    return {"online_peak": online["peak"], "online_peak_kl": online["peak_kl"],
            "offline_best": best["peak"], "offline_best_kl": best["peak_kl"], "offline_best_cfg": best_label,
            "shuffled_peak": shuffled["peak"], "shuffled_peak_kl": shuffled["peak_kl"],
            "gap": gap, "online_acc": online["final_acc"],
            "offline_acc": {l: r["final_acc"] for l, r in offline},
            "online_dlogp": online["dlogp_chosen"], "offline_dlogp": {l: r["dlogp_chosen"] for l, r in offline},
            "overopt_online": overopt(online), "overopt_offline": {l: overopt(r) for l, r in offline},
            "proxy_acc": rows.get("proxy", {}).get("judge_accuracy", [None])[-1],
            "proxy_on_policy": online["proxy_on_policy"][-1] if online["proxy_on_policy"] else None}


def pooled(xs):
    xs = np.asarray([x for x in xs if x is not None], dtype=float)
    if len(xs) < 2:
        return f"{xs.mean():.3f}" if len(xs) else "-"
    half = T95.get(len(xs) - 1, 2.0) * xs.std(ddof=1) / np.sqrt(len(xs))
    return f"{xs.mean():.3f} [{xs.mean() - half:.3f}, {xs.mean() + half:.3f}]"


def _short(label: str) -> str:
    return label.split("[")[1].split(",")[0]  # "offline[b=0.01,lr=...]" -> "b=0.01"


def markdown_row(tag: str, seed: int, overrides: list, wall: float, s: dict) -> str:
    g = s["gap"]
    gap = f"{g[0]:+.3f} (KL {g[2]:.1f}-{g[3]:.1f}, ahead on {g[1]:.0%})" if g else "-"
    offline_over = sum(s["overopt_offline"].values())
    cells = [tag, str(seed), "; ".join(o.replace("stages.", "") for o in overrides) or "quickstart",
             f"{s['proxy_acc']:.2f} / {s['proxy_on_policy']:.2f}",
             f"{s['online_peak']:.3f} @ {s['online_peak_kl']:.1f}",
             f"{s['offline_best']:.3f} @ {s['offline_best_kl']:.1f} ({_short(s['offline_best_cfg'])})", gap,
             f"{s['shuffled_peak']:.3f} @ {s['shuffled_peak_kl']:.1f}", f"{s['online_acc']:.2f}",
             ", ".join(f"{_short(k)}: {v:.2f}" for k, v in s["offline_acc"].items()), f"{s['online_dlogp']:+.1f}",
             ", ".join(f"{_short(k)}: {v:+.1f}" for k, v in s["offline_dlogp"].items()),
             f"{'yes' if s['overopt_online'] else 'no'} / {offline_over} of {len(s['overopt_offline'])}", f"{wall:.0f}"]
    return "| " + " | ".join(cells) + " |"


def main():
    path, tag = sys.argv[1], sys.argv[2]
    seeds, runs = {}, {}
    for line in open(path):
        d = json.loads(line)
        if d["tag"] == tag:
            seeds[d["seed"]] = per_seed(d["rows"])
            runs[d["seed"]] = d
    if "--markdown" in sys.argv:
        for seed, s in sorted(seeds.items()):
            print(markdown_row(tag, seed, runs[seed]["overrides"], runs[seed]["wall"], s))
        return
    for seed, s in sorted(seeds.items()):
        g = s["gap"]
        print(f"seed {seed}: online {s['online_peak']:.3f}@{s['online_peak_kl']:.1f}  best offline {s['offline_best']:.3f}"
              f"@{s['offline_best_kl']:.1f} ({s['offline_best_cfg']})  shuffled {s['shuffled_peak']:.3f}@{s['shuffled_peak_kl']:.1f}"
              + (f"  matched-KL gap {g[0]:+.3f} (online ahead on {g[1]:.0%} of KL {g[2]:.1f}-{g[3]:.1f})" if g else ""))
        print(f"        acc online {s['online_acc']:.3f} offline {json.dumps({k.split('[')[1][:6]: round(v, 3) for k, v in s['offline_acc'].items()})}"
              f"  dlogp_w online {s['online_dlogp']:+.1f} offline {json.dumps({k.split('[')[1][:6]: round(v, 1) for k, v in s['offline_dlogp'].items()})}")
        print(f"        over-opt online {s['overopt_online']} offline {json.dumps({k.split('[')[1][:6]: v for k, v in s['overopt_offline'].items()})}"
              f"  proxy acc {s['proxy_acc']}  on-policy {s['proxy_on_policy']}")
    ss = list(seeds.values())
    print("pooled (mean [95% t-interval over seeds]):")
    print("  online peak         ", pooled([s["online_peak"] for s in ss]))
    print("  best offline peak   ", pooled([s["offline_best"] for s in ss]))
    print("  online - best offl. ", pooled([s["online_peak"] - s["offline_best"] for s in ss]))
    print("  matched-KL gap      ", pooled([s["gap"][0] if s["gap"] else None for s in ss]))
    print("  shuffled peak       ", pooled([s["shuffled_peak"] for s in ss]))
    print("  online - shuffled   ", pooled([s["online_peak"] - s["shuffled_peak"] for s in ss]))
    print("  online acc          ", pooled([s["online_acc"] for s in ss]))
    for key in ss[0]["offline_acc"]:
        print(f"  offline acc {key.split('[')[1][:6]}", pooled([s["offline_acc"].get(key) for s in ss]))
    print("  online dlogp_w      ", pooled([s["online_dlogp"] for s in ss]))
    for key in ss[0]["offline_dlogp"]:
        print(f"  offline dlogp {key.split('[')[1][:6]}", pooled([s["offline_dlogp"].get(key) for s in ss]))


if __name__ == "__main__":
    main()
