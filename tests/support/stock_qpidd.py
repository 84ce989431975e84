"""The stock qpidd 1.40 (``make stock-qpidd`` unpacks it into build/qpidd-install), for tests that
drive the original broker: where it is, and the command line of an HA broker on it.

``CYPID_STOCK_QPIDD`` names another install directory (the one holding ``sbin/qpidd``). Tests that
need it call :func:`require` and skip when it is missing or does not run here (its Debian libraries
are not installed).
"""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def install_dir() -> Path:
    return Path(os.environ.get("CYPID_STOCK_QPIDD") or REPO / "build" / "qpidd-install")


def _runs(binary: Path) -> bool:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "qpid-cpp" in out.stdout


def require() -> Path:
    """The stock qpidd's install directory; skips the test if it is missing or cannot run."""
    root = install_dir()
    binary = root / "sbin" / "qpidd"
    if not binary.exists():
        pytest.skip("stock qpidd not found at %s (make stock-qpidd)" % binary)
    if not _runs(binary):
        pytest.skip("stock qpidd at %s does not run here (its Debian libraries are missing?)" % binary)
    return root


def command(root: Path, *modules: str) -> list[str]:
    """qpidd with only the named modules (``amqp``, ``ha``, ``linearstore`` ...), no authentication."""
    cmd = [str(root / "sbin" / "qpidd"), "--auth", "no", "--no-module-dir", "--log-enable", "notice+"]
    for name in modules:
        cmd += ["--load-module", str(root / "lib" / "qpid" / "daemon" / (name + ".so"))]
    return cmd


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
