"""The stock qpidd 1.40 (``make stock-qpidd`` unpacks it into build/qpidd-install), for tests that
drive the original broker: where it is, whether it runs here, and its command lines.

``CYPID_STOCK_QPIDD`` names another install directory (the one holding ``sbin/qpidd``). Tests that
need it call :func:`require` and skip when it is missing or does not run here (its Debian libraries
are not installed). The tools' tests compare cypid with the qpidd :func:`comparison` names:
``CYPID_TEST_QPIDD`` (a path or a command line) if set, else the one in the install directory.
Every command loads its modules explicitly, never from a module directory.
"""
from __future__ import annotations

import functools
import os
import shlex
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPARISON_ENV = "CYPID_TEST_QPIDD"
BASE_ARGS = ["--auth", "no", "--log-enable", "notice+"]


def install_dir() -> Path:
    return Path(os.environ.get("CYPID_STOCK_QPIDD") or REPO / "build" / "qpidd-install")


def why_not(program: list[str]) -> str:
    """"" if ``program --version`` runs and is qpid-cpp's, else why not."""
    try:
        out = subprocess.run(program + ["--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return "stock qpidd %s does not run: %s" % (program[0], e)
    if out.returncode != 0 or "qpid-cpp" not in out.stdout:
        return "stock qpidd %s does not run here (its Debian libraries are missing?): %s" % (
            program[0], (out.stderr or out.stdout)[-300:])
    return ""


def require() -> Path:
    """The stock qpidd's install directory; skips the test if it is missing or cannot run."""
    root = install_dir()
    binary = root / "sbin" / "qpidd"
    if not binary.exists():
        pytest.skip("stock qpidd not found at %s (make stock-qpidd)" % binary)
    why = why_not([str(binary)])
    if why:
        pytest.skip(why)
    return root


def _module(daemon_dir: Path, name: str) -> list[str]:
    return ["--load-module", str(daemon_dir / (name + ".so"))]


def command(root: Path, *modules: str) -> list[str]:
    """qpidd with only the named modules (``amqp``, ``ha``, ``linearstore`` ...), no authentication."""
    cmd = [str(root / "sbin" / "qpidd")] + BASE_ARGS + ["--no-module-dir"]
    for name in modules:
        cmd += _module(root / "lib" / "qpid" / "daemon", name)
    return cmd


def _libraries_missing(path: Path) -> list[str]:
    try:
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split()[0] for line in out.splitlines() if "not found" in line]


@functools.lru_cache(maxsize=1)
def comparison() -> tuple[list[str] | None, str]:
    """(command line, "") of the qpidd the tools' tests compare cypid with, else (None, why not).
    It loads its AMQP 1.0 module, and linearstore when that module's libraries are there."""
    env = os.environ.get(COMPARISON_ENV)
    if env:
        program = shlex.split(env)
    elif (install_dir() / "sbin" / "qpidd").exists():
        program = [str(install_dir() / "sbin" / "qpidd")]
    else:
        return None, "no stock qpidd (set %s, or run make stock-qpidd)" % COMPARISON_ENV
    why = why_not(program)
    if why:
        return None, why
    args = list(BASE_ARGS)
    daemon_dir = Path(program[-1]).resolve().parent.parent / "lib" / "qpid" / "daemon"
    if (daemon_dir / "amqp.so").exists():
        args += ["--no-module-dir"] + _module(daemon_dir, "amqp")
        if (daemon_dir / "linearstore.so").exists() and not _libraries_missing(daemon_dir / "linearstore.so"):
            args += _module(daemon_dir, "linearstore")
    return program + args, ""


def comparison_or_skip() -> list[str]:
    command_line, why = comparison()
    if command_line is None:
        pytest.skip(why)
    return command_line


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now on 127.0.0.1 (an HA cluster's brokers URL names every
    broker before any starts; a clash shows as a start error naming the port)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def ha_options(ports: list[int], replicate: str = "all") -> list[str]:
    """The options of one broker of an HA cluster on ``ports``, as qpidd's own HA tests run them."""
    return ["--ha-cluster", "yes", "--ha-brokers-url", ",".join("127.0.0.1:%d" % p for p in ports),
            "--ha-replicate", replicate, "--link-maintenance-interval", "0.1",
            "--link-heartbeat-interval", "5"]
