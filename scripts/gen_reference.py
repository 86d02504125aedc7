#!/usr/bin/env python
"""Write docs/reference.md: every block, field, type, default and description of the spec language.

Sources, all read from the installed code (nothing hand-written here can drift):
- the JSON Schema that `specc schema` prints (types, constraints, defaults, class docstrings);
- the comments beside and above each field in specc/compiler/schema.py (descriptions);
- the `raise ValueError(...)` messages of each block's model validators (rules across fields);
- compiler.graph.REFERENCE_FIELDS (which fields name other stages), SWEEP_ALIASES, load.py's layering.

The output depends only on that code: no dates, versions or paths, and a fixed order.

    python scripts/gen_reference.py            # rewrite docs/reference.md
    python scripts/gen_reference.py --check    # exit 1 if docs/reference.md is stale
"""

from __future__ import annotations

import ast
import io
import json
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "reference.md"
INT64_MAX = 2**63 - 1
STAGE_ORDER = ("dataset", "oracle", "label", "sft", "preference_model", "align", "pairs")

# Descriptions for fields that schema.py leaves without a comment or Field(description=...), keyed
# by the class that declares the field. Used only where the source says nothing; a key that no
# longer names a field is an error (tests/specs/test_reference.py), so this table cannot go stale
# silently. Better still: move these into schema.py as Field(description=...).
FALLBACK: dict[tuple[str, str], str] = {
    ("Spec", "name"): "names the spec's report (`reports/<name>.html`) and its rows in the store (`spec_name`)",
    ("Spec", "description"): "free text",
    ("Spec", "defaults"): "model / train / loss keys merged under every stage that has the block",
    ("Spec", "evaluate"): "the evaluation protocol, merged under every align stage's own `evaluate`",
    ("Spec", "stages"): "the named stages; references between them make the DAG",
    ("Spec", "executor"): "where and how jobs run",
    ("Spec", "report"): "what the HTML report draws",
    ("Spec", "max_jobs"): "compiling past this many jobs is an error (a guard against runaway sweeps); "
                          "`--max-jobs` raises it",
    ("StageBase", "description"): "free text; not part of the job's identity",
    ("StageBase", "sweep"): "one job per point; every stage downstream fans out with it",
    ("DatasetStage", "kind"): "a dataset: D_initial, the prompts and pairs everything downstream uses",
    ("DatasetStage", "source"): "`synthetic`: the embedded task (`task`); `files`: a local file (`path`); "
                                "`hub`: a hub dataset (`hub_name`)",
    ("DatasetStage", "task"): "the embedded task (source `synthetic`)",
    ("DatasetStage", "format"): "record layout of real data: Anthropic HH, OpenAI TL;DR comparisons, "
                                "Chatbot Arena, or prompt/chosen/rejected columns (`generic`)",
    ("DatasetStage", "path"): "a local .jsonl, .json, .jsonl.gz, .json.gz or .parquet file (source `files`)",
    ("DatasetStage", "hub_name"): "a hub dataset, e.g. `Anthropic/hh-rlhf` (source `hub`)",
    ("DatasetStage", "subset"): "the hub dataset's configuration, e.g. `comparisons`",
    ("DatasetStage", "split"): "split to read; a fixed tenth of its prompts is held out for evaluation",
    ("DatasetStage", "limit"): "read at most this many usable records",
    ("DatasetStage", "max_prompt_tokens"): "prompts are cut or padded to this many tokens",
    ("DatasetStage", "max_response_tokens"): "responses are cut or padded to this many tokens",
    ("OracleStage", "kind"): "the synthetic task's hidden reward as a judge",
    ("OracleStage", "data"): "the synthetic dataset stage whose hidden reward it exposes",
    ("LabelStage", "kind"): "relabel pairs with a judge",
    ("LabelStage", "data"): "the pairs to relabel, e.g. D_initial",
    ("LabelStage", "judge"): "the judge that decides each pair",
    ("LabelStage", "mode"): "`argmax`: the judge's preferred side wins; `sample`: the winner is drawn "
                            "from the judge's probability",
    ("SftStage", "kind"): "supervised fine-tuning",
    ("SftStage", "data"): "pair dataset stage(s); both responses of every pair are targets",
    ("SftStage", "model"): "the network to train",
    ("SftStage", "train"): "optimisation settings",
    ("PreferenceModelStage", "kind"): "a learned judge",
    ("PreferenceModelStage", "data"): "labelled pairs: D_golden for a proxy, D_initial for a golden judge",
    ("PreferenceModelStage", "form"): "`pairwise`: scores (x, y1, y2), order randomised in training and "
                                      "symmetrised at inference (App. A); `pointwise`: a Bradley-Terry reward model",
    ("PreferenceModelStage", "model"): "the network to train",
    ("PreferenceModelStage", "train"): "optimisation settings",
    ("AlignStage", "kind"): "policy optimisation",
    ("AlignStage", "init"): "the policy to start from (`stage` or `stage@step`); frozen, it is also the "
                            "reference of the loss and of the KL",
    ("AlignStage", "sampler"): "where labelled pairs come from",
    ("AlignStage", "loss"): "the preference loss",
    ("AlignStage", "train"): "optimisation settings",
    ("AlignStage", "evaluate"): "this stage's evaluation; the top-level `evaluate` is merged under it",
    ("PairsStage", "kind"): "D_{a vs b}: a new pair dataset sampled from two policies",
    ("PairsStage", "a"): "policy drawing the first response (`stage` or `stage@step`)",
    ("PairsStage", "b"): "policy drawing the second response (`stage` or `stage@step`)",
    ("PairsStage", "judge"): "the judge that labels each pair",
    ("PairsStage", "prompts"): "dataset stage to draw prompts from; inferred when unique",
    ("PairsStage", "count"): "pairs to make, one per train prompt (at most the number of train prompts)",
    ("PairsStage", "seed"): "seed of the prompt draw and of both samples",
    ("SyntheticTask", "vocab"): "vocabulary size",
    ("SyntheticTask", "prompt_len"): "prompt tokens",
    ("SyntheticTask", "response_len"): "response tokens",
    ("SyntheticTask", "train_prompts"): "prompts (one pair each) in D_initial",
    ("SyntheticTask", "eval_prompts"): "held-out prompts for evaluation",
    ("SyntheticTask", "seed"): "seed of the task: its hidden reward and D_initial",
    ("ModelSettings", "family"): "`tiny`: GPT-2-style, built from config; `hub`: a causal LM by hub name or local path",
    ("ModelSettings", "dtype"): "parameter dtype",
    ("TrainSettings", "steps"): "optimiser steps",
    ("TrainSettings", "batch_size"): "examples (pairs, or sequences for SFT) per step",
    ("TrainSettings", "lr"): "peak learning rate (Adam)",
    ("TrainSettings", "weight_decay"): "decoupled weight decay",
    ("TrainSettings", "grad_clip"): "maximum global gradient norm; null: no clipping",
    ("TrainSettings", "seed"): "seed of everything random in training (sampling, batches)",
    ("LossSettings", "name"): "`ipo`, `dpo`, `slic` (contrastive, on h) or `bo2` (-log pi(y_w|x), SFT on winners)",
    ("LossSettings", "beta"): "regularisation strength: IPO's target margin is 1/(2 beta); DPO and SLiC "
                              "scale h by beta; bo2 ignores it",
    ("Defaults", "model"): "merged under every sft and preference_model stage's `model`",
    ("Defaults", "train"): "merged under every sft, preference_model and align stage's `train`",
    ("Defaults", "loss"): "merged under every align stage's `loss`",
    ("Sweep", "grid"): "axes (dotted path or alias -> values); axes cross",
    ("Sweep", "zip"): "groups of equal-length lists, paired element-wise; groups cross with the grid",
    ("ExecutorSettings", "kind"): "`debug`: in-process; `local`: submitit subprocesses; `slurm`: submitit "
                                  "job arrays on a SLURM cluster",
    ("ExecutorSettings", "partition"): "slurm: partition",
    ("ExecutorSettings", "gpus"): "slurm: GPUs per job; more than one runs the job as one rank (SLURM task) per "
                                  "GPU, sharded with FSDP2 (docs/multi-gpu.md)",
    ("ExecutorSettings", "nodes"): "slurm: nodes per job; its ranks spread evenly over them",
    ("ExecutorSettings", "ranks"): "slurm: ranks per job on CPU-only nodes (torch.distributed over gloo); a GPU "
                                   "job has one rank per GPU",
    ("ExecutorSettings", "cpus"): "slurm: CPUs per job (per rank, where it has several)",
    ("ExecutorSettings", "mem_gb"): "slurm: memory per job, GB",
    ("ExecutorSettings", "time_min"): "slurm: time limit per attempt, minutes (a job that runs out "
                                      "requeues and resumes from its checkpoint)",
    ("ExecutorSettings", "account"): "slurm: account to charge",
    ("ExecutorSettings", "qos"): "slurm: quality of service",
    ("ExecutorSettings", "array_parallelism"): "slurm: array tasks running at once",
    ("ReportSettings", "custom"): "extra figures: name -> a SQL query and a chart",
    ("CustomFigure", "title"): "figure title",
    ("CustomFigure", "sql"): "read-only SQL over the store (see docs/store.md)",
    ("CustomFigure", "mark"): "chart type",
    ("CustomFigure", "x"): "column on the x axis",
    ("CustomFigure", "y"): "column on the y axis",
    ("CustomFigure", "color"): "column that colours the marks",
}


