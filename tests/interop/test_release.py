"""Released and modified deliveries come back (qpidd: released leaves delivery-count alone; modified
with delivery-failed increments it; modified without it does not)."""
from proton import Delivery, Message
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue
from tests.support.reactor import ClientHandler, run


def test_release_redelivers_without_counting(broker):
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        sender = conn.create_sender("rel", options=CreateQueue())
        for body in ("first", "second", "third"):
            sender.send(Message(body=body, properties={"k": body}))
        # No prefetch window (credit=None): credit is given explicitly with flow().
        receiver = conn.create_receiver("rel")
        receiver.flow(2)
        got = [receiver.receive(timeout=10) for _ in range(2)]
        assert [(m.body, m.delivery_count, m.first_acquirer) for m in got] == \
            [("first", 0, True), ("second", 0, True)]
        receiver.release(delivered=False)      # plain `released`, oldest first
        receiver.release(delivered=False)
        # A round trip on the connection (the sender's attach) makes sure the broker has both
        # dispositions before the receiver's next credit.
        conn.create_sender("rel", name="round-trip").close()
        for _ in range(3):      # released ones are redelivered several times, never counted
            receiver.flow(2)
            got = [receiver.receive(timeout=10) for _ in range(2)]
            # Back in their places, ahead of "third"; not counted as failed delivery attempts.
            assert [(m.body, m.properties, m.delivery_count, m.first_acquirer) for m in got] == \
                [("first", {"k": "first"}, 0, False), ("second", {"k": "second"}, 0, False)]
            receiver.release(delivered=False)
            receiver.release(delivered=False)
            conn.create_sender("rel", name="round-trip").close()
        got = []
        receiver.flow(3)
        for _ in range(3):
            m = receiver.receive(timeout=10)
            got.append((m.body, m.delivery_count, m.first_acquirer))
            receiver.accept()
        assert got == [("first", 0, False), ("second", 0, False), ("third", 0, True)]
    finally:
        conn.close()


def test_release_by_one_consumer_goes_to_another(broker):
    conn = BlockingConnection(broker.url, timeout=20)
    other = BlockingConnection(broker.url, timeout=20)
    try:
        conn.create_sender("rel2", options=CreateQueue()).send(Message(body="hot potato"))
        r1 = conn.create_receiver("rel2", credit=1)
        assert r1.receive(timeout=10).body == "hot potato"
        r2 = other.create_receiver("rel2", credit=1)
        r1.close()      # unsettled when its link goes: the broker puts it back (a failed attempt)
        msg = r2.receive(timeout=10)
        assert msg.body == "hot potato"
        assert msg.first_acquirer is False
        assert msg.delivery_count == 1
        r2.release(delivered=False)
        r3 = conn.create_receiver("rel2", credit=1)
        r2.close()
        msg = r3.receive(timeout=10)
        assert (msg.body, msg.delivery_count) == ("hot potato", 1)
        r3.accept()
    finally:
        other.close()
        conn.close()


class Modifier(ClientHandler):
    """Handler API, auto_accept off. Each message is returned several times with a chosen outcome,
    then accepted; records (body, delivery_count, first_acquirer) per delivery."""

    def __init__(self, url, plan):
        # Credit is given by hand, one at a time after each settlement (prefetch=0): proton's
        # FlowController with prefetch=1 only tops up before the delivery is consumed.
        super().__init__(url, auto_accept=False, prefetch=0)
        self.plan = plan        # body -> list of outcomes to give before accepting
        self.seen = []
        self.done = set()

    def setup(self, event):
        conn = self.connect()
        sender = event.container.create_sender(conn, "mod", options=CreateQueue())
        self.pending = list(self.plan)
        self.sender = sender
        event.container.create_receiver(conn, "mod", name="consumer")

    def on_link_opened(self, event):
        if event.link.is_receiver:
            event.receiver.flow(1)

    def on_sendable(self, event):
        while self.pending and event.sender.credit:
            event.sender.send(Message(body=self.pending.pop(0)))

    def on_message(self, event):
        msg, dlv = event.message, event.delivery
        self.seen.append((msg.body, msg.delivery_count, msg.first_acquirer))
        todo = self.plan[msg.body]
        if not todo:
            self.accept(dlv)
            self.done.add(msg.body)
            if len(self.done) == len(self.plan):
                self.finish()
            return
        outcome = todo.pop(0)
        if outcome == "released":
            self.release(dlv, delivered=False)
        elif outcome == "failed":
            dlv.local.failed = True
            self.settle(dlv, Delivery.MODIFIED)
        elif outcome == "modified":
            dlv.local.failed = False
            self.settle(dlv, Delivery.MODIFIED)
        elif outcome == "handler-release":
            self.release(dlv)      # MessagingHandler.release(delivered=True): MODIFIED
        else:  # pragma: no cover
            raise AssertionError(outcome)
        event.receiver.flow(1)

    def progress(self):
        return str(self.seen)


def test_modified_with_delivery_failed_counts(broker):
    h = run(Modifier(broker.url, {"a": ["failed", "failed", "released", "failed"]}))
    assert h.seen == [("a", 0, True), ("a", 1, False), ("a", 2, False), ("a", 2, False), ("a", 3, False)]


def test_modified_without_delivery_failed_does_not_count(broker):
    h = run(Modifier(broker.url, {"b": ["modified", "handler-release", "failed", "modified"]}))
    # proton's MessagingHandler.release(delivered=True) sends `modified` without delivery-failed.
    assert h.seen == [("b", 0, True), ("b", 0, False), ("b", 0, False), ("b", 1, False), ("b", 1, False)]
