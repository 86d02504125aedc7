"""Every malformed spec is refused with located errors, never with a traceback.

Most cases go through the Python API (fast); a sample goes through the real
`specc validate` in a subprocess. The strategies are in malformed_specs.py.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from malformed_specs import malformed_specs
from specc.compiler.plan import compile_spec
from specc.errors import SpecErrors

# 1,200 cases take about 30 s of one core; each CLI case costs a process start (~0.5 s)
API_EXAMPLES = 1200
CLI_EXAMPLES = 20
_counter = itertools.count()


def _write(directory: Path, content) -> Path:
    path = directory / f"case{next(_counter)}.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _settings(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_malformed_specs_give_located_errors(tmp_path):
    distinct: set[bytes] = set()

    @_settings(API_EXAMPLES)
    @given(case=malformed_specs)
    def check(case):
        label, content = case
        path = _write(tmp_path, content)
        with pytest.raises(SpecErrors) as raised:
            compile_spec(path)
        errors = raised.value.errors
        assert errors, label
        for error in errors:
            assert error.location.file == str(path), (label, str(error))
            assert error.location.line >= 1 and error.location.column >= 1, (label, str(error))
            assert error.message.strip(), (label, str(error))
            assert str(error).startswith(f"{path}:{error.location.line}:{error.location.column}: "), (label, str(error))
        distinct.add(content if isinstance(content, bytes) else content.encode())
        path.unlink()

    check()
    assert len(distinct) >= 1000


def _specc() -> list[str]:
    exe = shutil.which("specc")
    return [exe] if exe else [sys.executable, "-c", "from specc.cli import main; main()"]


def test_malformed_specs_through_cli(tmp_path):
    tried = []

    @_settings(CLI_EXAMPLES)
    @given(case=malformed_specs)
    def check(case):
        label, content = case
        path = _write(tmp_path, content)
        result = subprocess.run([*_specc(), "validate", str(path)], capture_output=True, text=True, timeout=300)
        output = result.stdout + result.stderr
        assert result.returncode == 2, (label, output)
        assert "Traceback" not in output, (label, output)
        located = re.compile(rf"^{re.escape(str(path))}:[1-9]\d*:[1-9]\d*: \S", re.MULTILINE)
        assert located.search(result.stderr), (label, result.stderr)
        tried.append(label)

    check()
    assert len(tried) >= CLI_EXAMPLES
