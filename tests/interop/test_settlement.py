"""Settlement modes: a pre-settled (at-most-once) sender, at-most-once receivers (the broker sends
settled and forgets), and at-least-once receivers (unsettled until the consumer settles)."""
from proton import Link, Message
from proton.reactor import AtLeastOnce, AtMostOnce
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue
from tests.support.blocking import drain
from tests.support.reactor import ClientHandler, run


def test_presettled_sender(broker):
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        conn.create_sender("presettled", options=CreateQueue()).close()
        sender = conn.create_sender("presettled", options=AtMostOnce())
        assert sender.link.remote_snd_settle_mode == Link.SND_SETTLED
        deliveries = []
        for i in range(100):
            deliveries.append(sender.send(Message(body=i)))
        receiver = conn.create_receiver("presettled", credit=100)
        got = []
        for _ in range(100):
            got.append(receiver.receive(timeout=10).body)
            receiver.accept()
        assert got == list(range(100))
        # The transfers went settled, so the broker sent no disposition for any of them.
        assert all(not d.remote_state and not d.settled for d in deliveries)
    finally:
        conn.close()


def test_at_most_once_receiver_gets_settled_deliveries_that_are_gone(broker):
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        sender = conn.create_sender("amo", options=CreateQueue())
        for i in range(5):
            sender.send(Message(body=i))
        receiver = conn.create_receiver("amo", credit=3, options=AtMostOnce())
        assert receiver.link.remote_snd_settle_mode == Link.SND_SETTLED
        assert [receiver.receive(timeout=10).body for _ in range(3)] == [0, 1, 2]
        assert not receiver.fetcher.unsettled        # they came pre-settled
        receiver.close()                              # nothing accepted, yet nothing comes back
        rest = conn.create_receiver("amo", name="rest")
        assert drain(conn, rest, 10) == 2
        assert [rest.receive(timeout=10).body for _ in range(2)] == [3, 4]
        rest.accept()
        rest.accept()
    finally:
        conn.close()


def test_at_least_once_receiver_unsettled_until_accepted(broker):
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        sender = conn.create_sender("alo", options=CreateQueue())
        for i in range(3):
            sender.send(Message(body=i))
        receiver = conn.create_receiver("alo", options=AtLeastOnce())
        assert receiver.link.remote_snd_settle_mode == Link.SND_UNSETTLED
        receiver.flow(3)
        assert [receiver.receive(timeout=10).body for _ in range(3)] == [0, 1, 2]
        assert len(receiver.fetcher.unsettled) == 3
        receiver.accept()                             # only the first
        receiver.close()                              # the other two go back
        again = conn.create_receiver("alo", name="again", credit=5)
        msgs = [again.receive(timeout=10) for _ in range(2)]
        assert [(m.body, m.first_acquirer) for m in msgs] == [(1, False), (2, False)]
        again.accept()
        again.accept()
    finally:
        conn.close()


class SettleModes(ClientHandler):
    """Handler API: a pre-settled sender on one connection, an at-most-once receiver and an
    at-least-once receiver (on a second queue) on another; records each delivery's settled flag."""

    COUNT = 50

    def __init__(self, url):
        super().__init__(url)
        self.settled = {"amo-h": [], "alo-h": []}
        self.sent = 0

    def setup(self, event):
        recv_conn = self.connect()
        event.container.create_receiver(recv_conn, "amo-h", name="amo-h",
                                        options=[CreateQueue(), AtMostOnce()])
        event.container.create_receiver(recv_conn, "alo-h", name="alo-h",
                                        options=[CreateQueue(), AtLeastOnce()])
        self.opened = 0

    def on_link_opened(self, event):
        if event.link.is_receiver:
            self.opened += 1
            if self.opened == 2:
                send_conn = self.connect()
                for q in ("amo-h", "alo-h"):
                    event.container.create_sender(send_conn, q, name="to-" + q, options=AtMostOnce())

    def on_sendable(self, event):
        sender = event.sender
        done = getattr(self, "done_" + sender.name.replace("-", "_"), 0)
        while sender.credit and done < self.COUNT:
            sender.send(Message(body=done))
            done += 1
        setattr(self, "done_" + sender.name.replace("-", "_"), done)

    def on_message(self, event):
        self.settled[event.receiver.name].append((event.message.body, event.delivery.settled))
        if all(len(v) == self.COUNT for v in self.settled.values()):
            self.finish()

    def progress(self):
        return {k: len(v) for k, v in self.settled.items()}


def test_settlement_modes_with_container_api(broker):
    h = run(SettleModes(broker.url))
    assert h.settled["amo-h"] == [(i, True) for i in range(SettleModes.COUNT)]
    assert h.settled["alo-h"] == [(i, False) for i in range(SettleModes.COUNT)]
