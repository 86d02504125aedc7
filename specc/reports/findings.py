"""Verdicts on the paper's claims, computed in SQL from a spec's results.

Each check returns None when the spec produced no data for the claim (it is
then left out), or a verdict that says "observed", "not observed" or
"inconclusive" with the numbers that decided it. Intervals are the 95%
intervals of the win-rate evaluations; seeds are pooled by taking each
method's per-seed peak.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    claim: str
    verdict: str  # observed | not observed | inconclusive
    evidence: str

    @property
    def css(self) -> str:
        return {"observed": "yes", "not observed": "no"}.get(self.verdict, "na")


def findings(con, spec_name: str) -> list[Finding]:
    checks = (_online_beats_offline, _over_optimisation, _offline_classifies_better, _tandem_reproduces_online)
    return [f for check in checks if (f := check(con, spec_name)) is not None]


def _peaks(con, spec_name):
    """Per method: the best checkpoint's win rate (and its interval, KL, run)."""
    return con.execute("""
        SELECT method, arg_max(win_rate, win_rate) AS peak, arg_max(win_rate_lo, win_rate),
               arg_max(win_rate_hi, win_rate), arg_max(kl, win_rate), arg_max(stage, win_rate), count(DISTINCT job_id)
        FROM kl_vs_winrate WHERE spec_name = ? GROUP BY method""", [spec_name]).fetchall()


def _online_beats_offline(con, spec_name) -> Finding | None:
    peaks = {row[0]: row[1:] for row in _peaks(con, spec_name)}
    if "online" not in peaks or "offline" not in peaks:
        return None
    on, off = peaks["online"], peaks["offline"]
    evidence = (f"peak win rate online {on[0]:.3f} [{on[1]:.3f}, {on[2]:.3f}] at KL {on[3]:.2f} vs best offline "
                f"{off[0]:.3f} [{off[1]:.3f}, {off[2]:.3f}] at KL {off[3]:.2f} ({off[5]} offline runs)")
    if on[1] > off[2]:
        verdict = "observed"
    elif on[2] < off[1] or on[0] <= off[0]:
        verdict = "not observed"
    else:
        verdict = "inconclusive"
    return Finding("F1: online reaches a higher peak win rate than the best offline run", verdict, evidence)


def _over_optimisation(con, spec_name) -> Finding | None:
    rows = con.execute("""
        WITH per_run AS (
            SELECT method, job_id, max(win_rate) AS peak, arg_max(win_rate_hi, kl) AS last_hi,
                   arg_max(win_rate, kl) AS last, arg_max(win_rate_lo, win_rate) AS peak_lo, max(kl) AS max_kl
            FROM kl_vs_winrate WHERE spec_name = ? GROUP BY method, job_id)
        SELECT method, count(*), count(*) FILTER (WHERE last_hi < peak_lo), avg(peak - last), max(max_kl)
        FROM per_run GROUP BY method ORDER BY method""", [spec_name]).fetchall()
    if not rows:
        return None
    parts = [f"{m}: {n_fall}/{n} runs fall significantly after their peak (mean drop {drop:.3f}, max KL {kl:.1f})"
             for m, n, n_fall, drop, kl in rows]
    verdict = "observed" if all(n_fall > 0 for _, _, n_fall, _, _ in rows) else (
        "inconclusive" if any(n_fall > 0 for _, _, n_fall, _, _ in rows) else "not observed")
    return Finding("Over-optimisation: win rate rises then falls with KL, for every method", verdict, "; ".join(parts))


def _offline_classifies_better(con, spec_name) -> Finding | None:
    rows = dict((m, (acc, n)) for m, acc, n in con.execute("""
        WITH last AS (SELECT r.method, r.job_id, arg_max(e.classifier_accuracy, e.step) AS acc
                      FROM runs r JOIN evals e USING (job_id)
                      WHERE r.spec_name = ? AND e.classifier_accuracy IS NOT NULL GROUP BY r.method, r.job_id)
        SELECT method, avg(acc), count(*) FROM last GROUP BY method""", [spec_name]).fetchall())
    if "offline" not in rows or "online" not in rows:
        return None
    off, on = rows["offline"][0], rows["online"][0]
    verdict = "observed" if off - on > 0.05 else "not observed"
    return Finding("F8: offline policies classify D_golden better than online ones",
                   verdict, f"final accuracy on D_golden: offline {off:.3f}, online {on:.3f}")


def _tandem_reproduces_online(con, spec_name) -> Finding | None:
    row = con.execute("""
        WITH loss AS (SELECT r.method, m.step, m.value FROM runs r JOIN metrics m USING (job_id)
                      WHERE r.spec_name = ? AND m.name = 'train/loss' AND r.method IN ('online', 'tandem'))
        SELECT count(*), max(abs(o.value - t.value)) FROM loss o JOIN loss t
        ON o.step = t.step AND o.method = 'online' AND t.method = 'tandem'""", [spec_name]).fetchone()
    if not row or not row[0]:
        return None
    steps, worst = row
    verdict = "observed" if worst == 0 else "not observed"
    return Finding("App. F: offline on D_online in its exact order reproduces the online run",
                   verdict, f"{steps} steps compared; largest per-step loss difference {worst:.3g}")
