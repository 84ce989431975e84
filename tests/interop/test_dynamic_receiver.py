"""Dynamic receivers (create_receiver(None, dynamic=True)): the broker makes a queue with a
generated address (qpidd: `<container-id>_<link name>`) that can be sent to, and removes it when the
receiver goes."""
import pytest
from proton import Message
from proton.utils import BlockingConnection, LinkDetached

from tests.support.amqp import Capabilities
from tests.support.reactor import ClientHandler, run


def test_dynamic_receiver_gets_an_address_that_can_be_sent_to(broker):
    conn = BlockingConnection(broker.url, timeout=20)
    other = BlockingConnection(broker.url, timeout=20)
    try:
        receiver = conn.create_receiver(None, dynamic=True, name="replies", credit=10)
        address = receiver.link.remote_source.address
        assert address == f"{conn.container.container_id}_replies"
        # Another connection sends to it by name, like a reply-to.
        sender = other.create_sender(address)
        for i in range(3):
            sender.send(Message(body=i))
        sender.close()
        got = []
        for _ in range(3):
            got.append(receiver.receive(timeout=10).body)
            receiver.accept()
        assert got == [0, 1, 2]
        # Two dynamic receivers get different addresses.
        second = conn.create_receiver(None, dynamic=True, name="replies-2", credit=1)
        assert second.link.remote_source.address not in (None, address)
        second.close()
        # The queue is auto-delete: gone when its receiver detaches.
        receiver.close()
        with pytest.raises(LinkDetached) as info:
            other.create_sender(address, options=Capabilities("queue"))
        assert "amqp:not-found" in str(info.value)
    finally:
        other.close()
        conn.close()


class RequestReply(ClientHandler):
    """Handler API: a client with a dynamic reply queue sends requests (reply_to = the generated
    address) to a service queue; a service on another connection answers each to its reply_to."""

    REQUESTS = ["alpha", "beta", "gamma"]

    def __init__(self, url):
        super().__init__(url)
        self.replies = []
        self.reply_to = None

    def setup(self, event):
        service = self.connect()
        event.container.create_receiver(service, "requests", name="service",
                                        options=Capabilities("queue", "create-on-demand"))
        self.responder = event.container.create_sender(service, None, name="responder")   # anonymous
        self.client = self.connect()

    def on_link_opened(self, event):
        if event.link.name == "service":
            event.container.create_receiver(self.client, None, dynamic=True, name="reply-queue")
        elif event.link.name == "reply-queue":
            self.reply_to = event.receiver.remote_source.address
            self.requester = event.container.create_sender(self.client, "requests", name="requester")

    def on_sendable(self, event):
        if event.sender.name == "requester" and self.reply_to and not getattr(self, "sent", False):
            self.sent = True
            for i, text in enumerate(self.REQUESTS):
                event.sender.send(Message(body=text, reply_to=self.reply_to, correlation_id=i))

    def on_message(self, event):
        msg = event.message
        if event.receiver.name == "service":
            self.responder.send(Message(address=msg.reply_to, body=msg.body.upper(),
                                        correlation_id=msg.correlation_id))
        else:
            self.replies.append((msg.correlation_id, msg.body))
            if len(self.replies) == len(self.REQUESTS):
                self.finish()

    def progress(self):
        return f"reply_to {self.reply_to}, replies {self.replies}"


def test_request_reply_through_a_dynamic_queue_with_container_api(broker):
    h = run(RequestReply(broker.url))
    assert h.reply_to.endswith("_reply-queue")
    assert h.replies == [(0, "ALPHA"), (1, "BETA"), (2, "GAMMA")]
