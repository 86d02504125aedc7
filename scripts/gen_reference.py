#!/usr/bin/env python
"""Write docs/reference.md (every block, field, type, default and description of the spec language)
and docs/spec.schema.json (what `specc schema` prints, for editor completion).

Sources, all read from the installed code (nothing hand-written here can drift):
- the JSON Schema that `specc schema` prints (types, constraints, defaults, class docstrings, and
  each field's description, written beside it in specc/compiler/schema.py);
- the `raise ValueError(...)` messages of each block's model validators (rules across fields);
- compiler.graph.REFERENCE_FIELDS (which fields name other stages), SWEEP_ALIASES, load.py's layering.

The output depends only on that code: no dates, versions or paths, and a fixed order.

    python scripts/gen_reference.py            # rewrite docs/reference.md and docs/spec.schema.json
    python scripts/gen_reference.py --check    # exit 1 if either is stale
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "reference.md"
SCHEMA_OUTPUT = ROOT / "docs" / "spec.schema.json"
INT64_MAX = 2**63 - 1
STAGE_ORDER = ("dataset", "oracle", "label", "sft", "preference_model", "align", "pairs")

# -- what the source says about each field ------------------------------------------------------


def validator_rules(source: str) -> dict[str, list[str]]:
    """Class name -> the messages its model validators raise (f-string fields shown as {...})."""
    rules: dict[str, list[str]] = {}
    for cls in ast.walk(ast.parse(source)):
        if not isinstance(cls, ast.ClassDef):
            continue
        for fn in cls.body:
            decorated = isinstance(fn, ast.FunctionDef) and any(
                "model_validator" in ast.unparse(d) for d in fn.decorator_list)
            if not decorated:
                continue
            for node in ast.walk(fn):
                if (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
                        and getattr(node.exc.func, "id", None) == "ValueError" and node.exc.args):
                    rules.setdefault(cls.name, []).append(_literal(node.exc.args[0]))
    return rules


def _literal(node) -> str:
    """A message as written; an f-string's fields that name module-level constants are filled in
    (`{' / '.join(SAMPLERS)}`), the others shown as {...}."""
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(str(v.value) if isinstance(v, ast.Constant) else _field(v) for v in node.values)
    return ast.unparse(node)


def _field(node: ast.FormattedValue) -> str:
    from specc.compiler import schema as schema_module

    try:
        return str(eval(compile(ast.Expression(node.value), "<message>", "eval"), vars(schema_module)))
    except Exception:  # a value known only at validation time
        return "{...}"


# -- rendering JSON Schema -----------------------------------------------------------------------


def ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def link(name: str) -> str:
    return f"[{name}](#{name.lower()})"


def constraints(node: dict) -> str:
    parts = []
    if "minimum" in node:
        parts.append(f"≥ {node['minimum']}")
    if "exclusiveMinimum" in node:
        parts.append(f"> {node['exclusiveMinimum']}")
    if "maximum" in node and node["maximum"] != INT64_MAX:
        parts.append(f"≤ {node['maximum']}")
    if "exclusiveMaximum" in node:
        parts.append(f"< {node['exclusiveMaximum']}")
    if "minLength" in node:
        parts.append(f"length ≥ {node['minLength']}")
    if "minItems" in node:
        parts.append(f"≥ {node['minItems']} items")
    if "minProperties" in node:
        parts.append(f"≥ {node['minProperties']} entries")
    if "pattern" in node:
        parts.append(f"matching `{node['pattern']}`")
    return " ".join(parts)


def type_of(node: dict) -> str:
    if "$ref" in node:
        return link(ref_name(node["$ref"]))
    if "anyOf" in node:
        return " \\| ".join(type_of(alt) for alt in node["anyOf"])
    if "oneOf" in node:
        mapping = node.get("discriminator", {}).get("mapping", {})
        if mapping:
            return "stage (by `kind`)"
        return " \\| ".join(type_of(alt) for alt in node["oneOf"])
    if "enum" in node:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    kind = node.get("type")
    extra = constraints(node)
    if kind == "array":
        text = f"list of {type_of(node.get('items', {}))}"
    elif kind == "object":
        if "patternProperties" in node:
            (pattern, value), = node["patternProperties"].items()
            text = f"map of name (`{pattern}`) → {type_of(value)}"
            extra = constraints({k: v for k, v in node.items() if k != "pattern"})
        elif isinstance(node.get("additionalProperties"), dict) and node["additionalProperties"]:
            text = f"map of string → {type_of(node['additionalProperties'])}"
        else:
            text = "mapping"
    elif kind is None:
        text = "any"
    else:
        text = {"integer": "int", "number": "float", "string": "string", "boolean": "bool", "null": "null"}[kind]
    return f"{text} {extra}".strip()


def default_of(name: str, prop: dict, required: set[str]) -> str:
    if name in required:
        return "**required**"
    if "default" not in prop:
        return ""
    value = prop["default"]
    if "$ref" in prop and isinstance(value, dict):
        return "its block's defaults"
    text = json.dumps(value, sort_keys=True)
    return f"`{text}`" if len(text) <= 40 else "see block"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") if text else ""


def declaring_classes(name: str) -> list[str]:
    """The schema block's class and its bases, nearest first (Default* blocks answer for their base)."""
    from specc.compiler import schema as schema_module

    cls = getattr(schema_module, name, None) or getattr(schema_module, name.removeprefix("Default"), None)
    return [c.__name__ for c in cls.__mro__] if isinstance(cls, type) else [name]


