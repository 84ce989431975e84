"""Browsing (source distribution-mode copy, proton's Copy() option) leaves messages on the queue."""
from proton import Message
from proton.reactor import Copy
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue
from tests.support.blocking import drain
from tests.support.reactor import ClientHandler, run

COUNT = 20


def fill(conn, queue, count=COUNT):
    sender = conn.create_sender(queue, options=CreateQueue())
    for i in range(count):
        sender.send(Message(body=i, properties={"i": i}))
    sender.close()


def test_browse_all_then_consume_all(broker):
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        fill(conn, "browsed")
        browser = conn.create_receiver("browsed", credit=COUNT + 5, options=Copy())
        # The broker answers with distribution-mode copy: this is a browser.
        assert browser.link.remote_source.distribution_mode == browser.link.remote_source.DIST_MODE_COPY
        # Browsed deliveries follow the settle mode the broker's attach announced (unsettled):
        # accepting one leaves the message on the queue.
        assert browser.link.remote_snd_settle_mode == browser.link.SND_UNSETTLED
        seen = []
        for _ in range(COUNT):
            seen.append(browser.receive(timeout=10).body)
            browser.accept()
        assert seen == list(range(COUNT))
        # Nothing more to browse: a drain comes back with no messages.
        assert drain(conn, browser) == 0
        browser.close()

        # A second browser sees them all again, and so does a consumer after it.
        again = conn.create_receiver("browsed", credit=COUNT, options=Copy())
        assert [again.receive(timeout=10).body for _ in range(COUNT)] == list(range(COUNT))
        again.close()
        consumer = conn.create_receiver("browsed", credit=COUNT)
        got = []
        for _ in range(COUNT):
            got.append(consumer.receive(timeout=10).body)
            consumer.accept()
        assert got == list(range(COUNT))
        consumer.close()
        # Consumed means gone: a new browser finds nothing.
        empty = conn.create_receiver("browsed", credit=0, options=Copy())
        assert drain(conn, empty, 5) == 0
    finally:
        conn.close()


def test_browser_sees_messages_that_arrive_later(broker):
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        fill(conn, "browsed-live", 3)
        browser = conn.create_receiver("browsed-live", credit=10, options=Copy())
        assert [browser.receive(timeout=10).body for _ in range(3)] == [0, 1, 2]
        sender = conn.create_sender("browsed-live")
        sender.send(Message(body="late"))
        assert browser.receive(timeout=10).body == "late"
        consumer = conn.create_receiver("browsed-live", credit=10, name="consumer")
        got = []
        for _ in range(4):
            got.append(consumer.receive(timeout=10).body)
            consumer.accept()
        assert got == [0, 1, 2, "late"]
    finally:
        conn.close()


class BrowseThenConsume(ClientHandler):
    """Handler API: a browser (Copy option) reads all, then a consumer on the same connection."""

    def __init__(self, url):
        super().__init__(url)
        self.browsed = []
        self.consumed = []

    def setup(self, event):
        self.conn = self.connect()
        event.container.create_receiver(self.conn, "browsed-h", name="browser", options=Copy())

    def on_message(self, event):
        if event.receiver.name == "browser":
            assert not event.delivery.settled   # as announced; the handler's accept leaves it queued
            self.browsed.append(event.message.body)
            if len(self.browsed) == COUNT:
                event.receiver.close()
                event.container.create_receiver(self.conn, "browsed-h", name="consumer")
        else:
            assert not event.delivery.settled
            self.consumed.append(event.message.body)
            if len(self.consumed) == COUNT:
                self.finish()

    def progress(self):
        return f"browsed {self.browsed}, consumed {self.consumed}"


def test_browse_then_consume_with_container_api(broker):
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        fill(conn, "browsed-h")
    finally:
        conn.close()
    h = run(BrowseThenConsume(broker.url))
    assert h.browsed == list(range(COUNT))
    assert h.consumed == list(range(COUNT))
