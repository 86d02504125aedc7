"""Run every benchmark in benchmarks/, one process at a time, and print one table of figures against targets.

    python benchmarks/run_all.py [--only train eval ...] [--threads 1] [--quick]

Each bench_*.py runs as its own subprocess (never two at once: on a 2-core machine two
torch processes slow each other down many times over). Figures come from the
benchmarks' own output: `RESULT {json}` lines where a benchmark prints them
(bench_train, bench_eval), else the lines that state a target and met/missed. The
exit code is 0 when every target is met (stretch goals aside).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["compile", "ingest", "report", "train", "eval"]  # cheap first; others found later run last
VERDICT = re.compile(r"\b(met|missed|MISSED)\b")
KNOWN = {  # benchmarks that print no RESULT lines: value, target and verdict from their own wording
    "compile": (r"compile (?P<n>[\d,]+) jobs: (?P<value>[\d.]+)s \(target < (?P<target>[\d.]+)s: (?P<verdict>\w+)\)",
                "compile {n} jobs"),
    "ingest": (r"ingest\s+fresh store\s+(?P<value>[\d.]+) s.*?target: ingest < (?P<target>[\d.]+) s wall -> (?P<verdict>\w+)",
               "ingest into a fresh store"),
    "report": (r"render_report over (?P<n>[\d,]+) rows: (?P<value>[\d.]+) s \(target < (?P<target>[\d.]+) s: (?P<verdict>\w+)\)",
               "render_report, {n} rows"),
}


def benchmarks(only: list[str] | None) -> list[str]:
    found = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    names = [n for n in ORDER if n in found] + [n for n in found if n not in ORDER]
    return [n for n in names if not only or n in only]


def arguments(name: str, args) -> list[str]:
    out = []
    if name in ("train", "eval", "progress"):
        out += ["--threads", str(args.threads)]
        if args.quick:
            out += ["--rounds", "2"] + (["--steps", "4"] if name == "train" else [])
    return out


def figures(name: str, stdout: str) -> list[dict]:
    """Rows of the table from one benchmark's output."""
    rows = [json.loads(line.removeprefix("RESULT ")) for line in stdout.splitlines() if line.startswith("RESULT ")]
    if rows:
        return rows
    if name in KNOWN:
        pattern, label = KNOWN[name]
        match = re.search(pattern, stdout, re.S)
        if match:
            ratio = re.search(r"ratio (?:vs|to) baseline(?:.*?: | )([\d.]+)x|= ([\d.]+)x baseline", stdout)
            note = f"{ratio[1] or ratio[2]}x its baseline" if ratio else ""
            return [{"name": label.format(**match.groupdict()), "value": float(match["value"]), "unit": "s",
                     "target": float(match["target"]), "met": match["verdict"] == "met", "at_most": True, "note": note}]
    lines = [line.strip() for line in stdout.splitlines() if "target" in line and VERDICT.search(line)]
    return [{"name": line, "value": None, "met": VERDICT.search(line).group(1) == "met"} for line in lines]


def cell(row: dict) -> tuple[str, str]:
    if row.get("value") is None:
        return "", ""
    unit = row.get("unit", "")
    value = f"{row['value']:.2f}{unit}" if unit != "%" else f"{row['value']:.1f}%"
    if row["target"] is None:
        return value, ""
    if row.get("at_most"):
        return value, f"<= {row['target']:g}{unit}"
    if abs(row["target"] - 1 / 1.1) < 1e-9:
        return value, "within 1.1x"
    return value, f">= {row['target']:g}{unit}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="benchmark names (train, eval, compile, ...)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for train and eval")
    parser.add_argument("--quick", action="store_true", help="fewer rounds for train and eval")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per benchmark")
    args = parser.parse_args()
    table, failures = [], []
    for name in benchmarks(args.only):
        command = [sys.executable, str(HERE / f"bench_{name}.py"), *arguments(name, args)]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            failures.append(f"{name}: timed out after {args.timeout} s")
            continue
        print("\n".join(line for line in done.stdout.splitlines() if not line.startswith("RESULT ")), flush=True)
        rows = figures(name, done.stdout)
        if not rows:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            failures.append(f"{name}: exit {done.returncode}, no figures ({' | '.join(tail)})")
        table += [(name, row) for row in rows]
        print(f"   ({time.perf_counter() - start:.0f} s)\n", flush=True)
    width = max([len(r["name"]) for _, r in table] + [20])
    print(f"{'benchmark':10s} {'figure':{width}s} {'value':>9s} {'target':>12s}  {'verdict':7s} note")
    for name, row in table:
        value, target = cell(row)
        verdict = "met" if row["met"] else "MISSED"
        print(f"{name:10s} {row['name']:{width}s} {value:>9s} {target:>12s}  {verdict:7s} {row.get('note', '')}")
    for failure in failures:
        print(f"FAILED   {failure}")
    missed = [r for _, r in table if not r["met"] and "stretch" not in r["name"]]
    return 0 if not missed and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