def describe(cls: str, field: str, prop: dict) -> str:
    """The field's Field(description=...); a Default* block answers with its base block's."""
    if prop.get("description"):
        return prop["description"]
    from specc.compiler import schema as schema_module

    for name in declaring_classes(cls):
        model = getattr(schema_module, name, None)
        info = getattr(model, "model_fields", {}).get(field)
        if info is not None and info.description:
            return info.description
    return ""


def field_table(model: dict, cls: str) -> list[str]:
    required = set(model.get("required", []))
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, prop in model.get("properties", {}).items():
        text = describe(cls, name, prop)
        rows.append(f"| `{name}` | {type_of(prop)} | {default_of(name, prop, required)} | {cell(text)} |")
    return rows


def usage_paths(schema: dict) -> dict[str, list[str]]:
    """Block name -> the spec paths where it appears, e.g. TrainSettings -> stages.<name>.train."""
    found: dict[str, set[str]] = {}
    defs = schema["$defs"]

    def walk(node: dict, path: str, depth: int):
        if depth > 8 or not isinstance(node, dict):
            return
        if "$ref" in node:
            name = ref_name(node["$ref"])
            if path in found.setdefault(name, set()):
                return
            found[name].add(path)
            walk(defs[name], path, depth + 1)
            return
        for alt in node.get("anyOf", []) + node.get("oneOf", []):
            label = path
            if "$ref" in alt and ref_name(alt["$ref"]).endswith("Stage"):
                kind = defs[ref_name(alt["$ref"])]["properties"]["kind"]
                label = f"{path} (kind: {kind.get('const', (kind.get('enum') or ['?'])[0])})"
            walk(alt, label, depth + 1)
        for key, prop in node.get("properties", {}).items():
            walk(prop, f"{path}.{key}" if path else key, depth + 1)
        for value in node.get("patternProperties", {}).values():
            walk(value, f"{path}.<name>", depth + 1)
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}.<name>", depth + 1)
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]", depth + 1)

    walk(schema, "", 0)
    return {name: sorted(paths) for name, paths in found.items()}


def block_order(schema: dict) -> list[str]:
    """Stages in `kind` order, then every other block in order of first appearance from the top."""
    defs = schema["$defs"]
    stages = []
    for kind in STAGE_ORDER:
        for name, model in defs.items():
            k = model.get("properties", {}).get("kind", {})
            if k.get("const") == kind or k.get("enum") == [kind]:
                stages.append(name)
    stages += sorted(n for n, m in defs.items() if n.endswith("Stage") and n not in stages)
    seen: list[str] = []

    def visit(node):
        if isinstance(node, dict):
            if "$ref" in node:
                name = ref_name(node["$ref"])
                if name not in seen:
                    seen.append(name)
                    visit(defs[name])
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit({k: v for k, v in schema.items() if k != "$defs"})
    for name in stages:
        visit(defs[name])
    blocks = [n for n in seen if n not in stages]
    blocks += sorted(n for n in defs if n not in stages and n not in blocks)
    return stages + blocks


# -- the document ----------------------------------------------------------------------------------


