"""A validated spec -> Plan: concrete, content-addressed jobs in topological waves.

Each stage expands into one job per combination of (compatible upstream
jobs) x (its own sweep points). Upstream jobs are compatible when they agree
on every sweep value they share, so sweeping `sft` seeds fans out everything
downstream without crossing seed 0's SFT with seed 1's proxy.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from specc.compiler.graph import Reference, get_path, stage_references, topological_order
from specc.compiler.load import load_spec
from specc.compiler.schema import STAGE_MODELS, ExecutorSettings, Spec
from specc.compiler.source import Source
from specc.compiler.sweeps import (WhereError, compile_where, evaluate_where, set_path, sweep_points,
                                   sweep_size)
from specc.errors import SpecError, SpecErrors

# Bump when a change to the runtime changes what an existing job config computes.
RUNTIME_VERSION = 1
NOT_HASHED = ("description", "sweep")


@dataclass(frozen=True)
class Job:
    id: str
    stage: str
    kind: str
    config: dict  # the stage's resolved config, JSON-ready
    upstream: dict[str, str]  # role ("init", "sampler.offline", ...) -> job id
    upstream_steps: dict[str, int]  # role -> named checkpoint step, where one was referenced
    sweep: dict[str, Any]  # "stage.path" -> value, for every swept value that shaped this job
    wave: int

    def to_json(self) -> dict:
        return {"id": self.id, "stage": self.stage, "kind": self.kind, "config": self.config,
                "upstream": self.upstream, "upstream_steps": self.upstream_steps, "sweep": self.sweep,
                "wave": self.wave, "runtime_version": RUNTIME_VERSION}


@dataclass
class Plan:
    spec: Spec
    spec_path: str
    spec_text: str
    jobs: list[Job] = field(default_factory=list)

    @property
    def executor(self) -> ExecutorSettings:
        return self.spec.executor

    def waves(self) -> list[list[Job]]:
        out: dict[int, list[Job]] = {}
        for job in self.jobs:
            out.setdefault(job.wave, []).append(job)
        return [out[w] for w in sorted(out)]

    def by_id(self) -> dict[str, Job]:
        return {job.id: job for job in self.jobs}


def compile_spec(path: str | Path, *, profile: str | None = None, overrides: list[str] = (),
                 max_jobs: int | None = None) -> Plan:
    """Load, validate and expand a spec. Raises SpecErrors with every problem found."""
    spec, source = load_spec(path, profile=profile, overrides=list(overrides))
    plan = expand(spec, source, max_jobs=max_jobs)
    plan.spec_path = str(path)
    plan.spec_text = Path(path).read_text(encoding="utf-8")
    return plan


@dataclass(frozen=True)
class _Instance:
    job: Job
    context: dict  # "stage.path" -> swept value


def expand(spec: Spec, source: Source, *, max_jobs: int | None = None) -> Plan:
    errors: list[SpecError] = []
    refs = stage_references(spec, source, errors)
    if errors:
        raise SpecErrors(errors)
    limit = max_jobs or spec.max_jobs
    instances: dict[str, list[_Instance]] = {}
    total = 0
    for name in topological_order(refs):
        points = _stage_points(spec, source, name, limit, errors)
        instances[name] = _expand_stage(spec, name, refs[name], points, instances)
        total += len(instances[name])
        if total > limit:
            errors.append(SpecError(source.locate(("stages", name, "sweep")), f"stages.{name}.sweep",
                                    f"the plan grows past {limit} jobs (at least {total}); raise `max_jobs` "
                                    f"or pass --max-jobs if this is intended"))
            break
    if errors:
        raise SpecErrors(errors)
    jobs = {inst.job.id: inst.job for name in instances for inst in instances[name]}
    ordered = sorted(jobs.values(), key=lambda j: (j.wave, list(spec.stages).index(j.stage), j.id))
    return Plan(spec=spec, spec_path="", spec_text="", jobs=ordered)


def _stage_points(spec, source, name, limit, errors) -> list[tuple[dict, dict]]:
    """(validated config, swept values) for each of the stage's own sweep points."""
    stage = spec.stages[name]
    raw = source.data["stages"][name]
    base = ("stages", name, "sweep")
    size = sweep_size(stage.sweep)
    if size > limit:
        errors.append(SpecError(source.locate(base), ".".join(base),
                                f"this sweep alone expands to {size} jobs, past the limit of {limit}; raise `max_jobs` or pass --max-jobs"))
        return []

    def locate(key):
        for where in (base + (key,), base + ("grid", key)):
            if where in source.locations:
                return source.locations[where]
        return source.locate(base)

    seed_path = "train.seed" if "train" in STAGE_MODELS[stage.kind].model_fields else "seed"
    points = sweep_points(stage.sweep, seed_path, locate, errors)
    wheres = []
    for i, text in enumerate(stage.sweep.where if stage.sweep else []):
        try:
            wheres.append((i, compile_where(text)))
        except WhereError as exc:
            errors.append(SpecError(source.locate(base + ("where", i)), f"{'.'.join(base)}.where.{i}", str(exc)))
    unswept = {k: v for k, v in raw.items() if k != "sweep"}
    out = []
    for point in points:
        config_raw = unswept
        for path, value in point.items():
            config_raw = set_path(config_raw, path, value)
        try:
            config = STAGE_MODELS[stage.kind].model_validate(config_raw).model_dump(mode="json")
            if config.get("evaluate", {}).get("baseline") == name:
                config["evaluate"]["baseline"] = None  # against itself = against its init
        except ValidationError as exc:
            for err in exc.errors():
                key = ".".join(str(p) for p in err["loc"])
                errors.append(SpecError(locate(_axis_for(key, point)), f"stages.{name}.sweep",
                                        f"swept value {key}={err.get('input')!r}: {err['msg']}"))
            continue
        keep = True
        for i, tree in wheres:
            try:
                keep = keep and evaluate_where(tree, config)
            except (WhereError, TypeError) as exc:
                errors.append(SpecError(source.locate(base + ("where", i)), f"{'.'.join(base)}.where.{i}", str(exc)))
                wheres = []
                break
        if keep:
            out.append((config, {f"{name}.{k}": v for k, v in point.items()}))
    if points and not out and not errors:
        errors.append(SpecError(source.locate(base), ".".join(base), "`where` drops every point of the sweep"))
    return out


