"""Helpers for the journal's disk tests: a small filesystem of its own on a loop device (so a test
can freeze it, fill it, or make a file immutable without touching anything else), and a proton
producer that records the CLOCK_MONOTONIC time of each outcome.

A LoopFs needs root and the util-linux/e2fsprogs tools; ``LoopFs.skip_unless_possible()`` skips
the test with the reason otherwise.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import Container
from proton.utils import BlockingConnection

from tests.support.blocking import drain

TOOLS = ("losetup", "mkfs.ext4", "mount", "umount", "fsfreeze", "chattr")


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout.strip()


class LoopFs:
    """An ext4 filesystem of ``size_mb`` MiB in ``base/disk.img``, mounted at ``base/mnt``."""

    @staticmethod
    def skip_unless_possible() -> None:
        if os.geteuid() != 0:
            pytest.skip("needs root (losetup, mount, fsfreeze, chattr)")
        missing = [t for t in TOOLS if shutil.which(t) is None]
        if missing:
            pytest.skip("missing tools: %s" % ", ".join(missing))
        if not os.path.exists("/dev/loop-control"):
            pytest.skip("no loop devices (/dev/loop-control)")

    def __init__(self, base: Path, size_mb: int = 64):
        self.skip_unless_possible()
        self.image = base / "disk.img"
        self.mnt = base / "mnt"
        self.mnt.mkdir(parents=True)
        with open(self.image, "wb") as f:
            f.truncate(size_mb << 20)
        _run("mkfs.ext4", "-q", "-F", "-m", "0", str(self.image))
        try:
            self.dev = _run("losetup", "-f", "--show", str(self.image))
        except subprocess.CalledProcessError as e:
            pytest.skip("no free loop device: %s" % e.stderr.strip())
        self.frozen = False
        try:
            _run("mount", self.dev, str(self.mnt))
        except subprocess.CalledProcessError as e:
            _run("losetup", "-d", self.dev)
            pytest.skip("cannot mount a loop device here: %s" % e.stderr.strip())

    def freeze(self) -> None:
        _run("fsfreeze", "-f", str(self.mnt))
        self.frozen = True

    def thaw(self) -> None:
        if self.frozen:
            _run("fsfreeze", "-u", str(self.mnt))
            self.frozen = False

    def fill(self) -> Path:
        """Fill the filesystem (a file ``filler``); returns its path."""
        path = self.mnt / "filler"
        chunk = b"\xa5" * (1 << 20)
        with open(path, "wb") as f:
            try:
                while True:
                    f.write(chunk)
                    f.flush()
            except OSError:
                pass
            try:
                for n in (65536, 4096, 512):
                    while True:
                        f.write(chunk[:n])
                        f.flush()
            except OSError:
                pass
            try:
                os.fsync(f.fileno())
            except OSError:
                pass
        return path

    def close(self) -> None:
        try:
            self.thaw()
        except subprocess.CalledProcessError:
            pass
        for _ in range(50):
            if subprocess.run(["umount", str(self.mnt)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)  # poll: umount until the filesystem is no longer busy (50 tries)
        else:
            subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)
        subprocess.run(["losetup", "-d", self.dev], capture_output=True)


class TimedProducer(MessagingHandler):
    """Sends ``count`` durable messages (application property ``n`` = first, first + 1, ...; body
    of ``size`` bytes, or ``sizes(n)``) to ``address`` with at most ``window`` unsettled, and records for each n the
    time.monotonic() at which its outcome arrived: ``accepted``, ``rejected``, ``released``
    (dicts n -> time). Run it with ``start()`` (a thread) and ``join()``."""

    def __init__(self, url: str, address: str, count: int, size: int = 1024, window: int = 50,
                 sizes=None, first: int = 1):
        super().__init__(auto_settle=True)
        self.url = url
        self.address = address
        self.count = count
        self.window = window
        self.size = size
        self.sizes = sizes
        self.next_n = first
        self.last_n = first + count - 1
        self.inflight: dict = {}
        self.accepted: dict[int, float] = {}
        self.rejected: dict[int, float] = {}
        self.released: dict[int, float] = {}
        self.error: str | None = None
        self.sender = None
        self.done = threading.Event()
        self.container: Container | None = None
        self.thread: threading.Thread | None = None

    def body(self, n: int) -> str:
        size = self.sizes(n) if self.sizes else self.size
        return ("%d:" % n).ljust(size, "x")

    def on_start(self, event):
        conn = event.container.connect(self.url, reconnect=False)
        self.sender = event.container.create_sender(conn, self.address)

    def on_sendable(self, event):
        self._pump()

    def _pump(self):
        s = self.sender
        while s.credit and self.next_n <= self.last_n and len(self.inflight) < self.window:
            n = self.next_n
            self.next_n += 1
            self.inflight[s.send(Message(body=self.body(n), durable=True, properties={"n": n}))] = n

    def _outcome(self, event, book):
        n = self.inflight.pop(event.delivery, None)
        if n is not None:
            book[n] = time.monotonic()
        if len(self.accepted) + len(self.rejected) + len(self.released) >= self.count:
            event.connection.close()
            self.done.set()
        else:
            self._pump()

    def on_accepted(self, event):
        self._outcome(event, self.accepted)

    def on_rejected(self, event):
        self._outcome(event, self.rejected)

    def on_released(self, event):
        self._outcome(event, self.released)

    def on_transport_error(self, event):
        self.error = str(event.transport.condition)
        self.done.set()

    def on_disconnected(self, event):
        self.done.set()

    def start(self) -> "TimedProducer":
        def run():
            try:
                self.container = Container(self)
                self.container.run()
            except Exception as e:  # the broker went away mid-call
                self.error = str(e)
            finally:
                self.done.set()
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return self

    def join(self, timeout: float = 30) -> bool:
        return self.done.wait(timeout)

    def outcomes(self) -> int:
        return len(self.accepted) + len(self.rejected) + len(self.released)


def received_numbers(url: str, address: str) -> list[int]:
    """The application property ``n`` of every message waiting on ``address``, in order (each is
    consumed)."""
    conn = BlockingConnection(url, timeout=30)
    try:
        receiver = conn.create_receiver(address, credit=None)
        out = []
        while True:
            n = drain(conn, receiver, 200, timeout=30)
            if not n:
                return out
            for _ in range(n):
                out.append(receiver.receive(timeout=10).properties["n"])
                receiver.accept()
    finally:
        conn.close()
