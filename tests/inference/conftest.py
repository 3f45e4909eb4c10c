import pytest


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    """Every inference test runs torch on one thread (see ``one_torch_thread``)."""
