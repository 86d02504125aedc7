"""Spec files -> one validated `Spec`: extends, profiles, overrides, defaults.

Order of layers, later wins: base specs named by `extends`, the file, the
selected profile, command-line overrides. Then `defaults` and the top-level
`evaluate` block are merged under each stage that has those blocks.
All errors of all layers are collected and raised together.
"""

from __future__ import annotations

import copy
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from specc.compiler.schema import STAGE_MODELS, Spec
from specc.compiler.source import Source, load_file, parse_yaml
from specc.errors import Location, SpecError, SpecErrors, did_you_mean

DEFAULTED_BLOCKS = ("model", "train", "loss")
CLI = "<command line>"


def load_spec(path: str | Path, *, profile: str | None = None, overrides: list[str] = ()) -> tuple[Spec, Source]:
    """Read, layer and validate a spec file. Raises SpecErrors listing every problem."""
    source = _load_with_bases(Path(path), seen=())
    if profile is not None:
        source = _apply_profile(source, profile, str(path))
    for item in overrides:
        source = _apply_override(source, item)
    _merge_defaults(source)
    return validate(source), source


def validate(source: Source) -> Spec:
    if not isinstance(source.data, dict):
        loc = source.locate(())
        raise SpecErrors([SpecError(loc, "", "a spec is a mapping with at least `name` and `stages`")])
    try:
        return Spec.model_validate(source.data)
    except ValidationError as exc:
        raise SpecErrors([_to_spec_error(err, source) for err in exc.errors()]) from None


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
        base_path = (path.parent / base).resolve()
        if base_path in seen or base_path == path.resolve():
            raise SpecErrors([SpecError(source.locate(("extends",)), "extends", f"'{base}' extends itself (cycle)")])
        if not base_path.exists():
            loc = source.locate(("extends", i)) if isinstance(source.data["extends"], list) else source.locate(("extends",))
            raise SpecErrors([SpecError(loc, "extends", f"base spec '{base}' not found (looked for {base_path})")])
        merged = _overlay(merged, _load_with_bases(base_path, seen + (path.resolve(),)))
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


def _apply_profile(source: Source, profile: str, file: str) -> Source:
    profiles = source.data.get("profiles") if isinstance(source.data, dict) else None
    if not isinstance(profiles, dict) or profile not in profiles:
        names = list(profiles or {})
        hint = did_you_mean(profile, names) or (f" (profiles: {', '.join(names)})" if names else " (the spec has no profiles)")
        raise SpecErrors([SpecError(Location(CLI, 0, 0), "--profile", f"unknown profile '{profile}'{hint}")])
    prefix = ("profiles", profile)
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
    return _overlay(source, Source(patch, {path[:i]: loc for i in range(1, len(path) + 1)}))


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
        model = STAGE_MODELS.get(stage.get("kind"))
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


def _to_spec_error(err: dict, source: Source) -> SpecError:
    path = _data_path(err["loc"], source.data)
    field = ".".join(str(p) for p in path)
    message = err["msg"]
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(path[:-1], source.data)
        message = f"unknown key '{path[-1]}'{did_you_mean(path[-1], allowed)}"
        if allowed:
            message += f"; expected one of: {', '.join(sorted(allowed))}"
    elif kind == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag", "")
        message = f"unknown stage kind '{tag}'{did_you_mean(tag, STAGE_MODELS)}; expected one of: {', '.join(STAGE_MODELS)}"
        field = field + ".kind" if field else "kind"
    elif kind == "union_tag_not_found":
        message = f"missing `kind`; expected one of: {', '.join(STAGE_MODELS)}"
    elif kind == "missing":
        message = "required field is missing"
    elif kind in ("value_error", "assertion_error"):
        message = message.removeprefix("Value error, ")
    if "input" in err and kind not in ("missing", "extra_forbidden", "union_tag_not_found", "union_tag_invalid"):
        shown = repr(err["input"])
        if len(shown) <= 60 and not isinstance(err["input"], dict):
            message += f" (got {shown})"
    loc = source.locate(path) or Location("<spec>", 0, 0)
    return SpecError(loc, field, message)


def _data_path(loc: tuple, data) -> tuple:
    """Pydantic's loc without its internal parts (union tags, validator names)."""
    path, node = [], data
    for part in loc:
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
                kind = node.get("kind") if isinstance(node, dict) else None
                return STAGE_MODELS.get(kind, Any)
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            ann = models[0] if models else args[0]
        else:
            return ann

