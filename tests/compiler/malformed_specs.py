"""Hypothesis strategies for spec files that are wrong, each in one known way.

Every strategy starts from a valid spec (the quickstart, or a richer test
spec) and breaks it so that it is certainly invalid: a wrong type, an
unknown key, a bad reference, a cycle, broken YAML, a YAML tag, a bad sweep...
A case is (label, content) where content is the file's text (or bytes).
"""

from __future__ import annotations

import copy
import json
import math
import re
import string
import typing
from pathlib import Path

from hypothesis import strategies as st
from pydantic import BaseModel
from ruamel.yaml import YAML

from specc.compiler.graph import CHECKPOINT_FIELDS, REFERENCE_FIELDS
from specc.compiler.schema import STAGE_MODELS, SWEEP_ALIASES, Spec

ROOT = Path(__file__).resolve().parents[2]
BASES = [ROOT / "specs" / "quickstart.yaml", Path(__file__).parent / "specs" / "online_vs_offline.yaml"]
RAW = "__RAW{}__"  # placeholder scalar, replaced by raw YAML text after dumping


def _load(path: Path) -> dict:
    return YAML(typ="safe", pure=True).load(path.read_text())


def _dump(data) -> str:
    """Block-style YAML, one scalar per line (text mutations below work line by line).

    A small emitter of our own: ruamel's pure-Python dumper would be half of each case's time."""
    return "".join(_emit(data, 0)) or "{}\n"


PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
RESERVED = {"null", "true", "false", "yes", "no", "on", "off", "y", "n"}


def _emit(node, indent: int):
    pad = " " * indent
    items = node.items() if isinstance(node, dict) else [(None, v) for v in node]
    for key, value in items:
        if key is None:
            head = f"{pad}-"
        else:
            plain = PLAIN_KEY.fullmatch(key) and key.lower() not in RESERVED
            head = f"{pad}{key if plain else json.dumps(key)}:"
        if isinstance(value, (dict, list)) and value:
            yield head + "\n"
            yield from _emit(value, indent + 2)
        else:
            yield f"{head} {_scalar(value)}\n"


def _scalar(value) -> str:
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)  # a JSON string is a YAML double-quoted scalar


def _field_names() -> set[str]:
    """Every field of every model of the spec language, plus sweep aliases and stage kinds."""
    names, todo, seen = set(SWEEP_ALIASES) | set(STAGE_MODELS), [Spec, *STAGE_MODELS.values()], set()
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, info in model.model_fields.items():
            names.add(name)
            todo.extend(_models_in(info.annotation))
    return names


