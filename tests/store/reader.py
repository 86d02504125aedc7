"""A read-only client polling the store while jobs and ingestion run; run as a script.

Writes what it saw as JSON after `stop` appears: every (rows, distinct keys) observation and any
error. A reader must never see duplicates or a count that goes down (each ingest is one transaction)."""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

from specc.store.db import query


def main(workspace: Path, stop: Path, out: Path) -> None:
    seen, errors = [], []
    while True:
        last = stop.exists()  # after `stop`, one more query: it sees the final ingest
        try:
            _, rows = query(workspace, "SELECT count(*), count(DISTINCT (job_id, step, name)) FROM metrics")
            seen.append(list(rows[0]))
        except FileNotFoundError:
            pass  # the first ingest has not created the store yet
        except Exception:  # noqa: BLE001 -- reported to the test, which fails on any
            errors.append(traceback.format_exc())
        if last:
            break
        time.sleep(0.01)
    out.write_text(json.dumps({"seen": seen, "errors": errors}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
