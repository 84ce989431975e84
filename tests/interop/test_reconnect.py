"""Clients failing over through a list of brokers: python-qpid-proton's own reconnect list, unchanged,
and cypid.client's FailoverConnection (qpidd's URL grammar, heartbeats).

Two cypid brokers; the one in use is stopped (SIGTERM), killed (-9) or stalled (SIGSTOP: only the
heartbeat can tell), and the client carries on with the other. Every message the client saw accepted
is on one of the brokers; none is lost.
"""
from __future__ import annotations

import asyncio
import signal

from cypid.client import run as run_client
from cypid.client.failover import FailoverConnection
from cypid.tools import qmf
from proton import Message
from proton.reactor import Backoff
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue, receive_all
from tests.support.reactor import ClientHandler, run

TIMEOUT = 20


def drain(broker, queue="q"):
    """Every body on ``queue`` of ``broker`` (as many as its QMF depth says), consumed."""
    with qmf.connect(broker.url, timeout=TIMEOUT) as agent:
        depth = agent.get_queue(queue).msgDepth
    conn = BlockingConnection(broker.url, timeout=TIMEOUT)
    try:
        return [m.body for m in receive_all(conn, queue, depth)]
    finally:
        conn.close()


class FailingOverSender(ClientHandler):
    """Sends ``per_broker`` messages, stops the broker it is connected to, and sends as many again
    through proton's reconnect list."""

    def __init__(self, brokers, per_broker=20):
        super().__init__(brokers[0].url, timeout=60)
        self.brokers = brokers
        self.per_broker = per_broker
        self.sent = 0
        self.accepted = []
        self.addresses = []
        self.disconnects = 0
        self.resent = 0
        self.stopped = None

    def setup(self, event):
        # No heartbeat: see tests/tools/test_failover_ha.py (a proton reactor bug on failed attempts).
        conn = self.container.connect(urls=[b.url for b in self.brokers],
                                      reconnect=Backoff(initial=0.05, max_delay=1))
        self.connections.append(conn)
        self.sender = self.container.create_sender(conn, "q", options=CreateQueue())

    def on_connection_opened(self, event):
        self.addresses.append(event.connection.connected_address)

    def on_sendable(self, event):
        self.pump()

    def pump(self):
        # One message at a time, each after the last was accepted: per_broker of them, then, once
        # the first broker is stopped, as many again.
        goal = self.per_broker * (1 if self.stopped is None else 2)
        if self.sender.credit and self.sent < goal and len(self.accepted) == self.sent:
            self.sender.send(Message(body="m%d" % self.sent))
            self.sent += 1

    def on_accepted(self, event):
        self.accepted.append(event.delivery.tag)
        if len(self.accepted) == self.per_broker and self.stopped is None:
            used = [b for b in self.brokers if self.addresses[-1].endswith("//" + b.url)]
            self.stopped = used[0]
            self.stopped.stop()
        elif len(self.accepted) == 2 * self.per_broker:
            self.finish()
            return
        self.pump()

    def on_released(self, event):
        raise AssertionError("a delivery was released")

    def on_disconnected(self, event):
        # What proton leaves to the application: a message sent and not yet accepted is sent again
        # once the reconnect list has found a broker (at least once).
        self.disconnects += 1
        self.resent += self.sent - len(self.accepted)
        self.sent = len(self.accepted)

    def on_transport_error(self, event):
        pass            # the stopped broker's connection: the reconnect list carries on

    def progress(self):
        return "sent %d, accepted %d, connected to %s" % (self.sent, len(self.accepted), self.addresses)


def test_proton_reconnect_list_fails_over(broker_factory):
    brokers = [broker_factory(), broker_factory()]
    handler = run(FailingOverSender(brokers))
    assert handler.disconnects >= 1
    assert len(handler.addresses) == 2 and handler.addresses[0] != handler.addresses[1]
    other = [b for b in brokers if b is not handler.stopped][0]
    # The first broker was stopped cleanly with the first 20 (its queue was not durable: they went
    # with it); the 20 sent after the fail-over are all on the other one, in order.
    assert drain(other) == ["m%d" % i for i in range(20, 40)]


async def _send(sender, bodies):
    for body in bodies:
        await sender.send(body)
    await sender.wait_settled(TIMEOUT)


def test_cypid_client_fails_over_when_the_broker_is_killed(broker_factory):
    b0, b1 = broker_factory(), broker_factory()
    url = "amqp:tcp:%s,tcp:%s" % (b0.url, b1.url)       # qpidd's URL grammar

    async def go():
        conn = await FailoverConnection.open(url, heartbeat=1)
        assert conn.url == b0.url
        sender = await conn.sender("q", node="queue", create=True)
        await _send(sender, ["a%d" % i for i in range(50)])
        b0.kill()
        await _send(sender, ["b%d" % i for i in range(50)])
        assert conn.url == b1.url and conn.failovers == 1
        await conn.close()
        return sender.resent

    resent = run_client(go())
    # The a's all had their outcome before the kill: none is sent again. The b's written before the
    # loss was noticed are sent again on b1, and each b is there once.
    assert resent <= 50
    assert drain(b1) == ["b%d" % i for i in range(50)]


def test_cypid_client_heartbeat_leaves_a_stalled_broker(broker_factory):
    b0, b1 = broker_factory(), broker_factory()

    async def go():
        conn = await FailoverConnection.open([b0.url, b1.url], heartbeat=0.5)
        sender = await conn.sender("q", node="queue", create=True)
        await _send(sender, ["a"])
        b0.signal(signal.SIGSTOP)       # no FIN, no RST: only the heartbeat tells
        try:
            # Sent while the broker is stalled: no outcome comes, so it is sent again on b1.
            await sender.send("b")
            await asyncio.wait_for(sender.wait_settled(), TIMEOUT)
        finally:
            b0.signal(signal.SIGCONT)
        assert conn.url == b1.url and conn.failovers == 1
        await conn.close()
        return sender.resent

    assert run_client(go()) == 1
    assert drain(b1) == ["b"]
    assert drain(b0) in (["a"], ["a", "b"])     # b0 may have taken "b" too: at least once


def test_cypid_client_skips_a_dead_address_and_reads_through_a_fail_over(broker_factory):
    b0, b1 = broker_factory(), broker_factory()
    b0.stop()
    b2 = broker_factory()

    async def go():
        conn = await FailoverConnection.open([b0.url, b1.url, b2.url], heartbeat=1)
        assert conn.url == b1.url
        sender = await conn.sender("q", node="queue", create=True)
        await _send(sender, ["x%d" % i for i in range(5)])
        receiver = await conn.receiver("q", credit=10)
        got = [(await receiver.get(TIMEOUT)).body for _ in range(5)]
        b1.kill()
        await _send(sender, ["y%d" % i for i in range(5)])
        got += [(await receiver.get(TIMEOUT)).body for _ in range(5)]
        assert conn.url == b2.url and receiver.attaches == 2
        await conn.close()
        return got

    assert run_client(go()) == ["x%d" % i for i in range(5)] + ["y%d" % i for i in range(5)]
