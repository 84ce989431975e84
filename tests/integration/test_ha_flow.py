"""Flow control on the replication stream (--ha-flow-messages, --ha-flow-bytes; ha/flow.py): a backup
that stalls (SIGSTOP) does not make the primary keep an unbounded copy of the live traffic for it; the
producers of the queues it lags on are held instead, and once it resumes everything arrives."""
import asyncio
import signal
import time

import pytest
from cypid.client import connect, encode_message
from tests.support.broker import wait_until
from tests.support.ha import brokers  # noqa: F401 (the fixture)
from tests.support.ha import HA_ARGS, HaCluster, HaConsole, digest, fill, queue_depths, wait_status

from tests.integration.test_ha_replication import create

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
