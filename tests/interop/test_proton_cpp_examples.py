"""Proton's C++ examples, as Debian ships them (libqpid-proton11-dev-examples, built with g++ against
libqpid-proton-cpp12-dev by ``make proton-cpp-examples`` into build/proton-cpp-examples), run
unmodified against cypid with the output they print against qpidd: simple_send/simple_recv,
colour_send + selected_recv (the greens, the reds left for simple_recv), queue_browser (it sees
every message and takes none), and client with server over a dynamic reply-to queue.

selected_recv, queue_browser and server run until stopped: each is stopped once what it must print
is printed and the messages it must not take have been taken by another program, and its whole
output is then compared. Without the built programs (no Debian mirror, no g++) these tests skip.
"""
import os
import subprocess
import threading
from pathlib import Path

import pytest
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue
from tests.support.broker import wait_until

BUILT = Path(os.environ.get("CYPID_PROTON_CPP_EXAMPLES",
                            Path(__file__).resolve().parents[2] / "build" / "proton-cpp-examples"))
TIMEOUT = 60


class Running:
    """A program left running; its output lines are collected as they come."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_lines(self, n):
        wait_until(lambda: len(self.lines) >= n or self.proc.poll() is not None, TIMEOUT,
                   message=lambda: "%d lines from %s, have %r" % (n, self.proc.args[0], self.lines))
        assert len(self.lines) >= n, self.lines

    def stop(self):
        """Stop it (it never exits by itself) and return everything it printed."""
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=TIMEOUT)
        self.reader.join(timeout=TIMEOUT)
        return self.lines


class Examples:
    def __init__(self, broker):
        self.url = "//127.0.0.1:%d" % broker.port
        self.address = "127.0.0.1:%d/examples" % broker.port
        self.running = []

    @staticmethod
    def program(name):
        path = BUILT / name
        if not os.access(path, os.X_OK):
            pytest.skip("proton's C++ example %s is not built (make proton-cpp-examples)" % name)
        return str(path)

    def run(self, name, *args):
        p = subprocess.run([self.program(name), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=TIMEOUT)
        assert p.returncode == 0, p.stdout
        return p.stdout.splitlines()

    def start(self, name, *args):
        r = Running([self.program(name), *args])
        self.running.append(r)
        return r

    def close(self):
        for r in self.running:
            r.stop()


@pytest.fixture
def examples(broker):
    """The node ``examples`` is a queue, made first as qpidd's users make it with qpid-config."""
    conn = BlockingConnection(broker.url, timeout=20)
    conn.create_sender("examples", options=CreateQueue()).close()
    conn.close()
    ex = Examples(broker)
    yield ex
    ex.close()


def sequences(first, last):
    return ['{"sequence"=%d}' % i for i in range(first, last + 1)]


def test_simple_send_then_simple_recv(examples):
    assert examples.run("simple_send", "-a", examples.address, "-m", "100") == ["all messages confirmed"]
    assert examples.run("simple_recv", "-a", examples.address, "-m", "100") == sequences(1, 100)


def test_colour_send_and_selected_recv(examples):
    assert examples.run("colour_send", "-a", examples.address, "-m", "100") == ["all messages confirmed"]
    greens = ["green %d" % i for i in range(1, 101, 2)]
    reds = ["red %d" % i for i in range(2, 101, 2)]
    selected = examples.start("selected_recv", examples.url, "examples")
    selected.wait_lines(len(greens))
    # the reds stayed on the queue for another consumer while selected_recv was still consuming
    assert examples.run("simple_recv", "-a", examples.address, "-m", "50") == reds
    assert selected.stop() == greens


def test_queue_browser_sees_everything_and_takes_nothing(examples):
    assert examples.run("simple_send", "-a", examples.address, "-m", "10") == ["all messages confirmed"]
    browser = examples.start("queue_browser", examples.url, "examples")
    browser.wait_lines(10)
    assert examples.run("simple_recv", "-a", examples.address, "-m", "10") == sequences(1, 10)
    assert browser.stop() == sequences(1, 10)


def test_client_and_server_with_a_dynamic_reply_queue(examples):
    requests = ["Twas brillig, and the slithy toves", "Did gire and gymble in the wabe.",
                "All mimsy were the borogroves,", "And the mome raths outgrabe."]
    server = examples.start("server", examples.url, "examples")
    server.wait_lines(1)
    assert examples.run("client", "-a", examples.address) == ["%s => %s" % (r, r.upper()) for r in requests]
    assert server.stop() == ["Server connected to %s" % examples.url] + ["Received %s" % r for r in requests]
