"""Small statistics for the findings: means and differences with 95% intervals, correlations,
and the three-way verdict every claim gets.

Units are replicates (seeds), runs or evaluated items (held-out prompts, pairs of D_golden).
A mean over two or more units gets a Student-t interval with n - 1 degrees of freedom from
their spread, never narrower: when the spread is smaller than the units' own measurement
error (a win rate's binomial interval) allows, that error widens it, still with t(n - 1).
A single unit carries only its measurement error (normal interval), which ignores
seed-to-seed variation: the evidence text says which kind each interval is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

Z95 = 1.959963984540054
# 0.975 quantiles of Student's t, df = 1..30
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t975(df: float) -> float:
    """0.975 quantile of Student's t (df may be fractional, Welch; inf gives the normal)."""
    if math.isinf(df):
        return Z95
    if df > 30:
        return Z95 + (_T975[-1] - Z95) * 30 / df  # within 0.1% of the exact quantile
    return _T975[max(1, math.floor(df)) - 1]  # rounding df down errs wide


@dataclass(frozen=True)
class Estimate:
    """A value with a 95% interval from its standard error `se` and degrees of freedom `df`
    (inf: normal). se None: no interval could be formed."""
    value: float
    se: float | None
    df: float = math.inf
    n: int = 1

    @property
    def half(self) -> float:
        return 0.0 if self.se is None else t975(self.df) * self.se

    @property
    def lo(self) -> float:
        return self.value - self.half

    @property
    def hi(self) -> float:
        return self.value + self.half

    @property
    def has_interval(self) -> bool:
        return self.se is not None

    def __format__(self, spec: str) -> str:
        spec = spec or ".3f"
        if self.se is None:
            return format(self.value, spec)
        return f"{self.value:{spec}} [{self.lo:{spec}}, {self.hi:{spec}}]"


def _floor_se(measurement_se: Sequence[float | None], n: int) -> float:
    known = [s for s in measurement_se if s is not None and math.isfinite(s)]
    return math.sqrt(sum(s * s for s in known) / len(known) / n) if known else 0.0


def mean_estimate(values: Sequence[float], measurement_se: Sequence[float | None] = ()) -> Estimate:
    """Mean over units: t-interval from their spread (floored by measurement error) with two or
    more units; a single unit's measurement interval otherwise (none if it has none)."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n >= 2:
        spread, floor = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) / math.sqrt(n), _floor_se(
            measurement_se, n)
        # units that agree more closely than their measurement error allows: that (known) error
        # widens the interval; the quantile stays t(n - 1), so it is never narrower than the t-interval
        return Estimate(mean, max(spread, floor), n - 1, n)
    se = measurement_se[0] if measurement_se else None
    return Estimate(mean, se if se is not None and math.isfinite(se) else None, math.inf, 1)


def group_difference(a: Sequence[float], b: Sequence[float], a_se: Sequence[float | None] = (),
                     b_se: Sequence[float | None] = ()) -> Estimate:
    """mean(a) - mean(b). Both groups with two or more units: Welch (Welch-Satterthwaite df).
    One group of one unit: the other group's spread stands for both (pooled-variance t).
    Two single units: their measurement errors combined (normal), or no interval."""
    ea, eb = mean_estimate(a, a_se), mean_estimate(b, b_se)
    value = ea.value - eb.value
    if ea.n >= 2 and eb.n >= 2:
        va, vb = ea.se ** 2, eb.se ** 2
        denominator = va * va / ea.df + vb * vb / eb.df
        df = (va + vb) ** 2 / denominator if denominator > 0 else math.inf
        return Estimate(value, math.sqrt(va + vb), df, min(ea.n, eb.n))
    if ea.n >= 2 or eb.n >= 2:
        many, one, one_se = (ea, eb, b_se) if ea.n >= 2 else (eb, ea, a_se)
        spread = many.se * math.sqrt(many.n)  # the group's sd (or its measurement floor)
        se = spread * math.sqrt(1 / many.n + 1)
        single = one_se[0] if one_se and one_se[0] is not None else 0.0
        return Estimate(value, max(se, math.hypot(many.se, single)), many.df, 1)
    if ea.se is None or eb.se is None:
        return Estimate(value, None)
    return Estimate(value, math.hypot(ea.se, eb.se))


OBSERVED, CONTRADICTED, INCONCLUSIVE = "observed", "contradicted", "inconclusive"


def verdict_positive(diff: Estimate) -> str:
    """For a claim 'diff > 0': observed when the 95% interval lies above 0, contradicted when it
    lies below 0, inconclusive when it contains 0 or there is no interval. The estimate's sign
    alone never decides: a small negative estimate with a wide interval is inconclusive."""
    if not diff.has_interval or diff.se == 0:
        return INCONCLUSIVE
    if diff.lo > 0:
        return OBSERVED
    if diff.hi < 0:
        return CONTRADICTED
    return INCONCLUSIVE


def items_estimate(differences) -> Estimate:
    """Mean of per-item (per-prompt, per-pair) paired differences, with a t-interval over items."""
    values = [float(v) for v in differences]
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Estimate(mean, None)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Estimate(mean, sd / math.sqrt(n), n - 1, n)


def se_from_interval(lo: float | None, hi: float | None) -> float | None:
    """Standard error behind a normal 95% interval (e.g. a win rate's binomial interval)."""
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    return (hi - lo) / (2 * Z95)


def binomial_se(p: float, n: int) -> float:
    """Standard error of a proportion over n trials, never below that of p = 1/2 over 4n."""
    return math.sqrt(max(p * (1 - p), 0.25 / n) / n)


def correlation_interval(r: float, n: float) -> tuple[float, float] | None:
    """Fisher-z 95% interval of a Pearson correlation over n independent points (n may be an
    effective count, e.g. runs less the replicate means removed)."""
    if n < 4 or r is None or not math.isfinite(r):
        return None
    r = max(min(r, 0.999999), -0.999999)
    z, half = math.atanh(r), Z95 / math.sqrt(n - 3)
    return math.tanh(z - half), math.tanh(z + half)
