"""Fixtures for the interop tests (python-qpid-proton clients against a real broker)."""
import pytest
from proton.utils import BlockingConnection


@pytest.fixture
def conn(broker):
    """A BlockingConnection to the test's broker, closed after the test."""
    c = BlockingConnection(broker.url, timeout=20)
    yield c
    c.close()
