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

from specc.compiler.graph import Reference, get_path, stage_references, topological_order
from specc.compiler.inputs import input_digests
from specc.compiler.load import declared_stages, load_source, validate_partially
from specc.compiler.points import stage_points
from specc.compiler.schema import RANKED_KINDS, ExecutorSettings, Spec
from specc.compiler.source import Source
from specc.contracts import RUNTIME_VERSION
from specc.errors import Location, SpecError, SpecErrors, did_you_mean

NOT_HASHED = ("description", "sweep")
# train settings that are part of a job's identity only when set (jobs planned before they
# existed keep their ids), and one that never is (it changes what is kept, not what is computed)
TRAIN_HASHED_WHEN_SET = {"micro_batch_size": None, "grad_checkpointing": False}
TRAIN_NOT_HASHED = ("keep_optimizer_state",)
# sampling settings at the value that reproduces the old behaviour, in any block: left out
# of the hash there, so existing jobs keep their ids
HASHED_UNLESS_DEFAULT = {"engine": "hf", "sync_every": 1}
# one encoder for every hash: building one per call costs a fifth of the time on big sweeps
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


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
    source = load_source(path, profile=profile, overrides=list(overrides))
    spec, stages, errors = validate_partially(source)
    plan = _expand(spec, stages, declared_stages(source), source, max_jobs, errors)
    plan.spec_path = str(path)
    plan.spec_text = Path(path).read_text(encoding="utf-8")
    return plan


def profile_errors(plan: Plan, *, overrides: list[str] = (), max_jobs: int | None = None) -> list[SpecError]:
    """The errors each of the spec's profiles adds, so a typo in a profile is found before
    anyone selects it; each message names its profile."""
    errors: list[SpecError] = []
    for name in plan.spec.profiles:
        try:
            compile_spec(plan.spec_path, profile=name, overrides=overrides, max_jobs=max_jobs)
        except SpecErrors as exc:
            errors += [SpecError(e.location, e.field, f"with --profile {name}: {e.message}") for e in exc.errors]
    return errors


@dataclass(frozen=True)
class _Instance:
    job: Job
    context: dict  # "stage.path" -> swept value


def _expand(spec: Spec | None, stages: dict, declared, source: Source, max_jobs: int | None,
            errors: list[SpecError]) -> Plan:
    """Check the graph and every sweep of the valid `stages`, then (if all is well) build the jobs."""
    if max_jobs is not None and max_jobs < 1:
        raise SpecErrors([SpecError(Location("<command line>", 0, 0), "--max-jobs", f"must be at least 1, got {max_jobs}")])
    refs = stage_references(stages, source, errors, declared=declared)
    if spec is not None:
        for name in spec.executor.stages:  # per-stage resources must name a stage
            if name not in declared:
                errors.append(SpecError(source.locate(("executor", "stages", name)), f"executor.stages.{name}",
                                        f"unknown stage '{name}'{did_you_mean(name, declared)}"))
    limit = max_jobs or (spec.max_jobs if spec else Spec.model_fields["max_jobs"].default)
    points = {name: stage_points(stage, name, source, limit, errors) for name, stage in stages.items()}
    if errors or spec is None:
        raise SpecErrors(errors)
    instances: dict[str, list[_Instance]] = {}
    total = 0
    for name in topological_order(refs):
        instances[name] = _expand_stage(spec, name, refs[name], points[name], instances, budget=limit - total,
                                        source=source)
        total += len(instances[name])
        if total > limit:
            raise SpecErrors([SpecError(source.locate(("stages", name)), f"stages.{name}",
                                        f"the plan grows to at least {total} jobs here (sweeps upstream fan out), "
                                        f"past the limit of {limit}; raise `max_jobs` or pass --max-jobs if this is intended")])
    jobs = {inst.job.id: inst.job for name in instances for inst in instances[name]}
    order = {name: i for i, name in enumerate(spec.stages)}
    ordered = sorted(jobs.values(), key=lambda j: (j.wave, order[j.stage], j.id))
    _check_batch_shares(spec, ordered, source)
    return Plan(spec=spec, spec_path="", spec_text="", jobs=ordered)


