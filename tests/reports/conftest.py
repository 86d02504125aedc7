"""Fixtures for the report tests: a real quickstart store (run once per session through the
CLI), small hand-made stores with known numbers, and headless chromium with no network."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ruamel.yaml import YAML

from specc.store.db import connect

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "specs" / "quickstart.yaml"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# The brief's reduced quickstart; the spec's own `smoke` profile (seconds per job) when it has one.
REDUCED = ["stages.sft.train.steps=40", "stages.offline.train.steps=30", "stages.offline.train.eval_every=10"]


def specc(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from specc.cli import main; main()", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def quickstart_workspace(tmp_path_factory) -> Path:
    """A workspace where the quickstart has run (debug executor, reduced steps) and reported."""
    root = tmp_path_factory.mktemp("quickstart")
    workspace = root / "runs"
    profiles = YAML(typ="safe").load(QUICKSTART.read_text()).get("profiles") or {}
    profile = ["--profile", "smoke"] if "smoke" in profiles else REDUCED
    done = specc("run", str(QUICKSTART), "--executor", "debug", "--workspace", str(workspace), *profile, cwd=root)
    assert done.returncode == 0, f"quickstart run failed:\n{done.stdout}\n{done.stderr}"
    assert (workspace / "reports" / "quickstart.html").exists(), done.stdout
    return workspace


@pytest.fixture(scope="session")
def quickstart_report(quickstart_workspace) -> Path:
    return quickstart_workspace / "reports" / "quickstart.html"


@pytest.fixture(scope="session")
def full_design_workspace(tmp_path_factory) -> tuple[Path, str]:
    """The benchmark's synthetic store at 10,000 rows: every method, two losses, three sizes, two
    offline datasets, three shuffle levels. Returns (workspace, spec name)."""
    import importlib.util

    module_spec = importlib.util.spec_from_file_location("bench_report", REPO / "benchmarks" / "bench_report.py")
    bench = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(bench)
    workspace = tmp_path_factory.mktemp("full_design") / "runs"
    workspace.mkdir()
    bench.build_store(workspace, 10_000)
    return workspace, bench.SPEC


# --- hand-made stores ---------------------------------------------------------------------------

class StoreBuilder:
    """Writes a spec's jobs and metrics straight into a store with the real schema."""

    def __init__(self, workspace: Path, spec: str = "hand"):
        self.workspace, self.spec = workspace, spec
        self.jobs, self.metrics = [], []
        self.add("task", "dataset", {"kind": "dataset"})
        self.add("golden", "oracle", {"kind": "oracle"})
        self.add("golden_data", "label", {"kind": "label"})
        self.add("sft", "sft", {"kind": "sft"})
        self.add("proxy", "preference_model", {"kind": "preference_model"})

    def add(self, stage: str, kind: str, config: dict, upstream: dict | None = None, job_id: str | None = None,
            sweep: dict | None = None) -> str:
        job_id = job_id or f"{stage}-{len(self.jobs):04d}"
        self.jobs.append([job_id, kind, stage, json.dumps(config), json.dumps(upstream or {}), json.dumps(sweep or {}),
                          "done", 1.0, 2.0, 1.0, "testhost", 1, 1, None, None])
        return job_id

    def align(self, stage: str, sampler: dict, *, loss="ipo", seed=0, size="S", shuffle=0.0, beta=0.1,
              job_id=None) -> str:
        ids = {j[2]: j[0] for j in self.jobs}
        upstream = {"init": ids["sft"], "prompts": ids["task"], "evaluate.judge": ids["golden"],
                    "evaluate.pairs": ids["golden_data"]}
        config_sampler = {"online": None, "offline": None, "replay": None, "shuffle": shuffle}
        for role, target in sampler.items():
            upstream[f"sampler.{role}"] = target if role == "replay" else ids[target]
            config_sampler[role] = target
        config = {"kind": "align", "sampler": config_sampler, "loss": {"name": loss, "beta": beta},
                  "train": {"seed": seed, "lr": 1e-4}, "model": {"size": size},
                  "evaluate": {"classifier_pairs": 256, "kl_prompts": 256, "win_prompts": 512}}
        return self.add(stage, "align", config, upstream, job_id)

    def evals(self, job_id: str, points: list[dict]) -> None:
        """points: [{step, kl, win_rate, ...}]; win_rate gets a +-0.02 interval unless given."""
        for point in points:
            point = dict(point)
            step = point.pop("step")
            if "win_rate" in point:
                point.setdefault("win_rate_lo", point["win_rate"] - 0.02)
                point.setdefault("win_rate_hi", point["win_rate"] + 0.02)
            self.metrics += [[job_id, step, f"eval/{name}", float(value)] for name, value in point.items()]

    def outcomes(self, job_id: str, points: list[dict], items: int = 512, seed: int = 0) -> None:
        """Per-prompt wins behind each point's win_rate (outcome/win/<item>), shuffled with a fixed seed."""
        rng = np.random.default_rng(seed)
        for point in points:
            wins = (np.arange(items) < round(point["win_rate"] * items)).astype(float)
            rng.shuffle(wins)
            self.metrics += [[job_id, point["step"], f"outcome/win/{i:05d}", v] for i, v in enumerate(wins)]

    def curve(self, job_id: str, name: str, values) -> None:
        self.metrics += [[job_id, step, name, float(v)] for step, v in enumerate(values, start=1)]

    def write(self) -> Path:
        with connect(self.workspace) as con:
            con.execute("INSERT INTO specs VALUES (?, ?, ?, ?)", [self.spec, "hand.yaml", "name: hand\n", time.time()])
            con.executemany("INSERT INTO spec_jobs (spec_name, job_id, stage) VALUES (?, ?, ?)", [[self.spec, j[0], j[2]] for j in self.jobs])
            con.executemany("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", self.jobs)
            if self.metrics:  # executemany inserts row by row: seconds for a few thousand rows
                rows = pd.DataFrame(self.metrics, columns=["job_id", "step", "name", "value"])
                con.register("new_metrics", rows)
                con.execute("INSERT INTO metrics SELECT job_id, step, name, value FROM new_metrics")
        return self.workspace


@pytest.fixture
def store(tmp_path) -> StoreBuilder:
    return StoreBuilder(tmp_path / "runs")


# --- the browser --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    """Debian's chromium, headless, driven by Playwright (no browser download)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[test])")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class OfflinePage:
    """A page where every request other than the file:// page itself is aborted and recorded,
    and console errors, page errors and dialogs are recorded."""

    def __init__(self, browser, path: Path):
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.url = path.resolve().as_uri()
        self.blocked, self.errors, self.dialogs = [], [], []
        self.requested = []  # every request the page made, routed or not
        self.context.route("**/*", self._route)
        self.page.on("request", lambda r: self.requested.append(r.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("dialog", self._dialog)

    def _route(self, route):
        if route.request.url == self.url:
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    @property
    def network_requests(self) -> list[str]:
        """Requests that would have left the machine (or been blocked trying)."""
        return self.blocked + [u for u in self.requested if u != self.url and not u.startswith(("data:", "blob:"))
                               and u not in self.blocked]

    def _dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, timeout_ms: int = 60_000):
        self.page.goto(self.url)
        self.page.wait_for_function(
            "Array.from(document.querySelectorAll('.chart')).every(el => el.dataset.rendered)", timeout=timeout_ms)
        return self.page

    def close(self):
        self.context.close()


@pytest.fixture
def offline_page(browser):
    pages = []

    def open_page(path: Path) -> OfflinePage:
        pages.append(OfflinePage(browser, path))
        return pages[-1]

    yield open_page
    for page in pages:
        page.close()
