"""Fixtures for the tools' tests: cypid, and a stock qpidd beside it when one is available.

The stock qpidd is ``CYPID_TEST_QPIDD`` (a path or command line) if set, else the 1.40 build that
``make stock-qpidd`` unpacks into build/qpidd-install (from ../shared/tools/qpidd): see
tests/support/stock_qpidd.py (``comparison``). It is used only if it runs here (its shared libraries
are present): otherwise the tests that need it are skipped, saying why.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import _failed, fail_on_leaks
from tests.support.broker import BrokerFactory
from tests.support.stock_qpidd import comparison_or_skip


def cypid_command() -> list[str]:
    """cypid's broker, whatever CYPID_TEST_QPIDD says (the tools' tests compare the two)."""
    script = Path(sys.prefix) / "bin" / "qpidd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cypid.broker.main"]


def _brokers(request, root, command, audited):
    """One broker from a BrokerFactory under ``root``, stopped (and its log shown if the test failed)
    afterwards, as tests/conftest.py's broker fixture."""
    factory = BrokerFactory(root, command=command)
    try:
        yield factory()
    finally:
        factory.close()
        if _failed(request):
            for b, text in factory.logs():
                print(f"\n===== log of {b!r} ({b.log_path}) =====\n{text}")
        if audited:
            fail_on_leaks(factory.leaks())


@pytest.fixture
def qpidd(request, tmp_path):
    """A running stock qpidd (skipped when there is none)."""
    yield from _brokers(request, tmp_path / "qpidd", comparison_or_skip(), audited=False)


@pytest.fixture
def cypid(request, tmp_path):
    """A running cypid broker, even when CYPID_TEST_QPIDD names another program."""
    yield from _brokers(request, tmp_path / "cypid", cypid_command(), audited=True)


@pytest.fixture(params=["cypid", "qpidd"])
def any_broker(request):
    """The test runs against cypid, then against the stock qpidd (skipped when there is none)."""
    return request.getfixturevalue(request.param)
