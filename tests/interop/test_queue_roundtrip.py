"""python-qpid-proton, unmodified, sending and receiving through a real cypid broker process."""
import uuid

import pytest
from proton import Message
from proton.utils import BlockingConnection, LinkDetached

from tests.support.amqp import CreateQueue


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
