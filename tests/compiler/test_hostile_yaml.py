"""Specs written to hurt the loader: alias bombs, unclosed brackets, typos in unselected profiles."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from specc.compiler.source import parse_yaml
from specc.errors import SpecErrors

ROOT = Path(__file__).resolve().parents[2]


def alias_bomb(levels: int) -> str:
    lines = ["name: bomb", "l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines + ["stages: {}"]) + "\n"


@pytest.mark.timeout(60)
def test_an_alias_bomb_is_refused_with_its_line():
    with pytest.raises(SpecErrors) as exc:
        parse_yaml(alias_bomb(10), "bomb.yaml")  # 9^10 values once expanded
    (error,) = exc.value.errors
    assert "aliases expand to more than" in error.message
    assert error.location.file == "bomb.yaml" and 2 <= error.location.line <= 11


def test_a_few_aliases_still_work():
    data = parse_yaml("base: &b {lr: 1, steps: 2}\na: *b\nc: {<<: *b, steps: 3}\n", "ok.yaml").data
    assert data["a"] == {"lr": 1, "steps": 2} and data["c"] == {"lr": 1, "steps": 3}


def test_an_unclosed_bracket_is_reported_where_it_opens():
    with pytest.raises(SpecErrors) as exc:
        parse_yaml("name: x\nbroken: [1, 2\nstages: {}\n\n", "b.yaml")
    (error,) = exc.value.errors
    assert (error.location.line, error.location.column) == (2, 9)
    assert "flow sequence" in error.message and "line 3" in error.message


def test_validate_checks_every_profile(tmp_path, monkeypatch, capsys):
    from specc.cli import main

    text = (ROOT / "specs" / "quickstart.yaml").read_text()
    assert "      sft: {train: {steps: 30}}\n" in text
    spec = tmp_path / "typo.yaml"
    spec.write_text(text.replace("      sft: {train: {steps: 30}}\n", "      sft: {train: {steps: 30, learning_rat: 1}}\n"))
    line = spec.read_text().splitlines().index("      sft: {train: {steps: 30, learning_rat: 1}}") + 1
    monkeypatch.setattr(sys, "argv", ["specc", "validate", str(spec)])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert f"typo.yaml:{line}:" in err and "with --profile smoke: unknown key 'learning_rat'" in err
