import pytest

from tests.runtime.tiny import Run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Run:
    """The tiny spec run by one process: what N ranks must reproduce."""
    run = Run(tmp_path_factory.mktemp("tiny"))
    assert run.result.ok, run.result.failed
    return run
