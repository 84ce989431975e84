"""Fault tests: bad input on the wire and clients killed mid-transfer, against a live broker process.

Every test here is marked ``faults`` (``pytest -m faults`` / ``-m "not faults"``). Each has a
python-qpid-proton *bystander* connection opened before the fault and checks it still works after.

``shared_broker``/``shared_bystander`` are one broker (and bystander) per module, for the many small
bad-input tests: starting a broker per test would cost more than the tests. A test using them gets
the broker's log from its own start printed if it fails.
"""
import pytest

from tests.conftest import _failed, fail_on_leaks
from tests.support.broker import BrokerFactory
from tests.support.faults import Bystander


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "faults: fault-injection tests (bad input, killed clients) against a live broker")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/tests/faults/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def bystander(broker):
    """A proton connection (sender + receiver on its own queue) opened before the test's fault."""
    b = Bystander(broker)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def shared_broker_process(tmp_path_factory):
    factory = BrokerFactory(tmp_path_factory.mktemp("faults"))
    try:
        yield factory()
    finally:
        factory.close()
        fail_on_leaks(factory.leaks())


@pytest.fixture
def shared_broker(shared_broker_process, request):
    """The module's broker; its log since this test began is printed if the test fails."""
    broker = shared_broker_process
    start = len(broker.log_text())
    yield broker
    if _failed(request):
        print(f"\n===== log of {broker!r} during this test =====\n{broker.log_text()[start:]}")


@pytest.fixture(scope="module")
def shared_bystander(shared_broker_process):
    b = Bystander(shared_broker_process)
    try:
        yield b
    finally:
        b.close()
