"""Which SQL `specc query` runs: reading statements only.

The store is also opened read-only, so DuckDB itself rejects writes to it; this check runs first
and says why in words, and it also stops what a read-only connection would still allow (COPY ...
TO a file, ATTACH of another database, temporary tables, SET, INSTALL/LOAD).
"""

from __future__ import annotations

import re

import duckdb

from specc.errors import UserError

# PRAGMAs that only describe the store.
READ_PRAGMAS = frozenset({
    "table_info", "show", "show_tables", "show_tables_expanded", "show_databases", "database_list", "database_size",
    "storage_info", "metadata_info", "version", "platform", "functions", "collations", "user_agent"})
_EXPLAIN = re.compile(r"^\s*explain\s*(\([^)]*\)\s*)?(analy[sz]e\s+)?", re.IGNORECASE)
_PRAGMA = re.compile(r"^\s*pragma\s+(\w+)", re.IGNORECASE)


class WriteRefused(UserError):
    """A statement that would change something; `specc query` only reads."""


def read_only_statements(sql: str) -> list[str]:
    """The statements of `sql`, each checked to only read; raises WriteRefused for any other,
    duckdb.ParserException for text that is not SQL."""
    statements = duckdb.connect().extract_statements(sql)  # parsing needs no database
    if not statements:
        raise UserError("no SQL statement given")
    for statement in statements:
        _check(statement)
    return [statement.query for statement in statements]


def _check(statement) -> None:
    kind = statement.type
    text = statement.query.strip()
    if kind == duckdb.StatementType.SELECT:
        return
    if kind == duckdb.StatementType.EXPLAIN:
        inner = _EXPLAIN.sub("", text, count=1)
        for inner_statement in duckdb.connect().extract_statements(inner):
            _check(inner_statement)  # EXPLAIN ANALYZE runs its statement
        return
    if kind == duckdb.StatementType.PRAGMA:
        match = _PRAGMA.match(text)
        if match and match.group(1).lower() in READ_PRAGMAS:
            return
    verb = kind.name.replace("_", " ")
    snippet = " ".join(text.split())
    snippet = snippet if len(snippet) <= 60 else snippet[:57] + "..."
    raise WriteRefused(
        f"refused `{snippet}`: a {verb} statement, and specc query only reads (the store changes only through "
        "specc run / specc ingest). Use SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE or EXPLAIN; "
        "--format parquet --output FILE exports a result.")
