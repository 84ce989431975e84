"""Anonymous relay (qpidd offers ANONYMOUS-RELAY): a sender with a null target address sends each
message where its `to` (proton: Message.address) says: a queue, else an exchange (routed on the
subject); an unknown `to` is dropped but the delivery is still accepted."""
from proton import Delivery, Message, symbol
from proton.utils import BlockingConnection

from tests.support.amqp import TOPIC_FILTER, BindingFilter, CreateQueue
from tests.support.reactor import ClientHandler, run


def test_anonymous_sender_routes_on_to(broker):
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        assert symbol("ANONYMOUS-RELAY") in conn.conn.remote_offered_capabilities
        conn.create_sender("relay-q1", options=CreateQueue()).close()
        conn.create_sender("relay-q2", options=CreateQueue()).close()
        sub = conn.create_receiver("amq.topic", name="relay-sub", credit=10,
                                   options=BindingFilter(TOPIC_FILTER, "relay.#"))
        sender = conn.create_sender(None)
        assert sender.link.remote_target.address is None
        sends = [
            ("relay-q1", None, "q1-a"),
            ("relay-q2", None, "q2-a"),
            ("amq.topic", "relay.x", "topic"),
            ("no-such-node", None, "dropped"),
            ("relay-q1", None, "q1-b"),
        ]
        outcomes = [sender.send(Message(address=to, subject=subject, body=body)).remote_state
                    for to, subject, body in sends]
        assert outcomes == [Delivery.ACCEPTED] * 5
        r1 = conn.create_receiver("relay-q1", credit=10)
        r2 = conn.create_receiver("relay-q2", credit=10)
        got1 = [r1.receive(timeout=10).body for _ in range(2)]
        r1.accept()
        assert got1 == ["q1-a", "q1-b"]
        assert r2.receive(timeout=10).body == "q2-a"
        r2.accept()
        assert sub.receive(timeout=10).body == "topic"
    finally:
        conn.close()


class Relay(ClientHandler):
    """Handler API: one anonymous sender addressing three queues in turn."""

    QUEUES = ["relay-h0", "relay-h1", "relay-h2"]

    def __init__(self, url):
        super().__init__(url)
        self.got = {q: [] for q in self.QUEUES}
        self.opened = 0

    def setup(self, event):
        conn = self.connect()
        for q in self.QUEUES:
            event.container.create_receiver(conn, q, name=q, options=CreateQueue())

    def on_link_opened(self, event):
        if event.link.is_receiver:
            self.opened += 1
            if self.opened == len(self.QUEUES):
                event.container.create_sender(event.connection, None, name="anon")

    def on_sendable(self, event):
        if not getattr(self, "sent", False):
            self.sent = True
            for i in range(9):
                event.sender.send(Message(address=self.QUEUES[i % 3], body=i))

    def on_message(self, event):
        self.got[event.receiver.name].append(event.message.body)
        if sum(map(len, self.got.values())) == 9:
            self.finish()

    def progress(self):
        return str(self.got)


def test_anonymous_relay_with_container_api(broker):
    h = run(Relay(broker.url))
    assert h.got == {"relay-h0": [0, 3, 6], "relay-h1": [1, 4, 7], "relay-h2": [2, 5, 8]}
