"""Flow control on the replication stream (--ha-flow-messages, --ha-flow-bytes; ha/flow.py): a backup
that stalls (SIGSTOP) does not make the primary keep an unbounded copy of the live traffic for it; the
producers of the queues it lags on are held instead, and once it resumes everything arrives."""
import asyncio
import signal
import time

import pytest
from cypid.client import connect, encode_message
from cypid.ha.flow import CONFIG_FACTOR
from cypid.pyx.broker_core import CREDIT_WINDOW
from tests.support.broker import wait_until
from tests.support.ha import brokers  # noqa: F401 (the fixture)
from tests.support.ha import HA_ARGS, HaCluster, HaConsole, digest, fill, queue_depths, wait_status

from tests.integration.test_ha_replication import BROKER_ID, create

FLOW = 100          # --ha-flow-messages of the primary
WINDOW = 50         # the producer's unsettled window
SIZE = 1024


def body(i):
    return b"%08d" % i + b"x" * (SIZE - 8)


async def settled_until_stalled(snd, total, deadline=60.0, quiet=1.0):
    """How many of the producer's deliveries are settled once it makes no progress for ``quiet`` s
    (or all ``total`` are settled)."""
    end = time.monotonic() + deadline
    last, since = -1, time.monotonic()
    while time.monotonic() < end:
        settled = snd.sent - snd.outstanding
        if settled >= total:
            return settled
        if settled != last:
            last, since = settled, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return settled
        await asyncio.sleep(0.05)     # poll: the deadline is the loop's condition
    raise AssertionError("the producer neither finished nor stalled")


def stream_depths(primary):
    with HaConsole(primary.url) as c:
        return [(q["msgDepth"], q["byteDepth"]) for name, q in c.queues().items()
                if name.startswith("qpid.ha-backup.")]


@pytest.mark.parametrize("bound", [("--ha-flow-messages", str(FLOW)),
                                   ("--ha-flow-messages", "0", "--ha-flow-bytes", str(FLOW * SIZE))],
                         ids=["messages", "bytes"])
def test_a_stalled_ready_backup_holds_producers_not_memory(brokers, bound):
    """A consumer on the primary takes every message (so the ready backup's guards are released by the
    dequeues): without flow control the stream to the stopped backup would grow with all of them."""
    cluster = HaCluster(brokers, 2, args=bound)
    primary, backup = cluster[0], cluster[1]
    create(primary, "queue", "q", **{"qpid.max_count": 0, "qpid.max_size": 0})
    wait_until(lambda: "q" in queue_depths(backup), 60, interval=0.05)
    total = 3000

    async def run():
        conn = await connect(primary.url, timeout=60)
        rcv = await conn.receiver("q", credit=500, keep=False)
        snd = await conn.sender("q", window=WINDOW)
        backup.signal(signal.SIGSTOP)
        try:
            sending = asyncio.ensure_future(snd.send(encode_message(body(0)), count=total))
            held = await settled_until_stalled(snd, total)
            depths = await asyncio.to_thread(stream_depths, primary)
        finally:
            backup.signal(signal.SIGCONT)
        await sending
        await snd.wait_settled(timeout=120)
        await rcv.wait_for(total, timeout=120)
        await conn.close()
        return held, depths
    held, depths = asyncio.run(run())
    assert held <= FLOW + 1, held           # the producer waited for the stopped backup
    assert len(depths) == 1 and depths[0][1] < (FLOW + WINDOW) * (SIZE + 200), depths
    wait_status(backup, "ready")
    wait_until(lambda: stream_depths(primary) == [(0, 0)], 60, interval=0.05)
    assert queue_depths(backup)["q"] == 0 == queue_depths(primary)["q"]


def test_a_stalled_catching_up_backup_bounds_the_deferred_live_events(brokers):
    """A backup stopped while a deep durable queue's journal is shipped to it: the live enqueues of the
    meantime wait on the primary (deferred behind the shipment) and the producer is held once
    --ha-flow-messages of them are there; after SIGCONT the backup's copy is the primary's queue."""
    cluster = HaCluster(brokers, 1, args=("--ha-flow-messages", str(FLOW)))
    primary = cluster[0]
    deep = 40000            # ~40 MiB of journal: more than the shipper's window of 32 x 1 MiB chunks
    fill(primary, "deep", deep, SIZE)
    backup = brokers(*HA_ARGS)
    total = 2000

    async def run():
        conn = await connect(primary.url, timeout=60)
        snd = await conn.sender("deep", window=WINDOW)
        with HaConsole(backup.url) as c:
            c.set_brokers_url(cluster.url)
        await asyncio.to_thread(wait_until, lambda: primary.log_lines(r"HA: backup .* connected"), 60,
                                interval=0.01)
        backup.signal(signal.SIGSTOP)
        try:
            sending = asyncio.ensure_future(snd.send(encode_message(body(1), durable=True), count=total))
            held = await settled_until_stalled(snd, total)
        finally:
            backup.signal(signal.SIGCONT)
        await sending
        await snd.wait_settled(timeout=120)
        await conn.close()
        return held
    held = asyncio.run(run())
    assert held <= FLOW + 1, held
    wait_status(backup, "ready", timeout=120)
    assert backup.log_lines(r"queue 'deep': journal copied from the primary")
    assert queue_depths(backup)["deep"] == deep + total == queue_depths(primary)["deep"]
    assert digest(backup, "deep", deep + total, SIZE) == digest(primary, "deep", deep + total, SIZE)


