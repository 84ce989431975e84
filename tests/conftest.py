"""Shared pytest fixtures: real broker processes (see tests/support/broker.py)."""
import pytest

from tests.support.broker import BrokerFactory, BrokerProcess, claim_leaks


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    # Keep each phase's report on the item so fixtures can tell, at teardown, whether the test failed.
    report = yield
    setattr(item, "rep_" + report.when, report)
    return report


def _failed(request) -> bool:
    return any(getattr(getattr(request.node, "rep_" + when, None), "failed", False)
               for when in ("setup", "call"))


@pytest.fixture(autouse=True, scope="module")
def _audit_module_brokers():
    """A module's own brokers (module-scoped fixtures) are audited at the module's end."""
    yield
    fail_on_leaks(claim_leaks())


@pytest.fixture(autouse=True)
def _audit_brokers():
    """Every broker stopped cleanly during a test -- by any fixture or by the test itself -- is audited:
    what it kept fails the test (a test that leaks on purpose claims its leaks: claim_leaks)."""
    yield
    fail_on_leaks(claim_leaks())


@pytest.fixture
def broker_factory(request, tmp_path):
    """``broker_factory(*args, name=None, **BrokerProcess kwargs) -> BrokerProcess``: start brokers
    (each on a free port, with its own data dir under tmp_path); all are stopped after the test,
    and if the test failed their logs are printed. A broker that kept connections, sessions, links,
    unsettled deliveries, holds, journal files or descriptors after a clean stop fails the test."""
    factory = BrokerFactory(tmp_path / "brokers")
    try:
        yield factory
    finally:
        factory.close()
        if _failed(request):
            for b, text in factory.logs():
                print(f"\n===== log of {b!r} ({b.log_path}) =====\n{text}")
        fail_on_leaks(factory.leaks())


def fail_on_leaks(leaks):
    """Fail the test (at teardown) if a broker's stop audit found something kept (broker/audit.py).
    The lines are taken off the ledger of unclaimed leaks (tests/support/broker.py): reported once."""
    claim_leaks(leaks)
    if leaks:
        pytest.fail("leak audit: the broker kept, after every connection closed:\n" + "\n".join(leaks),
                    pytrace=False)


@pytest.fixture
def broker(broker_factory) -> BrokerProcess:
    """A running broker (``.port``, ``.url``, ``.stop()``, ``.restart()``, ``.log_text()``)."""
    return broker_factory()
