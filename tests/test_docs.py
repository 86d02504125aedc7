"""What the documentation says, where the code can check it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from specc.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands() -> dict:
    return {(c.name or c.callback.__name__): c.callback for c in app.registered_commands}


def test_every_file_a_doc_or_docstring_links_to_exists():
    missing = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if not target.startswith(("http://", "https://", "mailto:")) and not (doc.parent / target).exists():
                missing.append(f"{doc.relative_to(ROOT)} -> {target}")
    for module in sorted((ROOT / "specc").rglob("*.py")):
        for name in re.findall(r"\b([\w./-]+\.md)\b", module.read_text(encoding="utf-8")):
            if not any((base / name).exists() for base in (ROOT, ROOT / "docs")):
                missing.append(f"{module.relative_to(ROOT)} -> {name}")
    assert missing == []


def test_the_readme_lists_every_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `specc (\w+)", readme, flags=re.M))
    assert listed == set(_commands())


def test_the_spec_options_the_readme_promises():
    """README: every command that takes a spec accepts --profile and --set; all but validate --workspace."""
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "all of them but `validate`, which reads no results, also accept `--workspace DIR`" in readme
    for name, callback in _commands().items():
        params = inspect.signature(callback).parameters
        if "spec" not in params:
            continue
        assert {"profile", "set_"} <= set(params), name
        assert ("workspace" in params) == (name != "validate"), name
