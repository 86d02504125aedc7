import pytest

from specc.compiler.plan import compile_spec
from specc.runtime.executor import run_local
from tests.watching.helpers import MINI


@pytest.fixture(scope="session")
def mini_run(tmp_path_factory):
    """The mini spec run once in-process (debug executor), without metric sinks."""
    workspace = tmp_path_factory.mktemp("mini") / "runs"
    result = run_local(compile_spec(MINI), workspace, kind="debug")
    assert result.ok, result.failed
    return workspace
