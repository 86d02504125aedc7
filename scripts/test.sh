#!/usr/bin/env bash
# Everything the test suite needs on a fresh Debian machine, then the suite.
# System packages: Debian's chromium (browser tests) and a single-node SLURM cluster (slurm tests).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    if ! command -v chromium >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
    fi
    if [ -x scripts/slurm/up.sh ]; then
        bash scripts/slurm/up.sh || echo "SLURM cluster did not start: slurm tests will be skipped"
    fi
fi
python -m pip install -q -e ".[test]"
python -m pytest -q "$@"
