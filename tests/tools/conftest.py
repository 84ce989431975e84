"""Fixtures for the tools' tests: cypid, and a stock qpidd beside it when one is available.

The stock qpidd is ``CYPID_TEST_QPIDD`` (a path or command line) if set, else the 1.40 build that
``make stock-qpidd`` unpacks into build/qpidd-install (from ../shared/tools/qpidd). It is used only
if it runs here (its shared libraries are present): otherwise the tests that need it are skipped,
saying why. It loads its AMQP 1.0 module (and linearstore when that module's libraries are there)
explicitly, never from a module directory.
"""
from __future__ import annotations

import functools
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import _failed, fail_on_leaks
from tests.support.broker import BrokerFactory

ROOT = Path(__file__).resolve().parents[2]
BUNDLED_QPIDD = ROOT / "build" / "qpidd-install" / "sbin" / "qpidd"
QPIDD_ENV = "CYPID_TEST_QPIDD"


def cypid_command() -> list[str]:
    """cypid's broker, whatever CYPID_TEST_QPIDD says (the tools' tests compare the two)."""
    script = Path(sys.prefix) / "bin" / "qpidd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "cypid.broker.main"]


def _libraries_missing(path: Path) -> list[str]:
    try:
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split()[0] for line in out.splitlines() if "not found" in line]


@functools.lru_cache(maxsize=1)
def stock_qpidd() -> tuple[list[str] | None, str]:
    """(command line, "") for a stock qpidd that runs here, else (None, why not)."""
    env = os.environ.get(QPIDD_ENV)
    if env:
        program = shlex.split(env)
    elif BUNDLED_QPIDD.exists():
        program = [str(BUNDLED_QPIDD)]
    else:
        return None, "no stock qpidd (set %s, or run make stock-qpidd)" % QPIDD_ENV
    try:
        version = subprocess.run(program + ["--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return None, "stock qpidd %s does not run: %s" % (program[0], e)
    if version.returncode != 0 or "qpid-cpp" not in version.stdout:
        return None, "stock qpidd %s does not run here: %s" % (program[0], (version.stderr or version.stdout)[-300:])
    args = ["--auth", "no", "--log-enable", "notice+"]
    modules = Path(program[-1]).resolve().parent.parent / "lib" / "qpid" / "daemon"
    if (modules / "amqp.so").exists():
        args += ["--no-module-dir", "--load-module", str(modules / "amqp.so")]
        store = modules / "linearstore.so"
        if store.exists() and not _libraries_missing(store):
            args += ["--load-module", str(store)]
    return program + args, ""


def qpidd_or_skip() -> list[str]:
    command, why = stock_qpidd()
    if command is None:
        pytest.skip(why)
    return command


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
    yield from _brokers(request, tmp_path / "qpidd", qpidd_or_skip(), audited=False)


@pytest.fixture
def cypid(request, tmp_path):
    """A running cypid broker, even when CYPID_TEST_QPIDD names another program."""
    yield from _brokers(request, tmp_path / "cypid", cypid_command(), audited=True)


@pytest.fixture(params=["cypid", "qpidd"])
def any_broker(request):
    """The test runs against cypid, then against the stock qpidd (skipped when there is none)."""
    return request.getfixturevalue(request.param)