# -- what the source says about each field ------------------------------------------------------


def field_comments(source: str) -> dict[tuple[str, str], str]:
    """(class name, field name) -> the comment beside the field, or the comment block above it.

    A comment block above a field also describes the fields right after it that have no comment of
    their own (up to a blank line): `# cover only: a, b and c` over three fields."""
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    out: dict[tuple[str, str], str] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        inherited = None
        previous_end = None
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                inherited, previous_end = None, None
                continue
            own = " ".join(comments[n] for n in range(item.lineno, item.end_lineno + 1)
                           if n in comments and not lines[n - 1].lstrip().startswith("#"))
            above, n = [], item.lineno - 1
            while n >= 1 and lines[n - 1].lstrip().startswith("#"):
                above.insert(0, comments.get(n, ""))
                n -= 1
            if above:
                inherited = " ".join(above)
            elif previous_end is None or item.lineno != previous_end + 1:
                inherited = None
            text = own or inherited
            if text:
                out[node.name, item.target.id] = text
            if own:
                inherited = None if not above else inherited
            previous_end = item.end_lineno
    return out


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
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(str(v.value) if isinstance(v, ast.Constant) else "{...}" for v in node.values)
    return ast.unparse(node)


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


def describe(cls: str, field: str, prop: dict, comments: dict) -> str:
    """Field(description=...) and the source comment; the fallback table where both are missing."""
    classes = declaring_classes(cls)
    comment = next((comments[c, field] for c in classes if (c, field) in comments), "")
    text = " ".join(t for t in (prop.get("description") or "", comment) if t)
    return text or next((FALLBACK[c, field] for c in classes if (c, field) in FALLBACK), "")


def stale_fallbacks() -> list[tuple[str, str]]:
    """FALLBACK keys that no longer name a field of that class."""
    from specc.compiler import schema as schema_module

    out = []
    for cls, field in FALLBACK:
        model = getattr(schema_module, cls, None)
        if model is None or field not in getattr(model, "model_fields", {}):
            out.append((cls, field))
    return out


def field_table(model: dict, cls: str, comments: dict) -> list[str]:
    required = set(model.get("required", []))
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, prop in model.get("properties", {}).items():
        text = describe(cls, name, prop, comments)
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
    comments = field_comments(source)
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
        "`# yaml-language-server: $schema=../docs/spec.schema.json`) and the comments in",
        "`specc/compiler/schema.py`. Every block rejects keys it does not define. For a guided tour see",
        "[the tutorial](tutorial.md).",
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
        *field_table(schema, "Spec", comments),
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
        out += field_table(model, name, comments)
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


def main(argv: list[str]) -> int:
    stale = stale_fallbacks()
    if stale:
        print(f"FALLBACK names fields that do not exist: {stale}", file=sys.stderr)
        return 1
    text = render()
    if "--check" in argv:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.relative_to(ROOT)} is stale: run python scripts/gen_reference.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
