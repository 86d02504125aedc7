"""Spec files -> one validated `Spec`: extends, profiles, overrides, defaults.

Order of layers, later wins: base specs named by `extends`, the file, the
selected profile, command-line overrides. Then `defaults` and the top-level
`evaluate` block are merged under each stage that has those blocks.
All errors of all layers are collected and raised together.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from specc.compiler.schema import STAGE_MODELS, STAGE_NAME_PATTERN, Spec
from specc.compiler.source import Source, load_file, parse_yaml
from specc.errors import Location, SpecError, SpecErrors, did_you_mean

DEFAULTED_BLOCKS = ("model", "train", "loss")
CLI = "<command line>"


def load_source(path: str | Path, *, profile: str | None = None, overrides: list[str] = ()) -> Source:
    """Read and layer a spec file, unvalidated. Raises SpecErrors if a layer cannot be read."""
    source = _load_with_bases(Path(path), seen=())
    if profile is not None:
        source = _apply_profile(source, profile)
    for item in overrides:
        source = _apply_override(source, item)
    _merge_defaults(source)
    return source


def validate_partially(source: Source) -> tuple[Spec | None, dict[str, Any], list[SpecError]]:
    """The spec (None if invalid), every stage that is valid on its own, and every error.

    The valid stages let the graph be checked even when some other part of the
    spec is wrong, so one run reports all of a file's errors."""
    if not isinstance(source.data, dict):
        loc = source.locate(())
        return None, {}, [SpecError(loc, "", "a spec is a mapping with at least `name` and `stages`")]
    try:
        spec = Spec.model_validate(source.data)
        return spec, dict(spec.stages), []
    except ValidationError as exc:
        errors = _to_spec_errors(exc.errors(), source)
    stages = {}
    for name, raw in declared_stages(source).items():
        model = _stage_model(raw)
        if model is None or not re.fullmatch(STAGE_NAME_PATTERN, name):
            continue
        try:
            stages[name] = model.model_validate(raw)
        except ValidationError:
            pass  # reported above, as part of the whole spec
    return None, stages, errors


def declared_stages(source: Source) -> dict[str, Any]:
    """Every stage written in the spec, valid or not: name -> raw mapping."""
    stages = source.data.get("stages") if isinstance(source.data, dict) else None
    return stages if isinstance(stages, dict) else {}


def _stage_model(raw) -> type[BaseModel] | None:
    kind = raw.get("kind") if isinstance(raw, dict) else None
    return STAGE_MODELS.get(kind) if isinstance(kind, str) else None


# -- layering -----------------------------------------------------------------


def _load_with_bases(path: Path, seen: tuple) -> Source:
    source = load_file(path)
    if not isinstance(source.data, dict) or "extends" not in source.data:
        return source
    bases = source.data["extends"]
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise SpecErrors([SpecError(source.locate(("extends",)), "extends", "expected a file name or a list of them")])
    merged = Source({}, {})
    for i, base in enumerate(bases):
        base_path = path.parent / base
        where = ("extends", i) if isinstance(source.data["extends"], list) else ("extends",)
        loc, field = source.locate(where), ".".join(map(str, where))
        if base_path.resolve() in seen or base_path.resolve() == path.resolve():
            raise SpecErrors([SpecError(loc, field, f"'{base}' extends itself (cycle)")])
        if not base_path.is_file():
            raise SpecErrors([SpecError(loc, field, f"base spec '{base}' not found (looked for {base_path.resolve()})")])
        base_source = _load_with_bases(base_path, seen + (path.resolve(),))
        if not isinstance(base_source.data, dict):
            raise SpecErrors([SpecError(loc, field, f"base spec '{base}' is not a mapping of spec keys")])
        merged = _overlay(merged, base_source)
    own = Source({k: v for k, v in source.data.items() if k != "extends"}, source.locations)
    return _overlay(merged, own)


def _overlay(base: Source, top: Source) -> Source:
    data = _deep_merge(copy.deepcopy(base.data), top.data)
    return Source(data, {**base.locations, **top.locations})


def _deep_merge(base, top):
    if isinstance(base, dict) and isinstance(top, dict):
        for key, value in top.items():
            base[key] = _deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return base
    return copy.deepcopy(top)


def _apply_profile(source: Source, profile: str) -> Source:
    profiles = source.data.get("profiles") if isinstance(source.data, dict) else None
    if not isinstance(profiles, dict) or profile not in profiles:
        names = list(profiles) if isinstance(profiles, dict) else []
        hint = did_you_mean(profile, names) or (f" (profiles: {', '.join(names)})" if names else " (the spec has no profiles)")
        raise SpecErrors([SpecError(Location(CLI, 0, 0), "--profile", f"unknown profile '{profile}'{hint}")])
    prefix = ("profiles", profile)
    if not isinstance(profiles[profile], dict):
        raise SpecErrors([SpecError(source.locate(prefix), f"profiles.{profile}",
                                    "a profile is a mapping of spec keys to overlay, e.g. {stages: {sft: {train: {steps: 10}}}}")])
    locations = {p[2:]: loc for p, loc in source.locations.items() if p[:2] == prefix}
    return _overlay(source, Source(profiles[profile], locations))


