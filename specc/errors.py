"""Errors meant for people: each names where it happened and what was expected."""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}" if self.line else self.file


@dataclass(frozen=True)
class SpecError:
    location: Location
    field: str  # dotted path, e.g. "stages.offline.sampler.replay"
    message: str

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"{self.location}: {where}{self.message}"


class SpecErrors(Exception):
    """All errors found in a spec, reported together (exit code 2)."""

    def __init__(self, errors: list[SpecError]):
        self.errors = sorted(set(errors), key=lambda e: (e.location.file, e.location.line, e.location.column, e.field))
        super().__init__("\n".join(str(e) for e in self.errors))


class UserError(Exception):
    """A problem the user can fix (bad option, missing workspace): no traceback."""


def did_you_mean(word: str, options) -> str:
    matches = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""
