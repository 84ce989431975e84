"""A rejected message goes to its queue's alternate exchange (qpidd's reject), not back to the queue."""
from proton import Message
from proton.utils import BlockingConnection
from proton.reactor import DurableSubscription

from tests.support.amqp import Capabilities, CreateExchange, CreateQueue
from tests.support.blocking import drain
from tests.support.reactor import ClientHandler, run


def test_reject_goes_to_alternate_amq_fanout(broker):
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        # Whatever reaches amq.fanout lands in this receiver's subscription queue.
        dead = conn.create_receiver("amq.fanout", name="dead-letters", credit=10)
        sender = conn.create_sender("with-alt", options=CreateQueue({"alternate-exchange": "amq.fanout"}))
        for body in ("keep", "bad", "keep too"):
            sender.send(Message(body=body, subject="s", properties={"p": body}))
        consumer = conn.create_receiver("with-alt", credit=10)
        got = []
        for _ in range(3):
            msg = consumer.receive(timeout=10)
            got.append(msg.body)
            if msg.body == "bad":
                consumer.reject()
            else:
                consumer.accept()
        assert got == ["keep", "bad", "keep too"]
        rerouted = dead.receive(timeout=10)
        assert rerouted.body == "bad"
        assert rerouted.properties == {"p": "bad"}
        assert rerouted.subject == "s"
        # The rejected message is not redelivered on the original queue.
        assert drain(conn, consumer) == 0
    finally:
        conn.close()


def test_reject_goes_to_created_alternate_exchange_and_its_bound_queue(broker):
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        # A client-created direct exchange, a queue bound to it (a shared subscription's queue,
        # named after the link, expiry-policy never so it outlives the link), and a queue using it.
        conn.create_sender("alt-ex", options=CreateExchange("direct")).close()
        binder = conn.create_receiver("alt-ex", name="alt-dlq", credit=0,
                                      options=[Capabilities("shared"), DurableSubscription()])
        binder.close()
        sender = conn.create_sender("work", options=CreateQueue({"alternate-exchange": "alt-ex"}))
        for i in range(4):
            sender.send(Message(body=i))   # no subject: routed with key "" (the shared binding's key)
        consumer = conn.create_receiver("work", credit=10)
        for i in range(4):
            msg = consumer.receive(timeout=10)
            assert msg.body == i
            consumer.reject() if i % 2 else consumer.accept()
        dlq = conn.create_receiver("alt-dlq", credit=10)
        got = []
        for _ in range(2):
            got.append(dlq.receive(timeout=10).body)
            dlq.accept()
        assert got == [1, 3]
    finally:
        conn.close()


def test_reject_without_alternate_drops_the_message(broker):
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        sender = conn.create_sender("no-alt", options=CreateQueue())
        sender.send(Message(body="rejected"))
        sender.send(Message(body="next"))
        consumer = conn.create_receiver("no-alt", credit=1)
        assert consumer.receive(timeout=10).body == "rejected"
        consumer.reject()
        assert consumer.receive(timeout=10).body == "next"
        consumer.accept()
        assert drain(conn, consumer) == 0
    finally:
        conn.close()


class RejectHandler(ClientHandler):
    """Handler API: auto_accept off, reject() every message whose `bad` property is set; the
    rejected ones come back through amq.fanout to a second receiver."""

    def __init__(self, url):
        super().__init__(url, auto_accept=False)
        self.consumed = []
        self.dead = []
        self.ready = 0

    def setup(self, event):
        conn = self.connect()
        event.container.create_receiver(conn, "amq.fanout", name="dlq")
        self.sender = event.container.create_sender(conn, "reject-h",
                                                    options=CreateQueue({"alternate-exchange": "amq.fanout"}))
        event.container.create_receiver(conn, "reject-h", name="consumer")
        self.sent = False

    def on_link_opened(self, event):
        self.ready += 1
        self.maybe_send()

    def on_sendable(self, event):
        self.maybe_send()

    def maybe_send(self):
        # Only once every link is attached (the dead-letter subscription must be bound first).
        if not self.sent and self.ready == 3 and self.sender.credit >= 10:
            self.sent = True
            for i in range(10):
                self.sender.send(Message(body=i, properties={"bad": i % 3 == 0}))

    def on_message(self, event):
        if event.receiver.name == "consumer":
            self.consumed.append(event.message.body)
            if event.message.properties["bad"]:
                self.reject(event.delivery)
            else:
                self.accept(event.delivery)
        else:
            self.dead.append(event.message.body)
        if len(self.consumed) == 10 and len(self.dead) == 4:
            self.finish()

    def progress(self):
        return f"consumed {self.consumed}, dead {self.dead}"


def test_reject_with_container_api(broker):
    h = run(RejectHandler(broker.url))
    assert h.consumed == list(range(10))
    assert h.dead == [0, 3, 6, 9]
