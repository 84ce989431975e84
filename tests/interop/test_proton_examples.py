"""Proton's own Python examples, run unmodified against cypid, with the output proton's own example
tests expect (python/examples/test_examples.py in qpid-proton).

The programs are vendored in tests/interop/proton_examples/ as they are in qpid-proton (Apache
License 2.0, their headers kept). Those that take ``-a`` get the broker's address; helloworld.py
and queue_browser.py connect to ``localhost:5672`` in their code, so each runs with a
``sitecustomize`` on its PYTHONPATH that points ``Container.connect("localhost:5672")`` at the test's
broker (the program itself is not touched). The node ``examples`` is a queue, created first, as
qpidd's users do with qpid-config.
"""
import os
import subprocess
import sys

import pytest
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "proton_examples")
SHIM = '''import os
from proton.reactor import Container

_broker = os.environ.get("CYPID_EXAMPLE_BROKER")
if _broker:
    _connect = Container.connect

    def connect(self, url=None, *args, **kwargs):
        if isinstance(url, str) and url.startswith("localhost:5672"):
            url = _broker + url[len("localhost:5672"):]
        return _connect(self, url, *args, **kwargs)
    Container.connect = connect
'''
TIMEOUT = 60


@pytest.fixture
def examples(broker, tmp_path):
    """run(name, *args) -> the program's output lines; start(name, *args) -> a running Popen."""
    conn = BlockingConnection(broker.url, timeout=20)
    conn.create_sender("examples", options=CreateQueue()).close()
    conn.close()
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SHIM)
    env = dict(os.environ, PYTHONPATH=str(shim), CYPID_EXAMPLE_BROKER="127.0.0.1:%d" % broker.port,
               PYTHONUNBUFFERED="1")
    address = "127.0.0.1:%d/examples" % broker.port
    started = []

    def command(name, args):
        args = [a.replace("ADDRESS", address) for a in args]
        return [sys.executable, os.path.join(HERE, name + ".py")] + args

    def run(name, *args):
        p = subprocess.run(command(name, args), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=TIMEOUT)
        assert p.returncode == 0, p.stdout
        return [line.strip() for line in p.stdout.splitlines()]

    def start(name, *args):
        p = subprocess.Popen(command(name, args), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
        started.append(p)
        return p

    run.start = start
    yield run
    for p in started:
        if p.poll() is None:
            p.terminate()
            p.wait(timeout=10)
        p.stdout.close()


def test_helloworld(examples):
    assert examples("helloworld") == ["Hello World!"]


def test_simple_send_recv(examples):
    assert examples("simple_send", "-a", "ADDRESS") == ["all messages confirmed"]
    assert examples("simple_recv", "-a", "ADDRESS") == ["{'sequence': %d}" % (i + 1) for i in range(100)]


def test_selected_recv(examples):
    examples("colour_send", "-a", "ADDRESS")
    assert examples("selected_recv", "-a", "ADDRESS", "-m", "50") == \
        ["green %d" % (i + 1) for i in range(100) if i % 2 == 0]
    # The red ones stayed on the queue for the plain receiver.
    assert examples("simple_recv", "-a", "ADDRESS", "-m", "50") == \
        ["red %d" % (i + 1) for i in range(100) if i % 2 == 1]


def test_queue_browser(examples):
    examples("simple_send", "-a", "ADDRESS", "-m", "3")
    lines = examples("queue_browser")
    assert len(lines) == 3 and all("sequence" in line for line in lines), lines
    # Browsing took nothing.
    assert examples("simple_recv", "-a", "ADDRESS", "-m", "3") == ["{'sequence': %d}" % (i + 1) for i in range(3)]


REQUESTS = ["Twas brillig, and the slithy toves", "Did gire and gymble in the wabe.",
            "All mimsy were the borogroves,", "And the mome raths outgrabe."]


@pytest.mark.parametrize("client", ["client", "sync_client"])
def test_client_server_with_a_dynamic_reply_to(examples, client):
    examples.start("server", "-a", "ADDRESS")
    assert examples(client, "-a", "ADDRESS") == ["%s => %s" % (r, r.upper()) for r in REQUESTS]


def test_tx_send_tx_recv(examples):
    """proton's test_tx_send_tx_recv: the transactional receiver started first, then the
    transactional sender (ten transactions of ten messages each way)."""
    receiver = examples.start("tx_recv", "-a", "ADDRESS")
    assert examples("tx_send", "-a", "ADDRESS") == ["all messages committed"]
    out, _ = receiver.communicate(timeout=TIMEOUT)
    assert receiver.returncode == 0, out
    assert [line.strip() for line in out.splitlines()] == ["{'sequence': %d}" % (i + 1) for i in range(100)]
