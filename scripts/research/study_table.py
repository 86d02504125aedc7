"""Per-replicate table of a study's store, with the report's own statistics (specc/reports/paired.py).

    python scripts/research/study_table.py WORKSPACE SPEC_NAME

One markdown row per replicate (seed): online and best offline plateau win rate; online minus
the offline envelope at matched KL in win rate and in oracle reward, each with its interval
over that replicate's 512 held-out prompts; the shared KL range and the share of it where
online is ahead; online minus the shuffled replay (plateau); plateau D_golden accuracy offline
(per configuration) minus online, over 256 pairs; plateau oracle reward of online, of the best
offline run and of SFT (every run's step 0); online's cross-fitted rise and fall.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from specc.reports.claim_data import load_runs
from specc.reports.gap_claims import matched_kl_verdict, over_optimisation_verdict
from specc.reports.paired import across, best_plateau, difference, mean_of, plateau
from specc.reports.queries import SpecData
from specc.store.db import connect


def _by_replicate(runs):
    out = defaultdict(lambda: defaultdict(list))
    for r in runs:
        out[r.replicate][r.method].append(r)
    return out


def rows(data) -> list[str]:
    methods = ("online", "offline", "tandem-shuffled")
    win = _by_replicate(load_runs(data, "win_rate", "win", methods=methods))
    reward = _by_replicate(load_runs(data, "oracle_reward", "oracle_reward", methods=methods))
    accuracy = _by_replicate(load_runs(data, "classifier_accuracy", "classifier_correct"))
    out = []
    for rep in sorted(win):
        w, r, a = win[rep], reward[rep], accuracy[rep]
        on = mean_of([plateau(x.run) for x in w["online"]])
        best, off = best_plateau([x.run for x in w["offline"]])
        _, kl_text = matched_kl_verdict({rep: w})
        kl_win = kl_text.split(": ", 1)[1].split(" (one replicate")[0]
        ranges = kl_text.split("checkpoints (", 1)[1].split("):", 1)[0]
        _, reward_text = matched_kl_verdict({rep: r}, "oracle reward", ".2f")
        kl_reward = reward_text.split(": ", 1)[1].split(" (one replicate")[0]
        shuffled = (format(across([difference(on, plateau(w["tandem-shuffled"][0].run))])[0], "+.3f")
                    if w["tandem-shuffled"] else "-")
        acc_on = mean_of([plateau(x.run) for x in a["online"]])
        acc = ", ".join(f"{x.config}: {across([difference(plateau(x.run), acc_on)], 'pairs')[0]:+.3f}"
                        for x in sorted(a["offline"], key=lambda x: x.config))
        reward_on = mean_of([plateau(x.run) for x in r["online"]]).value
        _, reward_off = best_plateau([x.run for x in r["offline"]])
        sft_reward = r["online"][0].run.value[0]
        over = over_optimisation_verdict([[x.run for x in w["online"]]])
        over_text = f"{over[1]:+.3f} / {over[2]:+.3f}" if over else "-"
        out.append(f"| {rep} | {on.value:.3f} | {off.value:.3f} ({best.name}) | {kl_win} | {kl_reward} | {ranges} | "
                   f"{shuffled} | {acc} | {reward_on:.2f} / {reward_off.value:.2f} / {sft_reward:.2f} | "
                   f"{over_text} |")
    return out


def main(workspace: str, spec: str) -> None:
    with connect(Path(workspace), read_only=True) as con:
        data = SpecData(con, spec).share()
        print("| replicate | online plateau | best offline plateau | matched-KL gap, win rate | matched-KL gap, "
              "oracle reward | shared KL; online ahead on | online − shuffled (plateau) | D_golden accuracy, "
              "offline − online | oracle reward online / best offline / SFT | online rise / fall |")
        print("|" + "---|" * 10)
        print("\n".join(rows(data)))


if __name__ == "__main__":
    main(*sys.argv[1:3])