def _models_in(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


BASE_DATA = [_load(p) for p in BASES]
FIELD_NAMES = _field_names()
letters = st.text(string.ascii_lowercase, min_size=1, max_size=8)


def _walk(node, path=()):
    """(path, value) of every node below the root."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path + (key,), value
            yield from _walk(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield path + (i,), value
            yield from _walk(value, path + (i,))


def _set(data, path, value):
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _get(data, path):
    for part in path:
        data = data[part]
    return data


def _checked(path) -> bool:
    """Paths whose every value is validated (profiles are free-form until selected; sweeps have their own cases)."""
    return not {"profiles", "description", "sweep"} & {p for p in path if isinstance(p, str)}


# -- data-level cases ---------------------------------------------------------------


@st.composite
def wrong_type(draw):
    data = copy.deepcopy(draw(st.sampled_from(BASE_DATA)))
    paths = [(p, v) for p, v in _walk(data) if _checked(p) and p != ("name",)]
    path, value = draw(st.sampled_from(paths))
    if isinstance(value, dict):
        bad = draw(st.sampled_from([5, "text", [1, 2], True]))
    elif isinstance(value, bool):
        bad = draw(st.sampled_from(["text", [1], {"a": 1}]))
    elif isinstance(value, int):  # every integer of the schema is >= 0 and fits in int64
        bad = draw(st.sampled_from(["many", [1], {"a": 1}, -1, -(10**6), 1.5, 2**63, 10**30, float("inf"), float("nan")]))
    elif isinstance(value, float):  # every float of the schema is >= 0 and finite
        bad = draw(st.sampled_from(["fast", [0.1], {"a": 1}, -1.0, -1e-9, float("inf"), float("-inf"), float("nan"), 10**400]))
    elif isinstance(value, str):
        bad = draw(st.sampled_from([{"a": 1}, [1, 2], {"name": value}]))
    else:  # lists
        bad = draw(st.sampled_from([{"a": 1}, 7, [{"a": 1}]]))
    if isinstance(bad, int) and bad > 10**300:  # too large for a float: written as text
        return f"wrong type {'.'.join(map(str, path))}", _dump_with_raw(data, path, "9" * 401)
    _set(data, path, bad)
    return f"wrong type {'.'.join(map(str, path))}={bad!r}"[:120], _dump(data)


@st.composite
def unknown_key(draw):
    data = copy.deepcopy(draw(st.sampled_from(BASE_DATA)))
    blocks = [((), data)] + [(p, v) for p, v in _walk(data) if isinstance(v, dict) and _checked(p)]
    path, block = draw(st.sampled_from(blocks))
    if block and draw(st.booleans()):  # a near miss of a real key: 'lrr', 'stpes'
        real = draw(st.sampled_from(sorted(block)))
        i = draw(st.integers(0, len(real)))
        key = real[:i] + draw(st.sampled_from("aeiqxz")) + real[i:]
    else:
        key = "x_" + draw(letters)
    if key in FIELD_NAMES or key in block or "." in key:
        key = "x_" + key
    block[key] = draw(st.sampled_from([1, "text", [1, 2], {"a": 1}, None]))
    return f"unknown key {'.'.join(map(str, path + (key,)))}", _dump(data)


def _references(data):
    """(path of a reference field, allowed kinds) for every reference written in `data`."""
    out = []
    for name, stage in data["stages"].items():
        for field, kinds in REFERENCE_FIELDS[stage["kind"]].items():
            parts = tuple(field.split("."))
            try:
                value = _get(stage, parts)
            except (KeyError, TypeError):
                continue
            if isinstance(value, str):
                out.append((("stages", name) + parts, field, kinds))
    return out


@st.composite
def bad_reference(draw):
    data = copy.deepcopy(draw(st.sampled_from(BASE_DATA)))
    stages = data["stages"]
    path, field, kinds = draw(st.sampled_from(_references(data)))
    target = _get(data, path).partition("@")[0]
    how = draw(st.sampled_from(["dangling", "typo", "wrong kind", "bad step", "never saved", "step not allowed"]))
    if how == "typo":
        i = draw(st.integers(0, len(target) - 1))
        value = target[:i] + target[i + 1:]
        value = value if value and value not in stages else "zz" + target
    elif how == "wrong kind" and [n for n, s in stages.items() if s["kind"] not in kinds]:
        value = draw(st.sampled_from(sorted(n for n, s in stages.items() if s["kind"] not in kinds)))
    elif how == "bad step":
        value = target + "@" + draw(st.sampled_from(["-3", "x", "1.5", "", "1e3", "\u0663", " 5", "5@5"]))
    elif how == "never saved" and field in CHECKPOINT_FIELDS and stages[target].get("kind") in ("sft", "align"):
        value = f"{target}@{draw(st.integers(0, 10**6)) * 50 + 1}"  # the bases save multiples of 50 only
    elif how == "step not allowed" and field not in CHECKPOINT_FIELDS:
        value = f"{target}@{draw(st.integers(0, 10**6))}"
    else:
        value = "zz" + draw(letters)
    _set(data, path, value)
    return f"bad reference ({how}) {'.'.join(path)}={value!r}", _dump(data)


@st.composite
def cycle(draw):
    data = copy.deepcopy(draw(st.sampled_from(BASE_DATA)))
    stages = data["stages"]
    judge = next(n for n, s in stages.items() if s["kind"] == "oracle")
    pairs = next(n for n, s in stages.items() if s["kind"] == "label")
    shape = draw(st.sampled_from(["ring", "self pm", "self align", "through sft"]))
    if shape == "ring":
        n = draw(st.integers(1, 5))
        for i in range(n):
            stages[f"ring{i}"] = {"kind": "label", "data": f"ring{(i + 1) % n}", "judge": judge}
    elif shape == "self pm":
        stages["loop"] = {"kind": "preference_model", "data": pairs, "init": "loop"}
    elif shape == "self align":
        stages["loop"] = {"kind": "align", "init": "loop", "sampler": {"offline": pairs}}
    else:  # an SFT trained on pairs sampled from its own descendants
        sft = next(n for n, s in stages.items() if s["kind"] == "sft")
        stages["loop_pairs"] = {"kind": "pairs", "a": sft, "b": sft, "judge": judge}
        stages[sft]["data"] = "loop_pairs"
    return f"cycle ({shape})", _dump(data)


BAD_WHERE = [
    "lr <", "lr > > 1", "__import__('os').system('true')", "lr ** 2 > 1", "foo.bar > 1", "lr > 100",
    "lr < 'a'", "lr / 0 > 1", "'a' * 100000000000 == 1", "lambda: 1", "[x for x in lr]", "lr[0] > 1",
    "(lr).real > 0", "lr if lr else beta", "f'{lr}' == 1", "lr\x00", "1j > lr", "lr in 3", "x" * 600,
    "not " * 400 + "lr", "lr % 0 == 1",
]


def _sweep_cases(draw) -> dict:
    """Case name -> a function drawing a broken sweep block (drawn lazily: only the chosen case draws)."""
    def lrs():
        return draw(st.lists(st.sampled_from([1e-5, 3e-5, 1e-4, 3e-4, 1e-3]), min_size=1, max_size=5, unique=True))

    def too_big():
        rows = draw(st.integers(101, 400))  # rows x columns > 10,000, the default limit
        columns = draw(st.integers(10_000 // rows + 1, 120))
        return {"lr": [i * 1e-6 for i in range(1, rows + 1)], "beta": [i / 1000 for i in range(1, columns + 1)]}

    def bad_value():
        axis = draw(st.sampled_from(["lr", "beta", "steps", "batch_size", "shuffle"]))
        edge = 1.5 if axis == "shuffle" else 0  # shuffle lies in [0, 1]; the others are > 0
        return {axis: lrs() + [draw(st.sampled_from([-1, edge, "x", None, [1], float("inf"), float("nan")]))]}

    def zip_lengths():
        values = lrs()
        return {"zip": [{"lr": values, "beta": [0.1] * (len(values) + draw(st.sampled_from([-1, 1, 2])))}]}

    return {
        "empty": lambda: {"train.batch_size": [16]} | {draw(st.sampled_from(["lr", "beta", "train.steps", "grid"])): []},
        "zip lengths": zip_lengths,
        "empty zip": lambda: {"zip": draw(st.sampled_from([[{}], {}, [{"lr": []}], [{"lr": [1e-4]}, {}]]))},
        "unknown path": lambda: {draw(st.sampled_from(["train.", "loss.", "model.", "sampler.", ""])) + "x_" + draw(letters): lrs()},
        "bad value": bad_value,
        "not a list": lambda: draw(st.sampled_from([{"lr": 0.1}, {"beta": "x"}, {"grid": {"train.lr": 0.1}},
                                                    {"grid": [0.1]}, {"zip": 5}, {"zip": [[1]]}])),
        "bad seeds": lambda: {"seeds": draw(st.sampled_from([[], [-1], "x", [0, "a"], [2**64], [0.5], {"a": 1}]))},
        "where": lambda: {"lr": lrs(), "where": [draw(st.sampled_from(BAD_WHERE))]},
        "where type": lambda: {"lr": lrs(), "where": draw(st.sampled_from(["lr > 1", [5], [["lr"]], {"a": "lr"}, [None]]))},
        "too big": too_big,
        "twice": lambda: draw(st.sampled_from([{"lr": [1e-4], "train.lr": [1e-3]}, {"beta": [0.1], "loss.beta": [0.2]},
                                                {"steps": [10], "grid": {"train.steps": [20]}}, {"seed": [1], "seeds": [2]},
                                                {"zip": [{"lr": [1e-4]}, {"train.lr": [1e-3]}]}])) | {"shuffle": lrs()},
        "not a mapping": lambda: draw(st.sampled_from([[1, 2], "lr", 5, [{"lr": [1e-4]}], True])),
        "typo": lambda: {draw(st.sampled_from(["lrr", "betta", "seed_s", "gird", "zipp", "wher", "step", "sizes"])): lrs()},
    }


@st.composite
def bad_sweep(draw):
    data = copy.deepcopy(draw(st.sampled_from(BASE_DATA)))
    stages = data["stages"]
    name = draw(st.sampled_from(sorted(n for n, s in stages.items() if s["kind"] == "align")))
    cases = _sweep_cases(draw)
    case = draw(st.sampled_from(sorted(cases)))
    stages[name]["sweep"] = cases[case]()
    return f"bad sweep ({case}) on {name}", _dump(data)


# -- text-level cases: YAML that does not parse, or parses into something refused -------------


TAGS = ["!!python/object:os.system {}", "!!python/object/apply:os.system ['true']", "!!python/name:os.system",
        "!!python/tuple [1, 2]", "!custom 5", "!tag {a: 1}", "!<tag:example.com,2000:x> 1", "!!binary aGk=",
        "!!set {a, b}", "!!timestamp 2024-01-01", "2024-01-01", "!!int x", "!!float y", "!!bool 3",
        "!!python/object/new:os.system [x]"]
BROKEN = ["[1, 2", "{a: 1", "\"unclosed", "'unclosed", "[1, {a: 2]", "{a: [1}", "a: b: c", "@at", "`tick", "*nope",
          "- [", "9" * 5000]


def _dump_with_raw(data, path, raw: str) -> str:
    data = copy.deepcopy(data)
    _set(data, path, RAW.format(0))
    return _dump(data).replace(json.dumps(RAW.format(0)), raw)


@st.composite
def raw_value(draw):
    """A YAML tag, an unparseable scalar or a giant number, in place of any value."""
    data = draw(st.sampled_from(BASE_DATA))
    paths = [p for p, v in _walk(data) if not isinstance(p[-1], int)]
    path = draw(st.sampled_from(paths))
    raw = draw(st.sampled_from(TAGS + BROKEN))
    return f"raw value {'.'.join(map(str, path))}: {raw[:30]!r}", _dump_with_raw(data, path, raw)


def _key_lines(lines):
    return [i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith(("-", "#"))
            and ":" in line]


@st.composite
def broken_text(draw):
    text = _dump(draw(st.sampled_from(BASE_DATA)))
    lines = text.splitlines()
    case = draw(st.sampled_from(["tab", "indent", "dedent", "duplicate", "control", "bytes", "two documents",
                                 "unclosed"]))
    keys = _key_lines(lines)
    if case == "tab":
        i = draw(st.sampled_from(keys))
        lines[i] = "\t" * draw(st.integers(1, 2)) + lines[i].lstrip(" ")  # tabs never indent YAML
    elif case == "indent":  # a key indented under a `key: scalar` line
        scalar = [i for i in keys if i + 1 < len(lines) and not lines[i].rstrip().endswith(":")]
        i = draw(st.sampled_from(scalar))
        lines.insert(i + 1, " " * (_indent(lines[i]) + draw(st.integers(1, 3))) + "extra: 1")
    elif case == "dedent":  # a key at a column no mapping above it starts at
        nested = [i for i in keys if _indent(lines[i]) >= 2 and _indent(lines[i]) % 2 == 0]
        i = draw(st.sampled_from(nested))
        lines.insert(i + 1, " " * (_indent(lines[i]) - 1) + "stray: 1")
    elif case == "duplicate":
        i = draw(st.sampled_from(keys))
        key = lines[i].split(":", 1)[0]
        lines.insert(i + 1, f"{key}: 1")
    elif case == "control":
        i = draw(st.integers(0, len(lines) - 1))
        char = draw(st.sampled_from(["\x00", "\x01", "\x07", "\x1b", "\ufffe"]))
        at = draw(st.integers(0, len(lines[i])))
        lines[i] = lines[i][:at] + char + lines[i][at:]
    elif case == "bytes":
        i = draw(st.integers(0, len(lines) - 1))
        encoded = [line.encode() for line in lines]
        encoded[i] += draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80abc"]))
        return f"invalid UTF-8 on line {i + 1}", b"\n".join(encoded) + b"\n"
    elif case == "two documents":
        lines += ["---", "name: second"]
    else:
        i = draw(st.sampled_from(keys + [len(lines)]))
        lines.insert(i, draw(st.sampled_from(["x: [1, 2", "x: {a: 1", "x: \"open", "? [", "- {"])))
    return f"broken text ({case})", "\n".join(lines) + "\n"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


NOT_A_MAPPING = ["", "   \n", "# only a comment\n", "---\n", "...\n", "- a\n- b\n", "42\n", "3.5\n", "true\n",
                 "null\n", "~\n", "\"a string\"\n", "[1, 2]\n", "- name: x\n  stages: {}\n", "name\n",
                 "!!python/object:os.system {}\n", "&a [*a]\n"]


@st.composite
def not_a_spec(draw):
    """Documents that are not a spec mapping at all, or a mapping missing what every spec needs."""
    text = draw(st.sampled_from(NOT_A_MAPPING + ["name: x\n", "stages: {}\n", "name: x\nstages: {}\nstages: {}\n",
                                                 "a: 1\n", "{}\n", "name: [x]\nstages: []\n"]))
    return f"not a spec {text[:20]!r}", text


malformed_specs = st.one_of(wrong_type(), unknown_key(), bad_reference(), cycle(), bad_sweep(), raw_value(),
                            broken_text(), not_a_spec())
