"""The leak audit is honest: a broker made to keep every link it attaches, and a pipe per
connection (test-only code wrapped around the daemon, nothing in the broker), fails it; the same
broker unwrapped passes. The audit itself is broker/audit.py; the fixtures apply it to every test."""
import sys

from proton import Message
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue
from tests.support.broker import BrokerProcess

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


def test_the_same_broker_without_the_leak_passes(tmp_path):
    broker = BrokerProcess(tmp_path / "clean").start()
    try:
        _use(broker)
    finally:
        broker.stop()
    assert broker.returncode == 0 and broker.leaks == []
    assert "audit: " in broker.log_text()