def _apply_override(source: Source, item: str) -> Source:
    key, sep, raw_value = item.partition("=")
    loc = Location(CLI, 0, 0)
    if not sep or not key.strip():
        raise SpecErrors([SpecError(loc, item, "an override is key.path=value, e.g. stages.offline.train.lr=3e-4")])
    try:
        value = parse_yaml(raw_value or "null", CLI).data
    except SpecErrors:
        value = raw_value
    path = tuple(key.strip().split("."))
    patch: Any = value
    for part in reversed(path):
        patch = {part: patch}
    # locate the overridden value on the command line, but keep the file's positions of its parents
    locations = {path[:i]: loc for i in range(1, len(path)) if path[:i] not in source.locations}
    return _overlay(source, Source(patch, {**locations, path: loc}))


def _merge_defaults(source: Source) -> None:
    data = source.data
    if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
        return
    defaults = data.get("defaults") if isinstance(data.get("defaults"), dict) else {}
    blocks = {b: (defaults.get(b), ("defaults", b)) for b in DEFAULTED_BLOCKS}
    blocks["evaluate"] = (data.get("evaluate"), ("evaluate",))
    for name, stage in data["stages"].items():
        if not isinstance(stage, dict):
            continue
        model = _stage_model(stage)
        for block, (values, origin) in blocks.items():
            if not isinstance(values, dict) or not values or model is None or block not in model.model_fields:
                continue
            own = stage.get(block, {})
            if not isinstance(own, dict):
                continue
            stage[block] = {**copy.deepcopy(values), **own}
            for key in values:
                path = ("stages", name, block, key)
                source.locations.setdefault(path, source.locate(origin + (key,)))


# -- pydantic errors -> located errors ------------------------------------------


def _to_spec_errors(errors: list[dict], source: Source) -> list[SpecError]:
    """One located error per field and per mistake.

    A union's alternatives (`data: str | list`) become one message; a wrong
    default merged into many stages is reported once, as the default."""
    merged: dict[tuple, SpecError] = {}
    seen: set[tuple] = set()
    for err in errors:
        error = _to_spec_error(err, source)
        key = (error.location, error.field)
        if key in merged:
            if error.message not in merged[key].message:
                merged[key] = SpecError(error.location, error.field, f"{merged[key].message}; or: {error.message}")
        elif (error.location, error.message, error.field.rpartition(".")[2]) not in seen:
            merged[key] = error
        seen.add((error.location, error.message, error.field.rpartition(".")[2]))
    return list(merged.values())


def _to_spec_error(err: dict, source: Source) -> SpecError:
    path = _data_path(err["loc"], source.data)
    message, kind = err["msg"], err["type"]
    show_input = kind not in ("missing", "extra_forbidden", "union_tag_not_found", "union_tag_invalid")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(path[:-1], source.data)
        message = f"unknown key '{path[-1]}'{did_you_mean(path[-1], allowed)}"
        if allowed:
            message += f"; expected one of: {', '.join(sorted(allowed))}"
    elif kind == "union_tag_invalid":
        path += ("kind",)
        tag = err["input"].get("kind") if isinstance(err.get("input"), dict) else None
        shown = f"'{tag}'{did_you_mean(tag, STAGE_MODELS)}" if isinstance(tag, str) else f"{tag!r} (not a name)"
        message = f"unknown stage kind {shown}; expected one of: {', '.join(STAGE_MODELS)}"
    elif kind == "union_tag_not_found":
        message = f"missing `kind`; expected one of: {', '.join(STAGE_MODELS)}"
    elif kind == "missing":
        message = "required field is missing"
    elif kind in ("value_error", "assertion_error"):
        message = message.removeprefix("Value error, ")
    elif err["loc"][-1:] == ("[key]",) and err["loc"][:1] == ("stages",):
        message = (f"stage name {path[-1]!r} is not allowed: use letters, digits, _ and -, starting with a letter or _ "
                   "(references use @, sweeps use .)")
        show_input = False
    if show_input and "input" in err:
        shown = repr(err["input"])
        if len(shown) <= 60 and not isinstance(err["input"], dict):
            message += f" (got {shown})"
    return SpecError(source.locate(path) or Location("<spec>", 0, 0), ".".join(str(p) for p in path), message)


def _data_path(loc: tuple, data) -> tuple:
    """Pydantic's loc without its internal parts (union tags, validator names)."""
    path, node = [], data
    for part in loc:
        if part == "[key]":
            continue  # the error is about the key itself, e.g. a stage name
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and part not in STAGE_MODELS and not part.startswith(("function-", "union[")):
            path.append(part)  # a missing field: name it
            node = None
    return tuple(path)


def _allowed_keys(path: tuple, data) -> list[str]:
    """Field names of the model that validates the mapping at `path`."""
    ann: Any = Spec
    node = data
    for part in path:
        ann = _unwrap(ann, node)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            if part not in ann.model_fields:
                return []
            ann = ann.model_fields[part].annotation
        else:
            args = typing.get_args(ann)
            ann = args[-1] if args else Any
        node = node.get(part) if isinstance(node, dict) else (node[part] if isinstance(node, list) else None)
    ann = _unwrap(ann, node)
    return list(ann.model_fields) if isinstance(ann, type) and issubclass(ann, BaseModel) else []


def _unwrap(ann, node):
    """Strip Optional/Annotated; pick the stage model by the node's `kind`."""
    while True:
        origin = typing.get_origin(ann)
        if origin is typing.Annotated:
            ann = typing.get_args(ann)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            stage_models = [a for a in args if a in STAGE_MODELS.values()]
            if stage_models:
                return _stage_model(node) or Any
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            ann = models[0] if models else args[0]
        else:
            return ann

