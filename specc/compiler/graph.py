"""Stage references -> a checked DAG of stages.

A reference is a stage name, optionally with a checkpoint step: `online@800`.
Which fields are references, and which stage kinds each may name, is the
table below; everything else about the graph (cycles, dangling names, replay
of a non-online stage, a checkpoint step never saved) is checked here.
"""

from __future__ import annotations

from dataclasses import dataclass

from specc.compiler.source import Source
from specc.contracts import SAMPLERS
from specc.errors import SpecError, did_you_mean

POLICY = ("sft", "align")
JUDGE = ("oracle", "preference_model")
PAIR_DATA = ("dataset", "label", "pairs")

# kind -> {field path: stage kinds it may name}
REFERENCE_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "dataset": {},
    "oracle": {"data": ("dataset",)},
    "label": {"data": PAIR_DATA, "judge": JUDGE},
    "sft": {"data": PAIR_DATA},
    "preference_model": {"data": PAIR_DATA, "init": POLICY + ("preference_model",)},
    "align": {
        "init": POLICY,
        **{f"sampler.{name}": sampler.names for name, sampler in SAMPLERS.items()},
        "evaluate.baseline": POLICY,
        "evaluate.judge": JUDGE,
        "evaluate.pairs": PAIR_DATA,
        "prompts": ("dataset",),
    },
    "pairs": {"a": POLICY, "b": POLICY, "judge": JUDGE, "prompts": ("dataset",)},
}
CHECKPOINT_FIELDS = {"init", "a", "b", "evaluate.baseline"}  # where `stage@step` is allowed


@dataclass(frozen=True)
class Reference:
    role: str  # field path, with an index for lists: "data.1"
    stage: str
    step: int | None  # a named checkpoint, None = the stage's final output


def get_path(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part, None) if not isinstance(obj, dict) else obj.get(part)
        if obj is None:
            return None
    return obj


def parse_reference(text: str) -> tuple[str, int | None] | None:
    name, sep, step = text.partition("@")
    if not sep:
        return name, None
    return (name, int(step)) if step.isascii() and step.isdigit() else None


def stage_references(stages: dict, source: Source, errors: list[SpecError],
                     declared=None) -> dict[str, list[Reference]]:
    """Resolve and check every reference of the valid `stages`; infer `prompts` where it is unique.

    `declared` names every stage written in the spec, including ones that failed
    validation: a reference to one of those is not reported again."""
    declared = set(stages) if declared is None else set(declared)
    found_before = len(errors)
    refs: dict[str, list[Reference]] = {}
    for name, stage in stages.items():
        refs[name] = []
        for field, kinds in REFERENCE_FIELDS[stage.kind].items():
            value = get_path(stage, field)
            values = value if isinstance(value, list) else [value]
            for i, text in enumerate(values):
                if text is None:
                    continue
                role = f"{field}.{i}" if isinstance(value, list) else field
                where = ("stages", name) + tuple(role.split("."))
                ref = _check_reference(stages, declared, name, role, field, text, kinds, source, where, errors)
                if ref is not None:
                    refs[name].append(ref)
    _check_cycles(refs, source, errors)
    if len(errors) == found_before and declared == set(stages):
        _infer_prompts(stages, refs, source, errors)  # with a broken graph, "no dataset upstream" is noise
    return refs


