"""The figure views on a small hand-built store, against numbers worked out by hand."""

from __future__ import annotations

import pytest

from specc.store.db import ingest, query
from tests.store.jobs import add_to_spec, align_config, finished_job

SIZES = {"on_s": "S", "off_s1": "S", "off_s2": "S", "on_m": "M", "off_m": "M"}
WIN_RATES = {"on_s": [0.5, 0.6, 0.7, 0.8, 0.9], "off_s1": [0.5, 0.55], "off_s2": [0.6, 0.65], "on_m": [0.5, 1.0],
             "off_m": [0.7]}


def job_id(name: str) -> str:
    return name.encode().hex().ljust(16, "0")


def evals(win_rates, **more) -> list[tuple[int, str, float]]:
    rows = [(10 * i, "eval/win_rate", w) for i, w in enumerate(win_rates)]
    rows += [(10 * i, "eval/kl", float(i)) for i in range(len(win_rates))]
    return rows + [(step, name, value) for name, values in more.items() for step, value in values]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("views") / "runs"
    stages = {}
    for name, size in SIZES.items():
        method = "online" if name.startswith("on") else "offline"
        metrics = {"eval": evals(WIN_RATES[name])}
        if name == "off_s1":
            metrics["eval"] += [(0, "eval/classifier_accuracy", 0.6), (10, "eval/classifier_accuracy", 0.7),
                                (10, "eval/self_classifier_accuracy", 0.55), (0, "eval/logp_chosen", -10.0),
                                (0, "eval/logp_rejected", -12.0), (10, "eval/logp_chosen", -9.0),
                                (10, "eval/logp_rejected", -14.0)]
        if name.startswith("on"):
            metrics["train"] = [(step, "train/loss", float(step)) for step in range(1, 6)]
        finished_job(workspace, job_id(name), metrics, stage=f"{method}_{size}", config=align_config(method, size))
        stages[job_id(name)] = f"{method}_{size}"
    for name, online, shuffle, losses in (("tandem", "on_s", 0.0, [1, 2, 3, 4, 5.5]),
                                          ("shuffled", "on_m", 0.1, [2, 2, 2])):
        finished_job(workspace, job_id(name), {"train": [(s, "train/loss", v) for s, v in enumerate(losses, 1)]},
                     stage=name, config=align_config("replay", SIZES[online], shuffle=shuffle),
                     upstream={"init": job_id("sft"), "sampler.replay": job_id(online)})
        stages[job_id(name)] = name
    finished_job(workspace, job_id("proxy"), {"eval": [(0, "eval/judge_accuracy", 0.8)]}, stage="proxy",
                 kind="preference_model")
    stages[job_id("proxy")] = "proxy"
    ingest(workspace, warn=pytest.fail)
    add_to_spec(workspace, "paper", stages)
    return workspace


def rows(workspace, sql):
    return query(workspace, sql)[1]


def test_best_of_is_the_90_percent_quantile_normalised_by_online_at_each_size(workspace):
    got = rows(workspace, """SELECT method, policy_size, n_runs, n_checkpoints, win_rate_q90, online_win_rate_q90,
                                    normalised_win_rate FROM best_of ORDER BY policy_size, method""")
    # quantile_cont: position 0.9 * (n - 1) between sorted values, linearly.
    on_s = 0.8 + 0.6 * 0.1  # [.5 .6 .7 .8 .9]: position 3.6
    off_s = 0.6 + 0.7 * 0.05  # [.5 .55 .6 .65] pooled over both offline runs: position 2.7
    on_m = 0.5 + 0.9 * 0.5  # [.5 1.0]: position 0.9
    expected = [("offline", "M", 1, 1, 0.7, on_m, 0.7 / on_m), ("online", "M", 1, 2, on_m, on_m, 1.0),
                ("offline", "S", 2, 4, off_s, on_s, off_s / on_s), ("online", "S", 1, 5, on_s, on_s, 1.0)]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g[:4] == e[:4] and g[4:] == pytest.approx(e[4:])


def test_tandem_vs_online_loss_pairs_each_replay_with_the_job_it_replays(workspace):
    got = rows(workspace, """SELECT job_id, online_job_id, method, shuffle_level, step, tandem_loss, online_loss,
                                    loss_difference FROM tandem_vs_online_loss ORDER BY job_id, step""")
    tandem = [(job_id("tandem"), job_id("on_s"), "tandem", 0.0, s, t, float(s), t - s)
              for s, t in enumerate([1, 2, 3, 4, 5.5], 1)]
    shuffled = [(job_id("shuffled"), job_id("on_m"), "tandem-shuffled", 0.1, s, 2.0, float(s), 2.0 - s)
                for s in (1, 2, 3)]
    assert got == sorted(tandem + shuffled)
    assert rows(workspace, "SELECT DISTINCT online_stage FROM tandem_vs_online_loss ORDER BY 1") == [
        ("online_M",), ("online_S",)]


def test_accuracy_and_logp_over_time(workspace):
    assert rows(workspace, "SELECT job_id, method, step, metric, accuracy FROM accuracy_over_time ORDER BY ALL") == [
        (job_id("off_s1"), "offline", 0, "classifier_accuracy", 0.6),
        (job_id("off_s1"), "offline", 10, "classifier_accuracy", 0.7),
        (job_id("off_s1"), "offline", 10, "self_classifier_accuracy", 0.55),
        (job_id("proxy"), "preference_model", 0, "judge_accuracy", 0.8)]
    assert rows(workspace, "SELECT job_id, step, response, logp FROM logp_over_time ORDER BY ALL") == [
        (job_id("off_s1"), 0, "chosen", -10.0), (job_id("off_s1"), 0, "rejected", -12.0),
        (job_id("off_s1"), 10, "chosen", -9.0), (job_id("off_s1"), 10, "rejected", -14.0)]


REPORT_COLUMNS = {  # what specc/reports reads: these views keep their columns, in this order
    "runs": ["spec_name", "stage", "job_id", "kind", "status", "sweep", "config", "wall_s", "threads", "method", "loss",
             "beta", "lr", "seed", "replicate", "policy_size", "shuffle_level"],
    "evals": ["job_id", "step", "kl", "win_rate", "win_rate_lo", "win_rate_hi", "classifier_accuracy",
              "self_classifier_accuracy", "logp_chosen", "logp_rejected", "oracle_reward"],
    "kl_vs_winrate": ["spec_name", "stage", "method", "loss", "beta", "lr", "seed", "policy_size", "shuffle_level",
                      "job_id", "step", "kl", "win_rate", "win_rate_lo", "win_rate_hi"],
    "train_curves": ["spec_name", "stage", "method", "job_id", "step", "name", "value"],
}


@pytest.mark.parametrize("view", REPORT_COLUMNS)
def test_the_reports_views_keep_their_columns(workspace, view):
    assert query(workspace, f"SELECT * FROM {view} LIMIT 0")[0] == REPORT_COLUMNS[view]


def test_runs_names_the_methods(workspace):
    assert dict(rows(workspace, "SELECT stage, method FROM runs WHERE stage IN ('tandem', 'shuffled', 'proxy', "
                                "'online_S', 'offline_S')")) == {
        "tandem": "tandem", "shuffled": "tandem-shuffled", "proxy": "preference_model", "online_S": "online",
        "offline_S": "offline"}
