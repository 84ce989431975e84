"""python-qpid-proton, unmodified, sending and receiving through a real cypid broker process."""
import uuid

import pytest
from proton import Message
from proton.utils import BlockingConnection, LinkDetached

from tests.support.amqp import CreateQueue
from tests.support.reactor import ClientHandler, run


def test_queue_round_trip_in_order_with_properties(broker):
    conn = BlockingConnection(broker.url)
    try:
        sender = conn.create_sender("q1", options=CreateQueue())
        sent = []
        for i in range(50):
            msg = Message(body="message %d" % i, id=str(uuid.uuid4()), subject="subj-%d" % i,
                          correlation_id="corr-%d" % i, reply_to="replies", content_type="text/plain",
                          properties={"index": i, "colour": "blue", "flag": i % 2 == 0},
                          durable=(i % 3 == 0), priority=(i % 10), ttl=60)
            sender.send(msg)
            sent.append(msg)
        receiver = conn.create_receiver("q1", credit=50)
        for expected in sent:
            got = receiver.receive(timeout=10)
            receiver.accept()
            assert got.body == expected.body
            assert got.id == expected.id
            assert got.subject == expected.subject
            assert got.correlation_id == expected.correlation_id
            assert got.reply_to == expected.reply_to
            assert got.content_type == expected.content_type
            assert got.properties == expected.properties
            assert got.durable == expected.durable
            assert got.priority == expected.priority
            assert 0 < got.ttl <= 60
    finally:
        conn.close()


def test_unknown_address_is_refused_with_not_found(broker):
    conn = BlockingConnection(broker.url)
    try:
        with pytest.raises(LinkDetached) as info:
            conn.create_receiver("no-such-queue")
        assert "amqp:not-found" in str(info.value)
        assert "no-such-queue" in str(info.value)
        # The connection still works after the refusal.
        sender = conn.create_sender("q2", options=CreateQueue())
        sender.send(Message(body="still here"))
        receiver = conn.create_receiver("q2")
        assert receiver.receive(timeout=10).body == "still here"
        receiver.accept()
    finally:
        conn.close()


def _numbered(i):
    return Message(body={"n": i, "text": "message %d" % i}, id="id-%d" % i, subject="subj-%d" % i,
                   correlation_id=uuid.UUID(int=i), reply_to="replies", content_type="amqp/map",
                   properties={"index": i, "colour": "red", "ratio": i / 4.0, "flag": i % 2 == 1},
                   durable=(i % 2 == 0), priority=i % 10, ttl=120)


class RoundTrip(ClientHandler):
    """Container/MessagingHandler API: one connection sends COUNT messages to a queue it creates on
    demand; a second connection consumes them (credit window 10, auto-accept) and checks each one."""

    COUNT = 200

    def __init__(self, url):
        super().__init__(url, prefetch=10)
        self.sent = 0
        self.accepted = 0
        self.received = []

    def setup(self, event):
        self.sender = event.container.create_sender(self.connect(), "rt-handler", options=CreateQueue())

    def on_sendable(self, event):
        while event.sender.credit and self.sent < self.COUNT:
            event.sender.send(_numbered(self.sent))
            self.sent += 1

    def on_accepted(self, event):
        self.accepted += 1
        if self.accepted == self.COUNT:
            # Everything is on the queue: now consume from another connection.
            event.container.create_receiver(self.connect(), "rt-handler")

    def on_message(self, event):
        self.received.append(event.message)
        if len(self.received) == self.COUNT:
            self.finish()

    def progress(self):
        return f"sent {self.sent}, accepted {self.accepted}, received {len(self.received)}"


def test_queue_round_trip_with_container_api(broker):
    handler = run(RoundTrip(broker.url))
    assert len(handler.received) == RoundTrip.COUNT
    for i, got in enumerate(handler.received):
        expected = _numbered(i)
        assert got.body == expected.body
        assert got.id == expected.id
        assert got.subject == expected.subject
        assert got.correlation_id == expected.correlation_id
        assert got.reply_to == expected.reply_to
        assert got.content_type == expected.content_type
        assert got.properties == expected.properties
        assert got.durable == expected.durable
        assert got.priority == expected.priority
        assert 0 < got.ttl <= 120
        assert got.first_acquirer
        assert got.delivery_count == 0