@pytest.mark.solo       # the 0.5 s bystander bound is about the broker, not about workers sharing the cores
def test_a_stalled_backup_stops_the_credit_of_a_producer_that_never_waits(brokers):
    """Credit follows holds (broker_core.pyx, ProducerCore): a producer that does not wait for its
    settlements gets no more credit once CREDIT_WINDOW of its messages wait on the stream's flow hold,
    so the stream to the stopped backup stays bounded; a bystander on a queue that is not replicated
    keeps a fast round trip; after SIGCONT the credit comes back and every message arrives once."""
    # A heartbeat long enough that the stopped backup is not given up meanwhile (that would release
    # its holds too, and the producer's credit with them).
    cluster = HaCluster(brokers, 2, args=("--ha-flow-messages", str(FLOW), "--link-heartbeat-interval", "60"))
    primary, backup = cluster[0], cluster[1]
    create(primary, "queue", "q", **{"qpid.max_count": 0, "qpid.max_size": 0})
    create(primary, "queue", "by", **{"qpid.replicate": "none"})
    wait_until(lambda: "q" in queue_depths(backup), 60, interval=0.05)
    total = 3000
    data = encode_message(body(0))

    async def run():
        conn = await connect(primary.url, timeout=60)
        rcv = await conn.receiver("q", credit=500, keep=False)
        rcv.core.check_seq = True
        rcv.core.strict_seq = True
        snd = await conn.sender("q", window=10 * total)
        other = await connect(primary.url, timeout=60)
        by_snd = await other.sender("by")
        by_rcv = await other.receiver("by", credit=10)

        async def round_trip():
            start = time.monotonic()
            await by_snd.send(encode_message(b"ping"))
            await by_snd.wait_settled(timeout=10)
            await by_rcv.get(timeout=10)
            return time.monotonic() - start

        backup.signal(signal.SIGSTOP)
        try:
            sending = asyncio.ensure_future(snd.send(data, total, seq_offset=len(data) - 8, seq=0))
            # Stalled: everything it sent has reached the consumer (so the broker routed it all) and
            # it has no credit; or it sent everything.
            await asyncio.to_thread(wait_until, lambda: snd.sent >= total or (
                snd.credit == 0 and rcv.received == snd.sent), 60, interval=0.05)
            slowest = max([await round_trip() for _ in range(5)])
            sent, credit, received = snd.sent, snd.credit, rcv.received
            depths = await asyncio.to_thread(stream_depths, primary)
        finally:
            backup.signal(signal.SIGCONT)
        await sending
        await snd.wait_settled(timeout=120)
        await rcv.wait_for(total, timeout=120)
        result = (sent, credit, received, slowest, depths, rcv.core.seq_errors, rcv.core.next_seq)
        await other.close()
        await conn.close()
        return result
    sent, credit, received, slowest, depths, errors, next_seq = asyncio.run(run())
    assert sent <= FLOW + CREDIT_WINDOW + 1 and credit == 0 and received == sent, (sent, credit, received)
    assert len(depths) == 1 and depths[0][0] <= FLOW + CREDIT_WINDOW + 1, depths
    assert slowest < 0.5, slowest
    assert errors == 0 and next_seq == total, (errors, next_seq)    # each once, in order
    wait_status(backup, "ready")
    wait_until(lambda: stream_depths(primary) == [(0, 0)], 60, interval=0.05)
    assert queue_depths(backup)["q"] == 0 == queue_depths(primary)["q"]


def test_a_stalled_backup_is_given_up_past_the_configuration_bound(brokers):
    """Configuration events hold no producer: a client declaring and deleting queues while a ready
    backup is stopped would grow its stream until the heartbeat gives it up. Past CONFIG_FACTOR x
    --ha-flow-messages unacknowledged events the backup is given up at once (its stream goes); after
    SIGCONT it connects again, catches up and has the configuration as it is."""
    cluster = HaCluster(brokers, 2, args=("--ha-flow-messages", str(FLOW), "--link-heartbeat-interval", "60"))
    primary, backup = cluster[0], cluster[1]
    churn = CONFIG_FACTOR * FLOW // 2 + 10      # a declare and a delete each
    backup.signal(signal.SIGSTOP)
    try:
        with HaConsole(primary.url) as c:
            for i in range(churn):
                name = "churn-%d" % i
                c.call("create", {"type": "queue", "name": name, "properties": {}, "strict": True},
                       object_name=BROKER_ID)
                c.call("delete", {"type": "queue", "name": name, "options": {}}, object_name=BROKER_ID)
        wait_until(lambda: primary.log_lines(r"HA: backup .* left \d+ configuration events "
                                             r"unacknowledged .*: given up"), 30, interval=0.05)
        assert stream_depths(primary) == []         # its stream went with it
    finally:
        backup.signal(signal.SIGCONT)
    create(primary, "queue", "after")
    wait_status(backup, "ready", timeout=120)
    wait_until(lambda: "after" in queue_depths(backup), 60, interval=0.05)
    assert not [name for name in queue_depths(backup) if name.startswith("churn-")]
    assert len(primary.log_lines(r"configuration events unacknowledged")) == 1
