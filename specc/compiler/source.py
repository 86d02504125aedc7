"""YAML source files -> plain data plus a map of where every value was written.

The spec is loaded with ruamel's round-trip parser only to read positions;
the result is converted to plain dicts/lists/scalars, and any YAML tag is
refused (a spec is data, never code).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from specc.errors import Location, SpecError, SpecErrors

PathKey = tuple  # ("stages", "offline", "train", "lr")


@dataclass
class Source:
    """Plain spec data with the location of every key and value in it."""

    data: Any
    locations: dict[PathKey, Location]

    def locate(self, path: PathKey) -> Location | None:
        """The location of `path`, or of its nearest written ancestor."""
        path = tuple(path)
        while path:
            if path in self.locations:
                return self.locations[path]
            path = path[:-1]
        return self.locations.get(())


def parse_yaml(text: str, file: str) -> Source:
    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    try:
        raw = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        raise SpecErrors([SpecError(loc, "", f"invalid YAML: {problem}")]) from None
    except YAMLError as exc:  # errors without a position
        raise SpecErrors([SpecError(Location(file, 1, 1), "", f"invalid YAML: {exc}")]) from None
    locations: dict[PathKey, Location] = {(): Location(file, 1, 1)}
    errors: list[SpecError] = []
    data = _to_plain(raw, (), file, locations, errors)
    if errors:
        raise SpecErrors(errors)
    return Source(data, locations)


def load_file(path: str | Path) -> Source:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecErrors([SpecError(Location(str(path), 0, 0), "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecErrors([SpecError(Location(str(path), 0, 0), "", f"cannot read: {exc}")]) from None
    return parse_yaml(text, str(path))


def _to_plain(node, path, file, locations, errors):
    tag = getattr(node, "tag", None)
    tag_value = getattr(tag, "value", tag) if tag is not None else None
    if isinstance(tag_value, str) and tag_value.startswith("!") and not tag_value.startswith("!!"):
        loc = locations.get(path, Location(file, 1, 1))
        errors.append(SpecError(loc, _dotted(path), f"YAML tag {tag_value} is not allowed: a spec is plain data"))
        return None
    if isinstance(node, CommentedMap):
        out = {}
        for key, value in node.items():
            line, col = node.lc.key(key)
            locations[path + (str(key),)] = Location(file, line + 1, col + 1)
            if not isinstance(key, str):
                errors.append(SpecError(Location(file, line + 1, col + 1), _dotted(path), f"keys must be strings, got {key!r}"))
                continue
            out[key] = _to_plain(value, path + (key,), file, locations, errors)
        return out
    if isinstance(node, CommentedSeq):
        out = []
        for i, value in enumerate(node):
            line, col = node.lc.item(i)
            locations[path + (i,)] = Location(file, line + 1, col + 1)
            out.append(_to_plain(value, path + (i,), file, locations, errors))
        return out
    if isinstance(node, (bool, int, float, str)) or node is None:
        # ruamel returns subclasses (ScalarFloat, ...): normalise to builtins
        if isinstance(node, bool):
            return bool(node)
        if isinstance(node, int):
            return int(node)
        if isinstance(node, float):
            return float(node)
        if isinstance(node, str):
            return str(node)
        return None
    loc = locations.get(path, Location(file, 1, 1))
    errors.append(SpecError(loc, _dotted(path), f"unsupported YAML value of type {type(node).__name__}"))
    return None


def _dotted(path) -> str:
    return ".".join(str(p) for p in path)
