"""YAML source files -> plain data plus a map of where every value was written.

The spec is loaded with ruamel's round-trip parser only to read positions;
the result is converted to plain dicts/lists/scalars. Any YAML tag other than
the core ones (`!!str`, `!!int`, ...) is refused: a spec is data, never code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from specc.errors import Location, SpecError, SpecErrors

PathKey = tuple  # ("stages", "offline", "train", "lr")
CORE_TAG = "tag:yaml.org,2002:"
PLAIN_TAGS = {CORE_TAG + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "merge")}
MAX_DEPTH = 64  # no spec nests this deep; deeper input is an accident (or an attack on the parser)
# Values an alias (`*name`) may copy in, all aliases of a file together. Aliases nested in
# anchors multiply (a 12-line "billion laughs" file is 9^10 values), so expansion is bounded.
MAX_ALIASED_VALUES = 10_000


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


class _Constructor(RoundTripConstructor):
    """Gives a value that cannot be built (`!!int x`, an integer of 5,000 digits) its position."""

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError, LookupError, TypeError) as exc:
            tag = str(getattr(node.tag, "value", node.tag)).replace(CORE_TAG, "!!")
            shown = str(node.value)[:20] + ("..." if len(str(node.value)) > 20 else "")
            reason = ": too many digits" if "digits" in str(exc) else ""
            raise ConstructorError(None, None, f"cannot read {shown!r} as {tag}{reason}", node.start_mark) from None


def parse_yaml(text: str, file: str) -> Source:
    yaml = YAML(typ="rt", pure=True)
    yaml.Constructor = _Constructor
    yaml.allow_duplicate_keys = False
    try:
        raw = yaml.load(text)
    except MarkedYAMLError as exc:
        raise SpecErrors([_yaml_error(exc, file)]) from None
    except ReaderError as exc:  # a control character: position is an offset into the text
        loc = _location_after(file, text[: exc.position])
        raise SpecErrors([SpecError(loc, "", f"invalid YAML: character {exc.character!r} is not allowed")]) from None
    except YAMLError as exc:  # errors without a position
        raise SpecErrors([SpecError(Location(file, 1, 1), "", f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise SpecErrors([SpecError(Location(file, 1, 1), "", "invalid YAML: nested too deeply")]) from None
    locations: dict[PathKey, Location] = {(): Location(file, 1, 1)}
    errors: list[SpecError] = []
    try:
        data = _to_plain(raw, (), file, locations, errors, _Aliases())
    except _TooManyAliased as exc:
        raise SpecErrors([exc.error]) from None
    if errors:
        raise SpecErrors(errors)
    return Source(data, locations)


def _yaml_error(exc: MarkedYAMLError, file: str) -> SpecError:
    """Located where the broken construct starts (`[1, 2` never closed), naming where it broke."""
    problem = (exc.problem or "").strip()
    context = (exc.context or "").strip()
    start, found = exc.context_mark, exc.problem_mark
    mark = start or found
    loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
    if start and found and (start.line, start.column) != (found.line, found.column):
        where = f"line {found.line + 1}, column {found.column + 1}"
        return SpecError(loc, "", f"invalid YAML: {context}: {problem} (at {where})" if context else
                         f"invalid YAML: {problem} (at {where})")
    return SpecError(loc, "", f"invalid YAML: {problem or context or 'cannot parse'}")


def load_file(path: str | Path) -> Source:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SpecErrors([SpecError(Location(str(path), 0, 0), "", "file not found")]) from None
    except OSError as exc:
        raise SpecErrors([SpecError(Location(str(path), 0, 0), "", f"cannot read: {exc.strerror or exc}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        loc = _location_after(str(path), data[: exc.start].decode("utf-8", errors="replace"))
        raise SpecErrors([SpecError(loc, "", f"not UTF-8 text: byte {data[exc.start]:#04x} cannot be decoded")]) from None
    return parse_yaml(text, str(path))


class _Aliases:
    """Containers already converted (a second visit is an alias) and the values aliases copied."""

    def __init__(self):
        self.seen: set[int] = set()
        self.copied = 0


class _TooManyAliased(Exception):
    def __init__(self, error: SpecError):
        self.error = error


def _to_plain(node, path, file, locations, errors, aliases, aliased=None):
    """`aliased`: the path of the outermost alias this node is copied in by, if any."""
    loc = locations.get(path, Location(file, 1, 1))
    field = _dotted(path)
    if isinstance(node, (CommentedMap, CommentedSeq)):
        if aliased is None and id(node) in aliases.seen:
            aliased = path
        aliases.seen.add(id(node))
    if aliased is not None:
        aliases.copied += 1
        if aliases.copied > MAX_ALIASED_VALUES:
            written = locations.get(aliased[:-1], loc)  # the mapping or list the alias is written in
            raise _TooManyAliased(SpecError(written, _dotted(aliased),
                                            f"YAML aliases expand to more than {MAX_ALIASED_VALUES:,} values: "
                                            "write the values out, or nest fewer aliases"))
    tag = getattr(getattr(node, "tag", None), "value", None)
    if tag is not None and tag not in PLAIN_TAGS:
        shown = "!!" + tag.removeprefix(CORE_TAG) if tag.startswith(CORE_TAG) else tag
        errors.append(SpecError(loc, field, f"YAML tag {shown} is not allowed: a spec is plain data"))
        return None
    if len(path) > MAX_DEPTH:
        errors.append(SpecError(loc, field, f"nested more than {MAX_DEPTH} levels deep"))
        return None
    if isinstance(node, CommentedMap):
        out = {}
        for key, value in node.items():
            key_loc = _key_location(node, key, file) or loc
            if not isinstance(key, str):
                errors.append(SpecError(key_loc, field, f"keys must be strings, got {key!r}"))
                continue
            locations[path + (key,)] = key_loc
            out[key] = _to_plain(value, path + (key,), file, locations, errors, aliases, aliased)
        return out
    if isinstance(node, CommentedSeq):
        out = []
        for i, value in enumerate(node):
            locations[path + (i,)] = _item_location(node, i, file) or loc
            out.append(_to_plain(value, path + (i,), file, locations, errors, aliases, aliased))
        return out
    if isinstance(node, TaggedScalar):  # `!!str 5`: the only tagged scalar left after the check above
        return str(node.value)
    # ruamel returns subclasses (ScalarFloat, ...): normalise to builtins
    for plain in (bool, int, float, str):
        if isinstance(node, plain):
            return plain(node)
    if node is None:
        return None
    what = "a date" if isinstance(node, date) else f"a {type(node).__name__} value"
    errors.append(SpecError(loc, field, f"{what} is not allowed here: quote it to make it a string"))
    return None


def _key_location(node: CommentedMap, key, file) -> Location | None:
    """Where `key` was written; a key merged in with `<<: *anchor` is found in the anchored map."""
    for mapping in [node, *(m[1] if isinstance(m, tuple) else m for m in getattr(node, "merge", []))]:
        position = getattr(getattr(mapping, "lc", None), "data", {}).get(key)
        if position:
            return Location(file, position[0] + 1, position[1] + 1)
    return None


def _item_location(node: CommentedSeq, index: int, file) -> Location | None:
    position = getattr(getattr(node, "lc", None), "data", {}).get(index)
    return Location(file, position[0] + 1, position[1] + 1) if position else None


def _location_after(file: str, before: str) -> Location:
    """The position just after the text `before`."""
    return Location(file, before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1)


def _dotted(path) -> str:
    return ".".join(str(p) for p in path)