def _check_batch_shares(spec: Spec, jobs: list[Job], source: Source) -> None:
    """A job of several ranks splits every batch into equal shares (runtime.distributed)."""
    if spec.executor.kind != "slurm":
        return
    errors = {}
    for job in jobs:
        nodes, per_node, _ = spec.executor.for_stage(job.stage).layout()
        batch = job.config.get("train", {}).get("batch_size")
        if job.kind in RANKED_KINDS and batch and batch % (nodes * per_node) and job.stage not in errors:
            path = ("executor", "stages", job.stage) if job.stage in spec.executor.stages else ("executor",)
            errors[job.stage] = SpecError(source.locate(path), f"executor.stages.{job.stage}",
                                          f"{nodes * per_node} ranks cannot share stage {job.stage}'s "
                                          f"train.batch_size {batch} equally: make it a multiple of {nodes * per_node}")
    if errors:
        raise SpecErrors(list(errors.values()))


def _expand_stage(spec, name, stage_refs: list[Reference], points, instances, budget: int,
                  source: Source | None = None) -> list[_Instance]:
    """Jobs of one stage; stops once past `budget` (the caller reports the limit)."""
    targets = sorted({ref.stage for ref in stage_refs})
    kind = spec.stages[name].kind
    steps = {ref.role: ref.step for ref in stage_refs if ref.step is not None}
    out = []
    for combo in itertools.product(*(instances[t] for t in targets)):
        context = _join_contexts([inst.context for inst in combo])
        if context is None:
            continue
        chosen = dict(zip(targets, combo))
        _check_saved_steps(name, stage_refs, chosen, source)
        upstream = {ref.role: chosen[ref.stage].job.id for ref in stage_refs}
        wave = 1 + max((inst.job.wave for inst in combo), default=-1)
        for config, swept in points:
            job_context = {**context, **swept}
            inputs = input_digests(name, config, source)
            job = Job(job_hash(kind, config, upstream, steps, inputs), name, kind, config, upstream, steps,
                      job_context, wave)
            out.append(_Instance(job, job_context))
        if len(out) > budget:
            break
    return out


def _check_saved_steps(name: str, stage_refs: list[Reference], chosen: dict, source: Source | None) -> None:
    """`stage@step` must name a checkpoint the referenced job saves, at every point of its sweep."""
    for ref in stage_refs:
        if ref.step is None:
            continue
        train = chosen[ref.stage].job.config.get("train", {})
        saved = set(train.get("save_at", [])) | {train.get("steps")}
        if ref.step not in saved:
            swept = ", ".join(f"{k}={v}" for k, v in chosen[ref.stage].context.items()) or "unswept"
            where = ("stages", name, *ref.role.split("."))
            location = source.locate(where) if source else Location("<spec>", 0, 0)
            raise SpecErrors([SpecError(location, ".".join(where),
                                        f"'{ref.stage}' ({swept}) never saves step {ref.step}: it saves "
                                        f"{sorted(saved)} (add {ref.step} to its train.save_at)")])


def _join_contexts(contexts: list[dict]) -> dict | None:
    joined: dict = {}
    for context in contexts:
        for key, value in context.items():
            if key in joined and joined[key] != value:
                return None
            joined[key] = value
    return joined


def job_hash(kind: str, config: dict, upstream: dict, steps: dict, inputs: dict | None = None) -> str:
    """Content address: canonical JSON of what determines the job's results.

    Reference fields hold stage names; names are replaced by upstream job ids
    (via `upstream`), so renaming a stage does not change the work. `inputs` holds the
    digests of local files and folders the job reads (compiler.inputs): edited content is a
    new job."""
    hashed = _without_defaults({k: v for k, v in config.items() if k not in NOT_HASHED})
    if isinstance(hashed.get("train"), dict):
        hashed["train"] = {k: v for k, v in hashed["train"].items()
                           if k not in TRAIN_NOT_HASHED and TRAIN_HASHED_WHEN_SET.get(k, ...) != v}
    for role in upstream:
        hashed = _drop_path(hashed, role)
    payload = {"kind": kind, "config": hashed, "upstream": upstream, "steps": steps, "runtime": RUNTIME_VERSION}
    if inputs:  # only jobs that read files carry it: every other job id stays what it was
        payload["inputs"] = inputs
    return hashlib.sha256(_CANONICAL_JSON.encode(payload).encode()).hexdigest()[:16]


def _without_defaults(config: dict) -> dict:
    return {k: _without_defaults(v) if isinstance(v, dict) else v for k, v in config.items()
            if not (k in HASHED_UNLESS_DEFAULT and v == HASHED_UNLESS_DEFAULT[k])}


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


__all__ = ["Job", "Plan", "compile_spec", "job_hash", "get_path"]
