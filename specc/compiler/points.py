"""One stage's sweep -> its points: (validated config, swept values), `where` applied.

Validating the whole stage once per point is the compiler's main cost on big
sweeps. A point that only sets fields inside blocks (`train.lr`, `loss.beta`)
re-validates just those blocks, each distinct block value once, and reuses the
rest of the stage: the result is the same, because stage models have no
validators across blocks. Anything else (a swept top-level field, a stage with
its own validator) is validated whole.

Configs share their unswept blocks: treat them as read-only.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from specc.compiler.schema import STAGE_MODELS
from specc.compiler.sweeps import (WhereError, compile_where, evaluate_where, set_path, sweep_axes, sweep_points,
                                   sweep_size)
from specc.errors import SpecError, did_you_mean


def stage_points(stage, name: str, source, limit: int, errors: list[SpecError]) -> list[tuple[dict, dict]]:
    """(validated config, {"stage.path": value}) for each of the stage's own sweep points."""
    base = ("stages", name, "sweep")

    def locate(rel: tuple):
        """Where a sweep-relative path was written: grid axes may be written at the top (shorthand)."""
        candidates = [base + rel] + ([base + rel[1:]] if rel[:1] == ("grid",) else [])
        where = next((c for c in candidates if c in source.locations), candidates[-1])
        return source.locate(where), ".".join(map(str, where))

    size = sweep_size(stage.sweep)
    if size > limit:
        before = " (before `where` filters)" if stage.sweep.where else ""
        errors.append(SpecError(source.locate(base), ".".join(base),
                                f"this sweep expands to {size} jobs{before}, past the limit of {limit}; "
                                "raise `max_jobs` or pass --max-jobs if this is intended"))
        return []
    model = STAGE_MODELS[stage.kind]
    seed_path = "train.seed" if "train" in model.model_fields else "seed"
    found_before = len(errors)
    axes = sweep_axes(stage.sweep, model.model_fields, seed_path, locate, errors)
    points = sweep_points(stage.sweep, model.model_fields, seed_path, locate, errors)
    wheres = []
    for i, text in enumerate(stage.sweep.where if stage.sweep else []):
        try:
            wheres.append((i, compile_where(text)))
        except WhereError as exc:
            errors.append(SpecError(*locate(("where", i)), str(exc)))
    resolver = _Resolver(model, name, {k: v for k, v in source.data["stages"][name].items() if k != "sweep"})
    out = []
    for point in points:
        config, problems = resolver.resolve(point)
        for err in problems:
            errors.append(_swept_error(err, model, point, axes, locate))
        if config is None or len(errors) > found_before:
            continue  # still check every point, but a broken sweep keeps no jobs
        for i, tree in wheres:
            try:
                keep = evaluate_where(tree, config)
            except WhereError as exc:
                errors.append(SpecError(*locate(("where", i)), str(exc)))
                return []
            if not keep:
                break
        else:
            out.append((config, {f"{name}.{k}": v for k, v in point.items()}))
    if points and not out and len(errors) == found_before:
        errors.append(SpecError(source.locate(base), ".".join(base), "`where` drops every point of the sweep"))
    return out


class _Resolver:
    """Validated configs of one stage at its sweep points."""

    def __init__(self, model: type[BaseModel], name: str, raw: dict):
        self.model, self.name, self.raw = model, name, raw
        self.blocks = {field: info.annotation for field, info in model.model_fields.items()
                       if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)}
        self.cache: dict[tuple, tuple[dict | None, list]] = {}
        self.base = None  # the unswept stage, when points may be resolved block by block
        validators = model.__pydantic_decorators__
        if not (validators.model_validators or validators.field_validators):
            base, problems = self._validate(model, raw, ())
            self.base = None if problems else base

    def resolve(self, point: dict) -> tuple[dict | None, list[dict]]:
        """The config at `point`, or None and pydantic's errors (locations relative to the stage)."""
        blocks = self._by_block(point)
        if blocks is None:
            raw = self.raw
            for path, value in point.items():
                raw = set_path(raw, path, value)
            return self._validate(self.model, raw, ())
        config, problems = dict(self.base), []
        for block, items in blocks.items():
            if (block, items) not in self.cache:
                raw = self.raw.get(block, {})
                for path, _, value in items:
                    raw = set_path(raw, path, value)
                self.cache[block, items] = self._validate(self.blocks[block], raw, (block,))
            config[block], block_problems = self.cache[block, items]
            problems += block_problems
        return (None, problems) if problems else (self._finish(config), [])

    def _by_block(self, point: dict) -> dict[str, tuple] | None:
        """{block: ((path in block, type, value), ...)}, or None if the point must be validated whole."""
        if self.base is None:
            return None
        blocks: dict[str, list] = {}
        for path, value in point.items():
            block, _, rest = path.partition(".")
            if not rest or block not in self.blocks or not isinstance(self.raw.get(block, {}), dict):
                return None
            blocks.setdefault(block, []).append((rest, type(value), value))  # 1, 1.0 and True are equal keys
        try:
            keyed = {block: tuple(items) for block, items in blocks.items()}
            hash(tuple(keyed.values()))  # swept lists or mappings are validated whole, uncached
            return keyed
        except TypeError:
            return None

    def _validate(self, model, raw, prefix: tuple) -> tuple[dict | None, list[dict]]:
        try:
            config = model.model_validate(raw).model_dump(mode="json")
        except ValidationError as exc:
            return None, [{**err, "loc": prefix + tuple(err["loc"])} for err in exc.errors()]
        return (self._finish(config) if prefix == () else config), []

    def _finish(self, config: dict) -> dict:
        if config.get("evaluate", {}).get("baseline") == self.name:
            config["evaluate"] = {**config["evaluate"], "baseline": None}  # against itself = against its init
        return config


def _swept_error(err: dict, model, point: dict, axes: dict, locate) -> SpecError:
    key = ".".join(str(p) for p in err["loc"])
    axis = _axis_for(key, point)
    loc, field = locate(axes[axis]) if axis in axes else locate(())
    if err["type"] == "extra_forbidden":  # the same for every value: reported once
        block, _, leaf = key.rpartition(".")
        message = f"cannot sweep {axis or key}: {block or 'this stage'} has no field '{leaf}'"
        return SpecError(loc, field, message + did_you_mean(leaf, _fields_at(model, block)))
    shown = f"swept value {axis}={point[axis]!r}" if axis in point else "a sweep point"
    where = "" if key == axis else f" makes {key} invalid"
    return SpecError(loc, field, f"{shown}{where}: {err['msg']}")


def _fields_at(model, block: str) -> list[str]:
    """Field names of the sub-model at dotted `block` of a stage model ('' = the stage)."""
    for part in filter(None, block.split(".")):
        info = model.model_fields.get(part)
        model = info.annotation if info else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return list(model.model_fields)


def _axis_for(key: str, point: dict) -> str | None:
    """The swept path an error at config path `key` is about."""
    for path in point:
        if key == path or key.startswith(path + ".") or path.startswith(key + "."):
            return path
    return next(iter(point), None)
