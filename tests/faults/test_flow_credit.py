"""FAULT TESTS: credit follows flow holds (broker_core.pyx, ProducerCore: "Credit follows holds").

A producer that keeps sending without waiting for its settlements, into a flow-stopped queue
(``qpid.flow_stop_count``): the broker holds each message's settlement, and once 500 of the link's
messages (CREDIT_WINDOW) wait on flow holds it grants no more credit, so the queue's depth stays
bounded while a bystander's round trips stay fast. When a consumer drains the queue the holds go,
the credit comes back and every message arrives exactly once, in order. Without the rule the broker
kept granting credit and the queue grew with everything the producer had.
"""
import asyncio
import time

import pytest

from cypid.client import connect, encode_message
from cypid.pyx.broker_core import CREDIT_WINDOW
from tests.support.broker import wait_until
from tests.support.faults import Bystander
from tests.support.ha import queue_depths

# The 0.5 s bystander bound is about the broker, not about test workers competing for the cores.
pytestmark = pytest.mark.solo

ROUND_TRIP = 0.5
STOP = 200              # qpid.flow_stop_count of the greedy producer's queue
RESUME = 100
TOTAL = 3000
SIZE = 1024


def round_trips(bystander, rounds=5):
    """The slowest of ``rounds`` round trips of the bystander."""
    slowest = 0.0
    for _ in range(rounds):
        start = time.monotonic()
        bystander.check()
        slowest = max(slowest, time.monotonic() - start)
    return slowest


async def stalled(snd, broker, queue, total):
    """Wait until the producer has nothing more it may send: every transfer it wrote is on the
    queue (so the broker has routed them all) and its credit is 0; or until it has sent all."""
    def settled_state():
        if snd.sent >= total:
            return True
        return snd.credit == 0 and queue_depths(broker).get(queue) == snd.sent
    await asyncio.to_thread(wait_until, settled_state, 60, interval=0.05)


@pytest.mark.parametrize("settled", [False, True], ids=["unsettled", "presettled"])
def test_a_producer_that_never_waits_gets_no_credit_past_the_flow_held_bound(broker, settled):
    bystander = Bystander(broker)
    data = encode_message(b"x" * SIZE)
    seq_offset = len(data) - 8

    async def run():
        conn = await connect(broker.url, timeout=60)
        props = {"qpid.flow_stop_count": STOP, "qpid.flow_resume_count": RESUME,
                 "qpid.max_count": 0, "qpid.max_size": 0}
        snd = await conn.sender("greedy", settled=settled, window=10 * TOTAL, node="queue", create=True,
                                properties=props)
        sending = asyncio.ensure_future(snd.send(data, TOTAL, seq_offset=seq_offset, seq=0))
        await stalled(snd, broker, "greedy", TOTAL)
        slowest = await asyncio.to_thread(round_trips, bystander)
        # The broker has answered everything it was sent (the bystander went round meanwhile): still
        # no credit, and the queue holds what was sent.
        sent, credit = snd.sent, snd.credit
        depth = (await asyncio.to_thread(queue_depths, broker))["greedy"]
        rcv = await conn.receiver("greedy", credit=500, keep=False)
        rcv.core.check_seq = True
        rcv.core.strict_seq = True
        await rcv.wait_for(TOTAL, timeout=120)
        await sending
        if not settled:
            await snd.wait_settled(timeout=60)
        errors, next_seq = rcv.core.seq_errors, rcv.core.next_seq
        await conn.close()
        return sent, credit, depth, slowest, errors, next_seq
    sent, credit, depth, slowest, errors, next_seq = asyncio.run(run())
    assert sent <= STOP + CREDIT_WINDOW and credit == 0, (sent, credit)
    assert depth == sent, (depth, sent)
    assert slowest < ROUND_TRIP, slowest
    assert errors == 0 and next_seq == TOTAL, (errors, next_seq)       # each once, in order
    assert queue_depths(broker)["greedy"] == 0
    bystander.close()
