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
from typing import Any

from specc.compiler.schema import SWEEP_ALIASES, Sweep
from specc.errors import Location, SpecError

Point = dict[str, Any]


def sweep_size(sweep: Sweep | None) -> int:
    if sweep is None:
        return 1
    sizes = [len(v) for v in sweep.grid.values()]
    sizes += [len(next(iter(group.values()))) if group else 1 for group in sweep.zip]
    if sweep.seeds is not None:
        sizes.append(len(sweep.seeds))
    return math.prod(sizes)


def sweep_points(sweep: Sweep | None, seed_path: str, locate, errors: list[SpecError]) -> list[Point]:
    """All points before `where` filtering; `locate(key)` gives an axis's location."""
    if sweep is None:
        return [{}]
    groups: list[list[Point]] = []
    for key, values in sweep.grid.items():
        if not values:
            errors.append(SpecError(locate(key), key, "an empty list sweeps nothing: give at least one value"))
        groups.append([{canonical_path(key): v} for v in values])
    for group in sweep.zip:
        lengths = {k: len(v) for k, v in group.items()}
        if len(set(lengths.values())) > 1:
            errors.append(SpecError(locate(next(iter(group))), "zip", f"zipped lists must have equal lengths, got {lengths}"))
            continue
        keys = [canonical_path(k) for k in group]
        groups.append([dict(zip(keys, row)) for row in zip(*group.values())])
    if sweep.seeds is not None:
        groups.append([{seed_path: s} for s in sweep.seeds])
    return [dict(kv for point in combo for kv in point.items()) for combo in itertools.product(*groups)]


def canonical_path(key: str) -> str:
    return SWEEP_ALIASES.get(key, key)


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


class WhereError(ValueError):
    pass


def compile_where(text: str) -> ast.Expression:
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise WhereError(f"cannot parse where expression {text!r}: {exc.msg}") from None
    for node in ast.walk(tree):
        allowed = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.BinOp,
                   ast.Compare, ast.Name, ast.Attribute, ast.Constant, ast.Load, ast.List, ast.Tuple,
                   *_BINARY, *_COMPARE)
        if not isinstance(node, allowed):
            raise WhereError(f"where expression {text!r}: {type(node).__name__} is not allowed (comparisons, and/or/not, arithmetic over config paths)")
    return tree


def evaluate_where(tree: ast.Expression, config: dict) -> bool:
    return bool(_eval(tree.body, config))


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
        return (not value) if isinstance(node.op, ast.Not) else -value
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, config), _eval(node.right, config))
    if isinstance(node, ast.Compare):
        left = _eval(node.left, config)
        for op, right_node in zip(node.ops, node.comparators):
            right = _eval(right_node, config)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    raise WhereError(f"{type(node).__name__} is not allowed")


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    raise WhereError("only names like loss.beta may be used")


def _lookup(path: str, config: dict):
    node: Any = config
    for part in canonical_path(path).split("."):
        if not isinstance(node, dict) or part not in node:
            raise WhereError(f"unknown name '{path}' in where expression")
        node = node[part]
    return node


__all__ = ["sweep_points", "sweep_size", "set_path", "compile_where", "evaluate_where", "WhereError", "Location"]
