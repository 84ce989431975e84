"""A 100 MB message goes through the broker intact: many transfer frames in (from the client) and
many out (to the consumer), compared by hash."""
import hashlib
import os
import time

from proton import Message
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue
from tests.support.reactor import ClientHandler, run

SIZE = 100 * 1000 * 1000
# Under qpidd's default queue limit (104857600 bytes) but past its default flow-stop threshold (80%),
# where the broker holds the producer's accept until the queue drains: give the queue room, as a
# qpidd user would.
BIG_QUEUE = CreateQueue({"qpid.max_size": 4 * SIZE})


def payload(size=SIZE):
    # Cheap to make, no repeating frame-sized pattern: 1 MB of random bytes, each copy tagged with
    # its index, so a lost, repeated or reordered frame changes the hash.
    block = os.urandom(1000 * 1000 - 8)
    return b"".join(i.to_bytes(8, "big") + block for i in range(size // (1000 * 1000)))


def test_100mb_message_round_trip(broker):
    body = payload()
    assert len(body) == SIZE
    digest = hashlib.sha256(body).hexdigest()
    conn = BlockingConnection(broker.url, timeout=120)
    try:
        # Small frames on our side too: the client sends with the broker's max-frame (64 KiB) and
        # the broker sends with ours (proton's default 32 KiB): thousands of frames each way.
        sender = conn.create_sender("big", options=BIG_QUEUE)
        start = time.monotonic()
        sender.send(Message(body=body, properties={"sha256": digest}, subject="big one"))
        receiver = conn.create_receiver("big", credit=1)
        msg = receiver.receive(timeout=120)
        receiver.accept()
        elapsed = time.monotonic() - start
        assert msg.subject == "big one"
        assert msg.properties == {"sha256": digest}
        assert len(msg.body) == SIZE
        assert hashlib.sha256(msg.body).hexdigest() == digest
        print(f"100 MB round trip in {elapsed:.2f}s")
        # The broker carries on normally after it.
        sender.send(Message(body="small"))
        assert receiver.receive(timeout=10).body == "small"
        receiver.accept()
    finally:
        conn.close()


class SmallWindow(ClientHandler):
    """Handler API: a receiver on a session whose incoming window is only 8 frames of 512 bytes
    (proton: session incoming_capacity 4096, max_frame_size 512). The broker must send no frame
    past the window (proton closes with amqp:session:window-violation) and count the frames it
    sends exactly (or its view of the window drifts and it stops sending)."""

    def __init__(self, url, address, count):
        super().__init__(url, prefetch=0, timeout=60)
        self.address = address
        self.count = count
        self.bodies = []

    def setup(self, event):
        conn = self.connect(max_frame_size=512)
        session = conn.session()
        session.incoming_capacity = 512 * 8
        session.open()
        receiver = session.receiver("small-window")
        receiver.source.address = self.address
        receiver.open()
        receiver.flow(self.count)

    def on_message(self, event):
        self.bodies.append(bytes(event.message.body))   # a view into proton's buffer: copy it
        if len(self.bodies) == self.count:
            self.finish()

    def progress(self):
        return f"{len(self.bodies)} of {self.count} messages"


def test_bounded_session_window_is_respected(broker):
    # Single-frame messages just under 512 bytes and multi-frame ones of up to 7 frames. (proton's
    # handler only reads a complete message, and a partial one counts against the session
    # capacity, so no message may need more than the window.)
    bodies = [os.urandom(400) for _ in range(100)] + [os.urandom(500 * (i % 7)) for i in range(100)]
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        sender = conn.create_sender("windowed", options=CreateQueue())
        for body in bodies:
            sender.send(Message(body=body))
    finally:
        conn.close()
    h = run(SmallWindow(broker.url, "windowed", len(bodies)))
    assert h.bodies == bodies
