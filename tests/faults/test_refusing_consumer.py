"""FAULT TEST: a consumer that gives every message back as `modified` with undeliverable-here (so it
is never offered that message again) cannot stall the broker for others, and loses nothing: the
bystander's round trips stay under 0.5 s while it refuses a deep queue whole, and afterwards another
consumer gets every message, each once."""
import threading
import time

import pytest
from proton import Delivery, Message
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue
from tests.support.blocking import drain
from tests.support.faults import Bystander

ROUND_TRIP = 0.5
DEPTH = 2000


def refuse_everything(url, queue, out):
    conn = BlockingConnection(url, timeout=60)
    try:
        r = conn.create_receiver(queue, name="refuser", credit=None)
        while len(out) <= 2 * DEPTH and drain(conn, r, 200):
            while r.fetcher.has_message:
                r.receive(timeout=10)
                dlv = r.fetcher.unsettled[0]
                dlv.local.undeliverable = True
                r.settle(Delivery.MODIFIED)
                out.append(1)
    finally:
        conn.close()


@pytest.mark.solo    # a bystander's round trip bound (0.5 s): timed alone, after the parallel pass
def test_a_consumer_refusing_everything_here(broker):
    bystander = Bystander(broker)
    conn = BlockingConnection(broker.url, timeout=60)
    sender = conn.create_sender("refused", options=CreateQueue({"qpid.max_size": 0}))
    for i in range(DEPTH):
        sender.send(Message(body=i))
    refused = []
    hostile = threading.Thread(target=refuse_everything, args=(broker.url, "refused", refused), daemon=True)
    hostile.start()
    slowest = 0.0
    while hostile.is_alive():
        start = time.monotonic()
        bystander.check()
        slowest = max(slowest, time.monotonic() - start)
    hostile.join()
    assert len(refused) == DEPTH          # each message offered to it once, then never again
    assert slowest < ROUND_TRIP, "a bystander round trip took %.3fs" % slowest
    r = conn.create_receiver("refused", name="taker", credit=500)
    got = []
    for _ in range(DEPTH):
        got.append(r.receive(timeout=10).body)
        r.accept()
    assert sorted(got) == list(range(DEPTH))
    assert not drain(conn, r, 10)
    conn.close()
    bystander.close()
