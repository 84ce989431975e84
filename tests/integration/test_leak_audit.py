"""The leak audit is honest: a broker made to keep every link it attaches, and a pipe per
connection (test-only code wrapped around the daemon, nothing in the broker), fails it; the same
broker unwrapped passes. The audit itself is broker/audit.py; the fixtures apply it to every test."""
import subprocess
import sys
from pathlib import Path

from proton import Message
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue
from tests.support.broker import BrokerProcess, claim_leaks

LEAKY = """
import os, sys
from cypid.broker import links
kept = []
for cls in (links.IncomingLink, links.OutgoingLink):
    def wrap(init):
        def __init__(self, *args, **kwargs):
            init(self, *args, **kwargs)
            kept.append(self)
            kept.append(os.pipe())
        return __init__
    cls.__init__ = wrap(cls.__init__)
from cypid.broker.main import main
sys.exit(main(sys.argv[1:]))
"""


def _use(broker):
    conn = BlockingConnection(broker.url, timeout=20)
    sender = conn.create_sender("audited", options=CreateQueue())
    sender.send(Message(body="x"))
    receiver = conn.create_receiver("audited", credit=1)
    assert receiver.receive(timeout=10).body == "x"
    receiver.accept()
    conn.close()


def test_a_broker_that_keeps_its_links_fails_the_audit(tmp_path):
    broker = BrokerProcess(tmp_path / "leaky", command=[sys.executable, "-c", LEAKY]).start()
    try:
        _use(broker)
    finally:
        broker.stop()
    assert broker.returncode == 0
    assert len(broker.leaks) == 1, broker.log_text()
    leak = broker.leaks[0]
    assert "links=2" in leak and "sessions=" in leak and "pipe: x4" in leak, leak
    assert claim_leaks(broker.leaks) == broker.leaks     # meant: not this test's failure


INNER = """
import sys
from tests.integration.test_leak_audit import LEAKY, _use
from tests.support.broker import BrokerProcess, claim_leaks

def test_a_broker_started_and_stopped_in_the_test_body(tmp_path):
    broker = BrokerProcess(tmp_path / "leaky", command=[sys.executable, "-c", LEAKY]).start()
    try:
        _use(broker)
    finally:
        broker.stop()
"""


def test_a_leak_fails_the_test_whoever_stopped_the_broker(tmp_path):
    """Not only the broker fixtures' brokers: one a test starts and stops itself is audited too
    (tests/conftest.py's autouse teardown), so the test that leaked fails."""
    (tmp_path / "test_inner.py").write_text(INNER)
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "tests.conftest",
         "--rootdir", str(tmp_path), "--basetemp", str(tmp_path / "tmp"), str(tmp_path / "test_inner.py")],
        cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 passed, 1 error" in out.stdout and "leak audit" in out.stdout and "links=2" in out.stdout, out.stdout


def test_the_same_broker_without_the_leak_passes(tmp_path):
    broker = BrokerProcess(tmp_path / "clean").start()
    try:
        _use(broker)
    finally:
        broker.stop()
    assert broker.returncode == 0 and broker.leaks == []
    assert "audit: " in broker.log_text()
