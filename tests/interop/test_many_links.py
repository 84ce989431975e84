"""200 connections holding 1,000 links at once (3 senders + 2 receivers each), every link used,
then every connection closed, and the broker still serves."""
import re
import time

from proton import Message
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue
from tests.support.broker import wait_until
from tests.support.reactor import ClientHandler, run

CONNECTIONS = 200
LINKS_PER_CONNECTION = 5


def queue(i, which):
    return f"many-{i % CONNECTIONS}-{which}"


class ManyLinks(ClientHandler):
    """Connection i has receivers on queues i-a and i-b and senders to i-a, i-b and (i+1)-a.
    Only once all 1,000 attaches have been answered does anything get sent: one message per
    sender. Receiver i-a must get two (its own and connection i-1's), i-b one."""

    def __init__(self, url):
        super().__init__(url, timeout=120)
        self.opened = 0
        self.started = False
        self.senders = []
        self.received = {}        # receiver name -> sorted bodies
        self.total = 0
        self.closed = 0
        self.phase = "attaching"

    def setup(self, event):
        c = event.container
        for i in range(CONNECTIONS):
            conn = self.connect()
            conn.index = i
            for which in ("a", "b"):
                c.create_receiver(conn, queue(i, which), name=f"r-{i}-{which}", options=CreateQueue())
            for name, address in ((f"s-{i}-a", queue(i, "a")), (f"s-{i}-b", queue(i, "b")),
                                  (f"s-{i}-next", queue(i + 1, "a"))):
                self.senders.append(c.create_sender(conn, address, name=name, options=CreateQueue()))

    def on_link_opened(self, event):
        self.opened += 1
        if self.opened == CONNECTIONS * LINKS_PER_CONNECTION:
            self.phase = "sending"
            for sender in self.senders:
                if sender.credit:
                    self.send_one(sender)

    def on_sendable(self, event):
        if self.phase == "sending":
            self.send_one(event.sender)

    def send_one(self, sender):
        if getattr(sender, "done", False):
            return
        sender.done = True
        sender.send(Message(body=sender.name))

    def on_message(self, event):
        self.received.setdefault(event.receiver.name, []).append(event.message.body)
        self.total += 1
        if self.total == CONNECTIONS * 3:
            self.phase = "closing"
            self.finished = True   # every connection below is closed on purpose
            self._deadline.cancel()
            for conn in self.connections:
                conn.close()

    def on_connection_closed(self, event):
        # Our close answered by the broker's.
        self.closed += 1

    def progress(self):
        return f"phase {self.phase}: {self.opened} links open, {self.total} messages, {self.closed} closed"


def test_200_connections_1000_links(broker_factory):
    # debug: the broker logs each connection it has let go of ("Connection ADDRESS closed").
    broker = broker_factory("--log-enable", "debug+")
    start = time.monotonic()
    h = run(ManyLinks(broker.url))
    elapsed = time.monotonic() - start
    assert h.opened == CONNECTIONS * LINKS_PER_CONNECTION
    assert h.closed == CONNECTIONS
    for i in range(CONNECTIONS):
        assert sorted(h.received[f"r-{i}-a"]) == sorted([f"s-{i}-a", f"s-{(i - 1) % CONNECTIONS}-next"])
        assert h.received[f"r-{i}-b"] == [f"s-{i}-b"]
    print(f"200 connections x 5 links: {elapsed:.2f}s")
    # The broker has let go of every one of them.
    closed = re.compile(r"Connection (\S+) closed$")
    wait_until(lambda: len(broker.log_lines(closed)) >= CONNECTIONS, timeout=20,
               message=lambda: f"{CONNECTIONS} 'Connection ... closed' lines; "
                               f"have {len(broker.log_lines(closed))}")
    assert len({closed.search(line).group(1) for line in broker.log_lines(closed)}) == CONNECTIONS

    # Still serving: a fresh connection round trip, and the queues the closed ones made are usable.
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        sender = conn.create_sender(queue(7, "b"))
        sender.send(Message(body="after"))
        receiver = conn.create_receiver(queue(7, "b"), credit=1)
        assert receiver.receive(timeout=10).body == "after"
        receiver.accept()
    finally:
        conn.close()
