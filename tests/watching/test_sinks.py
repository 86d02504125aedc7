"""Metric sinks (`report_to`): TensorBoard event files and offline W&B runs, read back with
the packages' own readers; a sink never changes a result or fails a job. No network."""

import json
import shutil
import struct
import subprocess
import sys

import pytest

from specc.compiler.plan import compile_spec
from specc.runtime.job import run_job
from specc.runtime.jobdir import JobDir
from specc.runtime.sinks import SINKS_FILE, write_sink_settings
from tests.watching.helpers import MINI, cli_env, jobs_of, metric_series, specc

SINKS = ["--set", "report_to=[tensorboard, wandb]"]


def wandb_env(tmp_path) -> dict:
    env = cli_env(WANDB_MODE="offline", WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
                  WANDB_CACHE_DIR=str(tmp_path / "wandb-cache"), WANDB_DATA_DIR=str(tmp_path / "wandb-data"))
    env.pop("WANDB_API_KEY", None)
    return env


@pytest.fixture(scope="module")
def sink_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("sinks")
    proc = specc("run", MINI, *SINKS, "--workspace", cwd / "runs", "--no-report", cwd=cwd, env=wandb_env(cwd))
    return cwd, cwd / "runs", proc


def trained_jobs(workspace):
    return jobs_of(workspace, "sft") + jobs_of(workspace, "offline")


def test_sinks_are_named_by_stage_and_swept_values(sink_run):
    _, workspace, _ = sink_run
    names = sorted(d.name for jd in trained_jobs(workspace) for d in (jd.path / "tensorboard").iterdir())
    assert names == ["offline,lr=0.001", "offline,lr=0.002", "sft"]
    assert not list(jobs_of(workspace, "task")[0].path.glob("tensorboard"))  # no training loop, nothing to plot


def test_tensorboard_reads_back_every_training_metric(sink_run):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    _, workspace, _ = sink_run
    multiplexer = EventMultiplexer().AddRunsFromDirectory(str(workspace))  # what `tensorboard --logdir runs/` loads
    multiplexer.Reload()
    for jd in trained_jobs(workspace):
        (run,) = [r for r in multiplexer.Runs() if r.startswith(f"jobs/{jd.id}/tensorboard/")]
        tags = multiplexer.GetAccumulator(run).Tags()["scalars"]
        assert not [t for t in tags if t.startswith("outcome/")]
        for name in ("train/loss", "eval/win_rate") if "offline" in run else ("train/loss",):
            written = {e.step: e.value for e in multiplexer.Scalars(run, name)}
            expected = {step: struct.unpack("f", struct.pack("f", v))[0] for step, v in metric_series(jd, name).items()}
            assert written == expected, (run, name)  # every step, as float32 (TensorBoard's scalar type)
        config = multiplexer.Tensors(run, "config/text_summary")[0].tensor_proto.string_val[0].decode()
        assert jd.id in config and '"lr"' in config


def wandb_records(path):
    """The records of a .wandb file (W&B's LevelDB-style log of protobuf Records)."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, buffer = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            pos += block - pos % block if pos % block else 0
            continue
        buffer = chunk if kind in (1, 2) else buffer + chunk
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(buffer)
            yield record


def test_wandb_writes_an_offline_run_per_job_with_its_config_and_id(sink_run):
    cwd, workspace, _ = sink_run
    for jd in jobs_of(workspace, "offline"):
        (run_dir,) = (jd.path / "wandb").glob(f"offline-run-*-{jd.id}")
        records = list(wandb_records(run_dir / f"run-{jd.id}.wandb"))
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        assert (run.run_id, run.project, run.run_group) == (jd.id, "mini", "offline")
        assert run.display_name == f"offline,lr={jd.job_json()['config']['train']['lr']}"
        config = {item.key: json.loads(item.value_json) for item in run.config.update}
        assert config["specc"]["job_id"] == jd.id and config["train"] == jd.job_json()["config"]["train"]
        logged = {}
        for record in records:
            if record.WhichOneof("record_type") == "history":
                items = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item}
                if "train/loss" in items:
                    logged[items["_step"]] = items["train/loss"]
        assert logged == metric_series(jd, "train/loss")
        # W&B's own CLI recognises the directory as a run to upload later (--dry-run: no network)
        listed = subprocess.run([sys.executable, "-m", "wandb", "sync", "--dry-run", str(run_dir)], cwd=cwd,
                                capture_output=True, text=True, env=wandb_env(cwd), timeout=120)
        assert f"run-{jd.id}.wandb" in listed.stdout + listed.stderr


def test_sinks_change_no_result_and_no_job_id(sink_run, mini_run):
    _, workspace, proc = sink_run
    for stage in ("task", "golden", "golden_data", "sft", "offline"):
        for with_sinks, without in zip(jobs_of(workspace, stage), jobs_of(mini_run, stage)):
            assert with_sinks.is_done() and with_sinks.id == without.id
            assert sorted(with_sinks.read_metrics()) == sorted(without.read_metrics())
            assert not (without.path / SINKS_FILE).exists()


def test_not_in_a_terminal_run_prints_plain_lines(sink_run):
    _, _, proc = sink_run
    assert "\x1b[" not in proc.stdout  # no cursor movement or colour in a log
    assert proc.stdout.count("  started") == 6 and proc.stdout.count("     done") == 6
    assert "6 ran, 0 cached, 0 failed" in proc.stdout


def test_a_failing_sink_is_logged_and_the_job_still_finishes_the_same(mini_run, tmp_path):
    workspace = tmp_path / "runs"
    shutil.copytree(mini_run, workspace)
    plan = compile_spec(MINI, overrides=["report_to=[tensorboard]"])
    (sft,) = jobs_of(workspace, "sft")
    expected = sorted(sft.read_metrics())
    sft.clear_results()
    (sft.path / "DONE").unlink(missing_ok=True)
    write_sink_settings(plan, workspace, [j for j in plan.jobs if j.id == sft.id])
    (sft.path / "tensorboard").write_text("a file where the sink wants a folder")  # the writer cannot start
    run_job(sft.path)
    assert JobDir(sft.path).is_done()
    assert sorted(sft.read_metrics()) == expected
    assert "metric sink tensorboard could not start; the job goes on without it" in sft.log_path.read_text()


def test_an_unknown_sink_is_a_located_spec_error(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(MINI.read_text() + "report_to: [tensorboard, mlflow]\n")
    proc = specc("validate", spec, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = len(MINI.read_text().splitlines()) + 1
    assert f"spec.yaml:{line}:26: report_to.1:" in proc.stderr and "'mlflow'" in proc.stderr, proc.stderr
