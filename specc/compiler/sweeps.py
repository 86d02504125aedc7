"""Sweep blocks -> lists of points (dotted path -> value) for one stage.

A sweep is a product of groups: every `grid` axis is a group of its own,
each `zip` mapping is one group whose lists are paired element-wise, and
`seeds` is one more group. `where` expressions then drop points.
"""

from __future__ import annotations

import ast
import itertools
import math
import operator
from typing import Any, Callable

from specc.compiler.schema import SWEEP_ALIASES, Sweep
from specc.errors import SpecError

Point = dict[str, Any]
# sweep-relative path as written, e.g. ("grid", "lr") or ("zip", 0, "beta") -> (location, dotted field)
Locate = Callable[[tuple], tuple]


def sweep_size(sweep: Sweep | None) -> int:
    """Points before `where`; unequal zip groups count by their first list (they are an error anyway)."""
    if sweep is None:
        return 1
    sizes = [len(v) for v in sweep.grid.values()]
    sizes += [len(next(iter(group.values()))) if group else 1 for group in sweep.zip]
    if sweep.seeds is not None:
        sizes.append(len(sweep.seeds))
    return math.prod(sizes)


def sweep_axes(sweep: Sweep | None, fields, seed_path: str, locate: Locate, errors: list[SpecError]) -> dict[str, tuple]:
    """Canonical config path -> where the axis is written; an axis swept twice is an error."""
    axes: dict[str, tuple] = {}
    if sweep is None:
        return axes
    written = [("grid", key) for key in sweep.grid]
    written += [("zip", i, key) for i, group in enumerate(sweep.zip) for key in group]
    written += [("seeds",)] if sweep.seeds is not None else []
    for where in written:
        path = seed_path if where == ("seeds",) else canonical_path(where[-1], fields)
        if path in axes:
            loc, field = locate(where)
            errors.append(SpecError(loc, field, f"{path} is swept twice (also at {'.'.join(map(str, axes[path]))})"))
        else:
            axes[path] = where
    return axes


def sweep_points(sweep: Sweep | None, fields, seed_path: str, locate: Locate, errors: list[SpecError]) -> list[Point]:
    """All points before `where` filtering, keyed by canonical config path; a broken group is left out."""
    if sweep is None:
        return [{}]
    groups: list[list[Point]] = []
    for key, values in sweep.grid.items():
        if not values:
            errors.append(SpecError(*locate(("grid", key)), "an empty list sweeps nothing: give at least one value"))
            continue
        groups.append([{canonical_path(key, fields): v} for v in values])
    for i, group in enumerate(sweep.zip):
        lengths = {k: len(v) for k, v in group.items()}
        if not group or 0 in lengths.values():
            errors.append(SpecError(*locate(("zip", i)), "an empty zip group sweeps nothing: give lists of at least one value"))
            continue
        if len(set(lengths.values())) > 1:
            errors.append(SpecError(*locate(("zip", i)), f"zipped lists must have equal lengths, got {lengths}"))
            continue
        keys = [canonical_path(k, fields) for k in group]
        groups.append([dict(zip(keys, row)) for row in zip(*group.values())])
    if sweep.seeds is not None:
        if not sweep.seeds:
            errors.append(SpecError(*locate(("seeds",)), "an empty list sweeps nothing: give at least one seed"))
        else:
            groups.append([{seed_path: s} for s in sweep.seeds])
    return [dict(kv for point in combo for kv in point.items()) for combo in itertools.product(*groups)]


def canonical_path(key: str, fields=None) -> str:
    """`lr` -> `train.lr`; an alias applies only where the stage has its block (`seed` on pairs is `seed`)."""
    path = SWEEP_ALIASES.get(key, key)
    if fields is not None and path.split(".", 1)[0] not in fields:
        return key
    return path


def set_path(raw: dict, path: str, value) -> dict:
    """A copy of `raw` with the dotted `path` set to `value`."""
    head, _, rest = path.partition(".")
    out = dict(raw)
    if rest:
        inner = out.get(head)
        out[head] = set_path(inner if isinstance(inner, dict) else {}, rest, value)
    else:
        out[head] = value
    return out


# -- `where` expressions: comparisons and arithmetic over config paths, nothing else ----------

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Mod: operator.mod}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
_ALLOWED = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.BinOp,
            ast.Compare, ast.Name, ast.Attribute, ast.Constant, ast.Load, ast.List, ast.Tuple, *_BINARY, *_COMPARE)
MAX_WHERE_CHARS = 500


class WhereError(ValueError):
    pass


def compile_where(text: str) -> ast.Expression:
    if len(text) > MAX_WHERE_CHARS:
        raise WhereError(f"where expression is {len(text)} characters long; at most {MAX_WHERE_CHARS}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise WhereError(f"cannot parse where expression {text!r}: {getattr(exc, 'msg', None) or exc}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise WhereError(f"where expression {text!r}: {type(node).__name__} is not allowed "
                             "(comparisons, and/or/not, arithmetic over config paths)")
        if isinstance(node, ast.Constant) and not isinstance(node.value, (bool, int, float, str, type(None))):
            raise WhereError(f"where expression {text!r}: constant {node.value!r} is not allowed")
        if isinstance(node, ast.Attribute):
            try:
                _dotted(node)
            except WhereError as exc:
                raise WhereError(f"where expression {text!r}: {exc}") from None
    return tree


def evaluate_where(tree: ast.Expression, config: dict) -> bool:
    try:
        return bool(_eval(tree.body, config))
    except WhereError:
        raise
    except (TypeError, ArithmeticError, RecursionError) as exc:
        raise WhereError(f"where expression {ast.unparse(tree)!r}: {exc}") from None


def _eval(node, config):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Name, ast.Attribute)):
        return _lookup(_dotted(node), config)
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(e, config) for e in node.elts]
    if isinstance(node, ast.BoolOp):
        values = (_eval(v, config) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, config)
        if isinstance(node.op, ast.Not):
            return not value
        return -_number(value) if isinstance(node.op, ast.USub) else _number(value)
    if isinstance(node, ast.BinOp):
        # numbers only: 'a' * 10**12 would build a terabyte string
        return _BINARY[type(node.op)](_number(_eval(node.left, config)), _number(_eval(node.right, config)))
    if isinstance(node, ast.Compare):
        left = _eval(node.left, config)
        for op, right_node in zip(node.ops, node.comparators):
            right = _eval(right_node, config)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    raise WhereError(f"{type(node).__name__} is not allowed")


def _number(value):
    if isinstance(value, (int, float)):
        return value
    raise TypeError(f"arithmetic needs numbers, got {value!r}")


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    raise WhereError("only names like loss.beta may be used")


def _lookup(path: str, config: dict):
    node: Any = config
    for part in canonical_path(path, config).split("."):
        if not isinstance(node, dict) or part not in node:
            raise WhereError(f"unknown name '{path}' in where expression")
        node = node[part]
    return node


__all__ = ["sweep_points", "sweep_axes", "sweep_size", "set_path", "compile_where", "evaluate_where", "WhereError"]