def _axis_for(key: str, point: dict) -> str:
    for path in point:
        if key.startswith(path) or path.startswith(key):
            return path
    return next(iter(point), key)


def _expand_stage(spec, name, stage_refs: list[Reference], points, instances) -> list[_Instance]:
    targets = sorted({ref.stage for ref in stage_refs})
    out = []
    for combo in itertools.product(*(instances[t] for t in targets)):
        context = _join_contexts([inst.context for inst in combo])
        if context is None:
            continue
        chosen = dict(zip(targets, combo))
        upstream = {ref.role: chosen[ref.stage].job.id for ref in stage_refs}
        steps = {ref.role: ref.step for ref in stage_refs if ref.step is not None}
        wave = 1 + max((inst.job.wave for inst in combo), default=-1)
        for config, swept in points:
            job_context = {**context, **swept}
            job_id = job_hash(spec.stages[name].kind, config, upstream, steps)
            job = Job(job_id, name, spec.stages[name].kind, config, upstream, steps, job_context, wave)
            out.append(_Instance(job, job_context))
    return out


def _join_contexts(contexts: list[dict]) -> dict | None:
    joined: dict = {}
    for context in contexts:
        for key, value in context.items():
            if key in joined and joined[key] != value:
                return None
            joined[key] = value
    return joined


def job_hash(kind: str, config: dict, upstream: dict, steps: dict) -> str:
    """Content address: canonical JSON of what determines the job's results.

    Reference fields hold stage names; names are replaced by upstream job ids
    (via `upstream`), so renaming a stage does not change the work."""
    hashed = {k: v for k, v in config.items() if k not in NOT_HASHED}
    for role in upstream:
        hashed = _drop_path(hashed, role)
    payload = {"kind": kind, "config": hashed, "upstream": upstream, "steps": steps, "runtime": RUNTIME_VERSION}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _drop_path(config: dict, role: str) -> dict:
    head, _, rest = role.partition(".")
    if head not in config:
        return config
    out = dict(config)
    if not rest:
        out.pop(head)
    elif isinstance(out[head], dict):
        out[head] = _drop_path(out[head], rest)
    elif isinstance(out[head], list) and rest.isdigit():
        out[head] = [None if i == int(rest) else v for i, v in enumerate(out[head])]
    return out


__all__ = ["Job", "Plan", "compile_spec", "expand", "job_hash", "get_path"]
