"""A 100 MB message goes through the broker intact: many transfer frames in (from the client) and
many out (to the consumer), compared by hash."""
import hashlib
import os
import time

from proton import Message
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue

SIZE = 100 * 1000 * 1000     # under qpidd's default queue limit (104857600 bytes) with its headers


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
        sender = conn.create_sender("big", options=CreateQueue())
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