def render() -> str:
    from specc.compiler import graph, load
    from specc.compiler import schema as schema_module
    from specc.compiler.schema import SWEEP_ALIASES, Spec

    schema = Spec.model_json_schema()  # exactly what `specc schema` prints
    defs = schema["$defs"]
    source = Path(schema_module.__file__).read_text(encoding="utf-8")
    rules = validator_rules(source)
    used = usage_paths(schema)
    order = block_order(schema)
    partial = {name: name.removeprefix("Default") for name in defs
               if name.startswith("Default") and name.removeprefix("Default") in defs}

    out = [
        "# Spec reference",
        "",
        "<!-- Generated by scripts/gen_reference.py from `specc schema` and specc/compiler/schema.py. "
        "Do not edit: run `python scripts/gen_reference.py`. -->",
        "",
        "Every block of the spec language, its fields, their types, defaults and meaning. Generated from",
        "the JSON Schema that `specc schema` prints (the same file editors use for completion:",
        "`# yaml-language-server: $schema=../docs/spec.schema.json`), whose descriptions are written",
        "beside each field in `specc/compiler/schema.py`. Every block rejects keys it does not define.",
        "For a guided tour see [the tutorial](tutorial.md).",
        "",
        "Contents: [top level](#spec) · stages: "
        + ", ".join(link(n) for n in order if n.endswith("Stage"))
        + " · blocks: " + ", ".join(link(n) for n in order if not n.endswith("Stage") and n not in partial)
        + " · [references](#references-between-stages) · [sweep keys](#sweep-keys-and-aliases)"
        + " · [layering](#layering-extends-profiles-overrides-defaults)",
        "",
        "## Spec",
        "",
        "The top level of a spec file.",
        "",
        *field_table(schema, "Spec"),
        "",
    ]
    for name in order:
        if name in partial:
            continue
        model = defs[name]
        out += [f"## {name}", ""]
        if model.get("description"):
            out += [" ".join(model["description"].split()), ""]
        if used.get(name):
            out += ["Appears at: " + ", ".join(f"`{p}`" for p in used[name]), ""]
        out += field_table(model, name)
        if rules.get(name):
            out += ["", "Checked across fields:", ""] + [f"- {r}" for r in rules[name]]
        partials = [p for p, base in partial.items() if base == name]
        for p in partials:
            out += ["", f"In `defaults` this block is {link(p)}: the same fields, each optional and unset "
                        "by default; set keys are merged under every stage that has the block, and a "
                        "stage's own keys win."]
        out.append("")
    for name, base in sorted(partial.items()):
        out += [f"## {name}", "", f"{link(base)} with every field optional (default: unset). Appears at: "
                + ", ".join(f"`{p}`" for p in used.get(name, [])), ""]

    out += ["## References between stages", "",
            "These fields hold the name of another stage; they make the DAG. `stage@step` names a "
            "checkpoint the referenced stage keeps (its `train.steps`, or a step listed in its "
            f"`train.save_at`) and is allowed in: {', '.join(f'`{f}`' for f in sorted(graph.CHECKPOINT_FIELDS))}.",
            "An align or pairs stage without `prompts` uses the one dataset upstream of it.", "",
            "| stage kind | field | may name a stage of kind |", "|---|---|---|"]
    for kind in STAGE_ORDER:
        for field, kinds in graph.REFERENCE_FIELDS.get(kind, {}).items():
            out.append(f"| `{kind}` | `{field}` | {', '.join(f'`{k}`' for k in kinds)} |")
    out += ["", "## Sweep keys and aliases", "",
            "A `sweep` key is a dotted path into the stage (`train.lr`, `sampler.shuffle`, `hub_name`) or one "
            "of these aliases. Keys written directly under `sweep` (not under `grid`, `zip`, `seeds`, "
            "`where`) are grid axes. An alias applies only where the stage has its block.", "",
            "| alias | path |", "|---|---|"]
    out += [f"| `{alias}` | `{path}` |" for alias, path in SWEEP_ALIASES.items()]
    out += ["", "## Layering: extends, profiles, overrides, defaults", ""]
    out += [line.rstrip() for line in (load.__doc__ or "").strip().splitlines()]
    out += ["", "Mappings merge key by key; a list or a scalar replaces what was there. A profile may add "
                "stages, change a stage's `kind`, or replace a sweep's lists.", ""]
    return "\n".join(out)


def render_schema() -> str:
    """Exactly what `specc schema -o FILE` writes."""
    from specc.compiler.schema import Spec

    return json.dumps(Spec.model_json_schema(), indent=1) + "\n"


def main(argv: list[str]) -> int:
    outputs = {OUTPUT: render(), SCHEMA_OUTPUT: render_schema()}
    if "--check" in argv:
        stale = [path for path, text in outputs.items()
                 if not path.exists() or path.read_text(encoding="utf-8") != text]
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale: run python scripts/gen_reference.py", file=sys.stderr)
        return 1 if stale else 0
    for path, text in outputs.items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
