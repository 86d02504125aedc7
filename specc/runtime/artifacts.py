"""Token datasets as parquet files: prompt sets, pair datasets, online streams.

Columns hold fixed-size lists of token ids; padded real data carries masks
as a separate column set (`*_mask`) when any example is shorter.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from specc.contracts import EXAMPLES_FILE, PAIRS_FILE, TASK_FILE, prompts_file
from specc.runtime.jobdir import JobDir, atomic_write_json, atomic_write_parquet

PAIR_COLUMNS = ("prompt", "chosen", "rejected")
MASK_SUFFIX = "_mask"  # real data: 1 on real tokens; synthetic data has no mask columns
PAIR_MASKS = tuple(column + MASK_SUFFIX for column in PAIR_COLUMNS)


def _token_column(array: np.ndarray) -> pa.Array:
    array = np.ascontiguousarray(array, dtype=np.int32)
    return pa.FixedSizeListArray.from_arrays(pa.array(array.reshape(-1)), array.shape[1])


def _to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    column = column.combine_chunks()
    width = column.type.list_size
    return column.flatten().to_numpy().astype(np.int64).reshape(-1, width)


def write_tokens(path: Path, columns: dict[str, np.ndarray], extra: dict[str, np.ndarray] | None = None) -> None:
    table = {name: _token_column(values) for name, values in columns.items()}
    for name, values in (extra or {}).items():
        table[name] = pa.array(values)
    atomic_write_parquet(path, pa.table(table))


def read_tokens(path: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(path)
    out = {}
    for name in table.column_names:
        column = table.column(name)
        out[name] = _to_numpy(column) if pa.types.is_fixed_size_list(column.type) else column.to_numpy()
    return out


# -- what a dataset job provides -------------------------------------------------------


def write_task_info(job: JobDir, info: dict) -> None:
    atomic_write_json(job.artifacts / TASK_FILE, info)


def task_info(job: JobDir) -> dict:
    return json.loads((job.artifacts / TASK_FILE).read_text())


def pairs_path(job: JobDir) -> Path:
    return job.artifacts / PAIRS_FILE


def prompts_path(job: JobDir, split: str) -> Path:
    return job.artifacts / prompts_file(split)


EXAMPLES_SHOWN = 5  # pairs a dataset job keeps as text for the report


def write_examples(job: JobDir, examples: list[dict]) -> None:
    """A few pairs as text, for the report (which escapes them)."""
    atomic_write_json(job.artifacts / EXAMPLES_FILE, {"examples": examples})


def read_pairs(job: JobDir) -> dict[str, np.ndarray]:
    return read_tokens(pairs_path(job))


def read_prompts(job: JobDir, split: str) -> np.ndarray:
    return read_tokens(prompts_path(job, split))["prompt"]


def read_prompt_set(job: JobDir, split: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A split's prompts and their mask (None for unpadded synthetic prompts)."""
    table = read_tokens(prompts_path(job, split))
    return table["prompt"], table.get("prompt" + MASK_SUFFIX)
