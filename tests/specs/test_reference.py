"""docs/reference.md is what scripts/gen_reference.py writes from the current schema."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "scripts" / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_reference_is_current():
    expected = _generator().render()
    committed = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    assert committed == expected, "docs/reference.md is stale: run python scripts/gen_reference.py"


def test_reference_is_deterministic():
    gen = _generator()
    assert gen.render() == gen.render()


def test_every_field_of_the_schema_is_documented():
    from specc.compiler.schema import Spec

    gen = _generator()
    text = gen.render()
    schema = Spec.model_json_schema()
    for name, block in schema["$defs"].items():
        assert f"## {name}" in text
        if name.startswith("Default"):
            continue
        for field in block.get("properties", {}):
            row = next((line for line in text.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0].splitlines()
                        if line.startswith(f"| `{field}` |")), None)
            assert row is not None, (name, field)
            assert not row.endswith("|  |"), f"{name}.{field} has no description"


def test_every_field_is_described_beside_it_in_the_schema():
    """The schema is the one source of field documentation: no description lives elsewhere."""
    from specc.compiler import schema

    models = [m for m in vars(schema).values() if isinstance(m, type) and issubclass(m, schema.Block)]
    undescribed = [f"{m.__name__}.{name}" for m in models for name, info in m.model_fields.items()
                   if not info.description]
    assert undescribed == []
    assert not hasattr(_generator(), "FALLBACK")


def test_committed_json_schema_is_what_specc_schema_prints(tmp_path):
    from typer.testing import CliRunner

    from specc.cli import app

    out = tmp_path / "schema.json"
    assert CliRunner().invoke(app, ["schema", "-o", str(out)]).exit_code == 0
    committed = (ROOT / "docs" / "spec.schema.json").read_text(encoding="utf-8")
    assert committed == out.read_text(encoding="utf-8") == _generator().render_schema(), (
        "docs/spec.schema.json is stale: run python scripts/gen_reference.py")