def _check_reference(stages, declared, name, role, field, text, kinds, source, where, errors) -> Reference | None:
    loc = source.locate(where)
    dotted = ".".join(str(p) for p in where)
    parsed = parse_reference(text)
    if parsed is None:
        errors.append(SpecError(loc, dotted, f"bad reference '{text}': expected a stage name or stage@step, "
                                             "with step a whole number >= 0"))
        return None
    target, step = parsed
    if target not in stages:
        if target not in declared:
            errors.append(SpecError(loc, dotted, f"unknown stage '{target}'{did_you_mean(target, declared)}"))
        return None
    target_kind = stages[target].kind
    if target_kind not in kinds:
        errors.append(SpecError(loc, dotted, f"'{target}' is a {target_kind} stage; expected a stage of kind {' or '.join(kinds)}"))
        return None
    if field == "evaluate.baseline" and target == name:
        return None  # "evaluate against myself" means: against my init (the golden policy's case)
    if step is not None:
        if field not in CHECKPOINT_FIELDS:
            errors.append(SpecError(loc, dotted, f"a checkpoint step (@{step}) is not allowed in {field}"))
            return None
        train = stages[target].train
        saved = set(train.save_at) | {train.steps}
        # a swept target may save the step at some points only: plan.py checks each job it builds
        if step not in saved and stages[target].sweep is None:
            errors.append(SpecError(loc, dotted, f"'{target}' never saves step {step}: it saves {sorted(saved)} (add {step} to its train.save_at)"))
            return None
    if field == "init" and _judge_cannot_start_from(stages[name], stages[target]):
        errors.append(SpecError(loc, dotted, f"'{name}' is a size {stages[name].model.size} judge; it cannot start "
                                             f"from '{target}', a size {stages[target].model.size} policy (a tiny "
                                             f"judge copies its policy's layers): give both the same model.size, "
                                             f"or drop init"))
        return None
    if field == "sampler.replay" and stages[target].sampler.online is None:
        errors.append(SpecError(loc, dotted, f"'{target}' is not an online stage: only an online align stage records a stream to replay"))
        return None
    return Reference(role, target, step)


def _judge_cannot_start_from(stage, target) -> bool:
    """A tiny preference model initialised from a tiny SFT policy of another size (unswept:
    a sweep may change either size, and the runtime checks each job)."""
    if stage.kind != "preference_model" or target.kind != "sft" or stage.sweep or target.sweep:
        return False
    return (stage.model.family == target.model.family == "tiny") and stage.model.size != target.model.size


def _check_cycles(refs, source, errors) -> None:
    """Depth-first search without recursion (a spec may chain many stages); each back edge is a loop."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for root in refs:
        if root in state:
            continue
        state[root] = 1
        trail, stack = [root], [iter(refs[root])]
        while stack:
            ref = next(stack[-1], None)
            if ref is None:
                state[trail.pop()] = 2
                stack.pop()
                continue
            name = trail[-1]
            if state.get(ref.stage) == 1:
                cycle = trail[trail.index(ref.stage):] + [ref.stage]
                where = ("stages", name) + tuple(ref.role.split("."))
                errors.append(SpecError(source.locate(where), ".".join(map(str, where)),
                                        f"references form a loop: {' -> '.join(cycle)} (cycle)"))
            elif ref.stage not in state:
                state[ref.stage] = 1
                trail.append(ref.stage)
                stack.append(iter(refs[ref.stage]))


def _infer_prompts(stages, refs, source, errors) -> None:
    """Align and pairs stages sample prompts: from `prompts`, or the one dataset upstream."""
    for name, stage in stages.items():
        if stage.kind not in ("align", "pairs") or stage.prompts is not None:
            continue
        datasets = sorted(_dataset_ancestors(name, stages, refs))
        if len(datasets) == 1:
            refs[name].append(Reference("prompts", datasets[0], None))
        else:
            why = "none found upstream" if not datasets else f"several upstream: {', '.join(datasets)}"
            errors.append(SpecError(source.locate(("stages", name)), f"stages.{name}.prompts",
                                    f"which dataset's prompts? set `prompts` ({why})"))


def _dataset_ancestors(name, stages, refs) -> set[str]:
    found, seen, todo = set(), {name}, [name]
    while todo:
        current = todo.pop()
        if stages[current].kind == "dataset":
            found.add(current)
            continue
        for ref in refs[current]:
            # the judge or baseline does not decide the task
            if not ref.role.startswith("evaluate.") and ref.stage not in seen:
                seen.add(ref.stage)
                todo.append(ref.stage)
    return found


def topological_order(refs: dict[str, list[Reference]]) -> list[str]:
    """Upstream first; `refs` must be free of cycles."""
    order, done = [], set()
    for root in refs:
        stack = [(root, False)]
        while stack:
            name, expanded = stack.pop()
            if expanded:
                order.append(name)
            elif name not in done:
                done.add(name)
                stack.append((name, True))
                stack.extend((ref.stage, False) for ref in reversed(refs[name]))
    return order


__all__ = ["Reference", "REFERENCE_FIELDS", "stage_references", "topological_order"]
