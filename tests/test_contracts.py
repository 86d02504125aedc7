"""The names shared across layers (specc.contracts) against what the code really writes and reads.

A real run of every stage kind and sampler (tests/runtime/tiny.yaml) supplies what is written;
the store's view SQL and the reports' sources supply what is read.
"""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import duckdb
import pytest

from specc import contracts
from specc.compiler.schema import ExecutorSettings, SamplerSettings
from specc.reports import queries
from specc.store import schema as store_schema
from tests.runtime.tiny import Run

SPECC = Path(contracts.__file__).parent
READERS = sorted((SPECC / "store").glob("*.py")) + sorted((SPECC / "reports").glob("*.py")) + [SPECC / "live.py"]
METRIC_LITERAL = re.compile(r"""['"]((?:train|online|eval|data)/[a-z_]+)['"]""")
CONFIG_PATH = re.compile(r"""\$\.([a-z_]+\.[a-z_]+)""")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Run:
    run = Run(tmp_path_factory.mktemp("contracts"))
    assert run.result.ok, run.result.failed
    return run


def written_metrics(run: Run) -> set[str]:
    """Every metric name some job of the run wrote: metric rows, and the summaries in DONE."""
    names = set()
    for job in run.plan.jobs:
        jd = run.job(job.stage)
        names |= {name for _, name, _ in jd.read_metrics()}
        names |= {name for name in json.loads((jd.path / "DONE").read_text()) if "/" in name}
    return names


def read_metrics() -> set[str]:
    """Every metric name the store's views and the reports name, literally or as an eval column."""
    names = {f"eval/{column}" for column in queries.EVAL_COLUMNS}
    for path in READERS:
        names |= set(METRIC_LITERAL.findall(path.read_text()))
    return names


def test_every_declared_metric_is_written_and_every_written_one_declared(tiny):
    written = written_metrics(tiny)
    outcomes = {name for name in written if name.startswith(contracts.OUTCOME_PREFIX)}
    plain = written - outcomes
    assert plain - set(contracts.METRICS) == set(), "written but not declared in specc.contracts.METRICS"
    assert set(contracts.METRICS) - plain == set(), "declared in specc.contracts.METRICS but written by no stage"
    kinds = {name.split("/")[1] for name in outcomes}
    assert kinds == set(contracts.OUTCOMES)
    assert all(re.fullmatch(r"outcome/[a-z_]+/\d{5}", name) for name in outcomes)


def test_every_metric_a_view_or_report_reads_is_declared():
    unknown = read_metrics() - set(contracts.METRICS)
    assert unknown == set(), f"read by the store or the reports, written by nothing: {sorted(unknown)}"


def test_config_keys_read_outside_the_runtime_are_declared_and_present(tiny):
    read = {key for path in READERS for key in CONFIG_PATH.findall(path.read_text())}
    assert read - set(contracts.CONFIG_KEYS) == set(), "config keys the store or reports read, not declared"
    configs = [tiny.job(job.stage).job_json()["config"] for job in tiny.plan.jobs]

    def present(key: str) -> bool:
        head, tail = key.split(".")
        return any(isinstance(c.get(head), dict) and tail in c[head] for c in configs)

    assert [key for key in contracts.CONFIG_KEYS if not present(key)] == []


def test_samplers_are_the_schemas_the_runtimes_and_the_stores():
    from specc.runtime.samplers import SAMPLER_CLASSES

    assert set(contracts.SAMPLERS) <= set(SamplerSettings.model_fields)  # the rest are options (shuffle, ...)
    assert set(contracts.SAMPLERS) == set(SAMPLER_CLASSES)
    assert set(store_schema.SAMPLER_METHODS) == set(contracts.SAMPLERS)
    assert queries.METHODS[: len(contracts.METHODS)] == contracts.METHODS


def test_executor_kinds_are_the_schemas():
    assert typing.get_args(ExecutorSettings.model_fields["kind"].annotation) == contracts.EXECUTORS


def _method(sampler: dict) -> str:
    con = duckdb.connect()
    con.execute(store_schema.SCHEMA)
    con.execute(store_schema.views_sql())
    con.execute("INSERT INTO jobs (job_id, kind, stage, config, upstream, sweep) VALUES (?, 'align', 'a', ?, '{}', '{}')",
                ["j1", json.dumps({"kind": "align", "sampler": sampler})])
    con.execute("INSERT INTO spec_jobs VALUES ('s', 'j1', 'a', NULL, NULL)")
    return con.execute("SELECT method FROM runs").fetchone()[0]


def test_the_store_never_labels_an_unknown_sampler_offline():
    assert _method({"online": "proxy", "offline": None, "replay": None, "shuffle": 0.0}) == "online"
    assert _method({"online": None, "offline": "golden_data", "replay": None, "shuffle": 0.0}) == "offline"
    assert _method({"online": None, "offline": None, "replay": "online", "shuffle": 0.0}) == "tandem"
    assert _method({"online": None, "offline": None, "replay": "online", "shuffle": 0.5}) == "tandem-shuffled"
    assert _method({"online": None, "offline": None, "replay": None, "bandit": "x"}) == contracts.UNKNOWN_METHOD
