"""Helpers for fault tests (tests/faults): a bystander connection that must keep working while other
connections misbehave, and checks on what the broker logged about a bad connection.
"""
from __future__ import annotations

import re
import uuid

from proton import Message
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue
from tests.support.broker import BrokerProcess, wait_until

#: What must never appear in a broker's log: an exception that escaped the engine.
TROUBLE = re.compile(r"Traceback|Fatal error|Exception in callback|amqp:internal-error|Unhandled")


class Bystander:
    """A python-qpid-proton connection opened *before* a fault: ``check()`` sends a message to its
    own queue and receives it back, proving the broker still serves other connections."""

    def __init__(self, broker: BrokerProcess, timeout: float = 10, **connect_options):
        self.timeout = timeout
        self.conn = BlockingConnection(broker.url, timeout=timeout, **connect_options)
        self.address = "bystander-%s" % uuid.uuid4().hex[:8]
        self.sender = self.conn.create_sender(self.address, options=CreateQueue())
        self.receiver = self.conn.create_receiver(self.address, credit=10)
        self.rounds = 0
        self.check()

    def check(self) -> None:
        body = "ping %d" % self.rounds
        self.rounds += 1
        self.sender.send(Message(body=body))
        msg = self.receiver.receive(timeout=self.timeout)
        self.receiver.accept()
        assert msg.body == body

    def close(self) -> None:
        self.conn.close()


def lines_about(broker: BrokerProcess, client) -> list[str]:
    """Log lines naming the connection whose client end is ``client`` (a RawClient, or its
    ``127.0.0.1:PORT`` string). For a RawClient only lines written since it connected count: the
    kernel reuses ephemeral ports, so an earlier test's connection may have had the same one."""
    if isinstance(client, str):
        address, offset = client, 0
    else:
        address, offset = client.address_tag, client.log_offset
    regex = re.compile(r"-%s\b" % re.escape(address))
    return [line for line in broker.log_text_from(offset).splitlines() if regex.search(line)]


def assert_logged_once(broker: BrokerProcess, client_address, bystander: Bystander | None = None,
                       pattern: str | None = None, timeout: float = 10) -> str:
    """Wait for the broker's line about the connection ``client_address``; after a round trip on the
    bystander (the broker has moved on), it must still be exactly one line (matching ``pattern``).
    No line in the log may show an escaped exception. Returns the line."""
    wait_until(lambda: lines_about(broker, client_address), timeout=timeout,
               message=lambda: "a log line about %s in:\n%s" % (client_address, broker.log_text()))
    if bystander is not None:
        bystander.check()
    lines = lines_about(broker, client_address)
    assert len(lines) == 1, "expected one log line about %s, got:\n%s" % (client_address, "\n".join(lines))
    if pattern is not None:
        assert re.search(pattern, lines[0]), "%r not in %r" % (pattern, lines[0])
    assert_no_trouble(broker)
    return lines[0]


def assert_no_trouble(broker: BrokerProcess) -> None:
    assert broker.is_running(), "the broker died (status %s)" % broker.returncode
    bad = [line for line in broker.log_lines() if TROUBLE.search(line)]
    assert not bad, "the broker logged escaped exceptions:\n%s" % "\n".join(bad)
