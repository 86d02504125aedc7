"""Query results as files: csv, json, parquet (`specc query --format ... --output FILE`)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TextIO

import pyarrow as pa

from specc.runtime.jobdir import atomic_write_parquet

FORMATS = ("table", "csv", "json", "parquet")


def write_csv(columns: list[str], rows: list[tuple], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)


def write_json(columns: list[str], rows: list[tuple], out: TextIO) -> None:
    """A JSON array of objects; NaN and infinities (not JSON) become null, dates and the like strings."""
    records = [{c: _json_value(v) for c, v in zip(columns, row)} for row in rows]
    json.dump(records, out, default=str, indent=1, allow_nan=False)
    out.write("\n")


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


def write_parquet(table: pa.Table, path: Path) -> None:
    """Written to a temporary name and renamed: a reader never sees half a file."""
    atomic_write_parquet(Path(path), table)
