"""The results store: DuckDB schema (schema), what ingestion finds in job dirs (scan), ingestion
and read-only queries (db), which SQL `specc query` may run (readonly), result files (export).
See docs/store.md."""
