"""Drain: a receiver asks for up to N messages with drain=true; the broker sends what it has and
then advances the delivery-count to use up the rest of the credit, so the drain returns at once
when the queue is empty."""
from proton import Message
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue
from tests.support.blocking import drain
from tests.support.reactor import ClientHandler, run


def test_drain_returns_what_there_is_then_when_empty(broker):
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        sender = conn.create_sender("drained", options=CreateQueue())
        for i in range(3):
            sender.send(Message(body=i))
        receiver = conn.create_receiver("drained")   # no prefetch window: no credit until asked
        assert drain(conn, receiver, 10) == 3
        assert receiver.credit == 0
        got = []
        for _ in range(3):
            got.append(receiver.receive(timeout=10).body)
            receiver.accept()
        assert got == [0, 1, 2]
        # Empty queue: the drain completes with nothing.
        assert drain(conn, receiver, 5) == 0
        assert receiver.credit == 0
        # The link still works normally afterwards.
        sender.send(Message(body="after"))
        assert receiver.receive(timeout=10).body == "after"
        receiver.accept()
    finally:
        conn.close()


def test_drain_of_exactly_the_queued_count(broker):
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        sender = conn.create_sender("drained-2", options=CreateQueue())
        for i in range(4):
            sender.send(Message(body=i))
        receiver = conn.create_receiver("drained-2")
        assert drain(conn, receiver, 4) == 4
        assert receiver.credit == 0
        assert drain(conn, receiver, 4) == 4
        assert receiver.credit == 0
    finally:
        conn.close()


class Drainer(ClientHandler):
    """Handler API (prefetch=0): drain(10) with 3 messages queued, then drain(5) on the empty queue;
    each drain's end is seen in on_link_flow as draining() turning false."""

    def __init__(self, url):
        super().__init__(url, prefetch=0)
        self.phase = "filling"
        self.messages = []
        self.drains = []      # messages received by the end of each drain

    def setup(self, event):
        conn = self.connect()
        sender = event.container.create_sender(conn, "drained-h", options=CreateQueue())
        for i in range(3):
            sender.send(Message(body=i))
        self.sender = sender
        self.accepted = 0

    def on_accepted(self, event):
        self.accepted += 1
        if self.accepted == 3:
            event.container.create_receiver(event.connection, "drained-h", name="drainer")

    def on_link_opened(self, event):
        if event.link.name == "drainer":
            self.phase = "drain-1"
            event.receiver.drain(10)

    def on_message(self, event):
        self.messages.append(event.message.body)

    def on_link_flow(self, event):
        link = event.link
        if link.is_receiver and self.phase.startswith("drain") and not link.draining():
            assert link.credit == 0
            self.drains.append(list(self.messages))
            if self.phase == "drain-1":
                self.phase = "drain-2"
                link.drain(5)
            else:
                self.phase = "done"
                self.finish()

    def progress(self):
        return f"phase {self.phase}, messages {self.messages}, drains {self.drains}"


def test_drain_with_container_api(broker):
    h = run(Drainer(broker.url))
    assert h.drains == [[0, 1, 2], [0, 1, 2]]
