"""A consumer whose attach sets max-message-size is never sent a larger message: its link is detached
with amqp:link:message-size-exceeded, the message stays on the queue for consumers that can take it,
and the connection carries on (it was closed with amqp:internal-error before)."""
import pytest
from proton import Message
from proton.reactor import LinkOption
from proton.utils import BlockingConnection, LinkDetached

from tests.support.amqp import CreateQueue


class MaxMessageSize(LinkOption):
    def __init__(self, size):
        self.size = size

    def apply(self, link):
        link.max_message_size = self.size


def test_a_message_over_the_consumers_max_message_size_detaches_only_its_link(broker):
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        sender = conn.create_sender("mms", options=CreateQueue())
        sender.send(Message(body="x" * 5000))
        sender.send(Message(body="small"))
        with pytest.raises(LinkDetached) as info:     # (the detach may come with the attach's answer)
            small = conn.create_receiver("mms", credit=10, options=MaxMessageSize(1000))
            small.receive(timeout=10)
        assert "amqp:link:message-size-exceeded" in str(info.value)
        assert "max-message-size 1000" in str(info.value)
        # The connection is still up; both messages wait, in order, for a consumer that takes them.
        receiver = conn.create_receiver("mms", credit=10)
        first = receiver.receive(timeout=10)
        assert first.body == "x" * 5000 and first.delivery_count == 0
        second = receiver.receive(timeout=10)
        assert second.body == "small"
        receiver.accept()
    finally:
        conn.close()
